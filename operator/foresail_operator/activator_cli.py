"""`foresail activator`: serve the activator (see foresail_operator.activator)."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import socket

from foresail.checks import check_port
from foresail_operator.endpoints import LOAD_FACTOR, ROUTINGS, check_load_factor
from foresail_operator.flags import check_upstream, use_kubeconfig

# why a listening socket cannot be made: the port is taken or privileged, or the address is not this host's
LISTEN_ERRORS = (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `foresail activator` (the environment variable of each is its default)."""
    env = os.environ.get
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, else $KUBECONFIG)")
    parser.add_argument("--namespace", "-n", action="append", default=[],
                        help="route only to LLMDeployments in this namespace (repeatable; default: all)")
    parser.add_argument("--host", default=env("FORESAIL_ACTIVATOR_HOST") or None,
                        help="address to listen on (FORESAIL_ACTIVATOR_HOST, default: every IPv4 and IPv6 address; "
                             "IPv4 only where the host has no IPv6)")
    parser.add_argument("--port", type=int, default=env("FORESAIL_ACTIVATOR_PORT", "8080"),
                        help="port of /v1/*, /healthz and /metrics (FORESAIL_ACTIVATOR_PORT, default 8080)")
    parser.add_argument("--upstream", default=env("FORESAIL_ACTIVATOR_UPSTREAM", "http://{name}.{namespace}.svc:8000"),
                        help="URL of a deployment's Service, with {name} and {namespace} "
                             "(FORESAIL_ACTIVATOR_UPSTREAM, default http://{name}.{namespace}.svc:8000)")
    parser.add_argument("--hold-timeout", type=float, default=env("FORESAIL_ACTIVATOR_HOLD_TIMEOUT", "600"),
                        help="seconds a request waits for a ready replica before a 503 "
                             "(FORESAIL_ACTIVATOR_HOLD_TIMEOUT, default 600)")
    parser.add_argument("--response-timeout", type=float, default=env("FORESAIL_ACTIVATOR_RESPONSE_TIMEOUT", "600"),
                        help="seconds a pod may take to send its response headers once the request is sent; past "
                             "them its connection is closed and the client gets a 504 (a stream whose headers came "
                             "is not cut; FORESAIL_ACTIVATOR_RESPONSE_TIMEOUT, default 600, 0: no limit)")
    parser.add_argument("--max-held", type=int, default=env("FORESAIL_ACTIVATOR_MAX_HELD", "1000"),
                        help="requests held per deployment before new ones get a 503 "
                             "(FORESAIL_ACTIVATOR_MAX_HELD, default 1000)")
    parser.add_argument("--max-held-mib", type=int, default=env("FORESAIL_ACTIVATOR_MAX_HELD_MIB", "256"),
                        help="MiB of request bodies held, all deployments together, before new ones get a 503 "
                             "(FORESAIL_ACTIVATOR_MAX_HELD_MIB, default 256)")
    parser.add_argument("--max-body-mib", type=int, default=env("FORESAIL_ACTIVATOR_MAX_BODY_MIB", "64"),
                        help="MiB a request's body may take; a larger one gets a 413 (FORESAIL_ACTIVATOR_MAX_BODY_MIB, "
                             "default 64; parsed, a body of small numbers takes 4 to 5 times its size)")
    parser.add_argument("--routing", choices=ROUTINGS,
                        default=env("FORESAIL_ACTIVATOR_ROUTING", "pods"),
                        help="pods: each request to the ready pod with the fewest requests in flight, read from the "
                             "Service's EndpointSlices (the Service where they cannot be read); prefix: requests "
                             "with the same start of their first user message or prompt (or Routing-Key header) to "
                             "the same pod while its load allows; service: always to the Service "
                             "(FORESAIL_ACTIVATOR_ROUTING, default pods)")
    parser.add_argument("--prefix-load-factor", type=float,
                        default=env("FORESAIL_ACTIVATOR_PREFIX_LOAD_FACTOR", str(LOAD_FACTOR)),
                        help="with --routing prefix, a request goes to its key's pod unless that pod has more than "
                             "this times the mean requests in flight; higher keeps more requests on the pod whose "
                             "cache holds their prefix, at the cost of balance (FORESAIL_ACTIVATOR_PREFIX_LOAD_FACTOR, "
                             f"default {LOAD_FACTOR:g}, KubeAI's)")


def run(args: argparse.Namespace) -> int:
    """Log in like the operator does, then serve until stopped."""
    from aiohttp import web

    from foresail_operator.activator import Activator
    from foresail_operator.kube import KubeClient

    if args.routing not in ROUTINGS:  # argparse checks choices on the command line, not on defaults
        raise SystemExit(f"FORESAIL_ACTIVATOR_ROUTING must be one of {', '.join(ROUTINGS)}, not {args.routing!r}")
    try:
        check_port("--port", args.port)
        check_upstream(args.upstream)
        if not 0 <= args.hold_timeout < float("inf"):
            raise ValueError(f"--hold-timeout must be seconds >= 0, not {args.hold_timeout:g}")
        if not 0 <= args.response_timeout < float("inf"):
            raise ValueError(f"--response-timeout must be seconds >= 0 (0: no limit), not {args.response_timeout:g}")
        if args.max_held < 1:
            raise ValueError(f"--max-held must be at least 1, not {args.max_held}")
        if args.max_held_mib < 1:
            raise ValueError(f"--max-held-mib must be at least 1, not {args.max_held_mib}")
        if args.max_body_mib < 1:
            raise ValueError(f"--max-body-mib must be at least 1, not {args.max_body_mib}")
        check_load_factor("--prefix-load-factor", args.prefix_load_factor)
        info, token_file = use_kubeconfig(args.kubeconfig)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def upstream(namespace: str, name: str) -> str:
        return str(args.upstream).format(namespace=namespace, name=name)

    activator = Activator(KubeClient(info, token_file=token_file), upstream, tuple(args.namespace), args.hold_timeout,
                          args.max_held, routing=args.routing, prefix_load_factor=args.prefix_load_factor,
                          max_held_bytes=args.max_held_mib * 2 ** 20, max_body_bytes=args.max_body_mib * 2 ** 20,
                          response_timeout_s=args.response_timeout)
    # on SIGTERM (a rollout) new connections stop, and what is held or streaming gets its answer first; a
    # client that closes its connection cancels its request (held, or sent on: the pod's connection closes);
    # no --host: every address of both families (asyncio leaves out a family the host has not)
    try:
        web.run_app(activator.app(), host=args.host, port=args.port, print=None, access_log=None,
                    shutdown_timeout=args.hold_timeout + 30, handler_cancellation=True)
    except OSError as exc:  # before anything is served
        if exc.errno not in LISTEN_ERRORS and not isinstance(exc, socket.gaierror):
            raise
        where = f"--host {args.host} --port {args.port}" if args.host else f"--port {args.port}"
        raise SystemExit(f"error: cannot serve on {where}: {exc.strerror}") from None
    return 0
