"""`foresail operator`: run the kopf operator."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `foresail operator` (each also has a FORESAIL_* environment variable)."""
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, else $KUBECONFIG)")
    parser.add_argument("--namespace", "-n", action="append", default=[],
                        help="watch only this namespace (repeatable; default: all namespaces)")
    parser.add_argument("--prometheus-url", help="Prometheus base URL (FORESAIL_PROMETHEUS_URL)")
    parser.add_argument("--peering", help="kopf peering name (FORESAIL_PEERING, default foresail)")
    parser.add_argument("--standalone", action="store_true",
                        help="no peering: for a single local operator")
    parser.add_argument("--priority", type=int,
                        help="peering priority (default: random, so that exactly one replica acts)")
    parser.add_argument("--health-port", type=int,
                        help="serve /healthz on this port (FORESAIL_HEALTH_PORT, default 0: off)")
    parser.add_argument("--metrics-port", type=int,
                        help="serve the operator's /metrics on this port (FORESAIL_METRICS_PORT, default 0: off)")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")


def run(args: argparse.Namespace) -> int:
    """Start the operator and block until it stops."""
    import kopf

    from foresail_operator import handlers  # noqa: F401  (registers the handlers)
    from foresail_operator.config import OperatorConfig
    from foresail_operator.flags import port_setting, use_kubeconfig

    try:
        health_port = port_setting("--health-port", args.health_port, "FORESAIL_HEALTH_PORT")
        metrics_port = port_setting("--metrics-port", args.metrics_port, "FORESAIL_METRICS_PORT")
        config = OperatorConfig.from_env(namespaces=tuple(args.namespace), prometheus_url=args.prometheus_url,
                                         peering=args.peering, standalone=args.standalone or None,
                                         metrics_port=metrics_port)
        if health_port and health_port == metrics_port:
            raise ValueError(f"the health port and the metrics port must differ (both {health_port})")
        if metrics_port:
            _check_free(metrics_port)
        use_kubeconfig(args.kubeconfig)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    kopf.configure(verbose=args.verbose, log_prefix=True)  # each object's lines start [namespace/name]
    with contextlib.suppress(asyncio.CancelledError):  # as kopf.run
        asyncio.run(_operate(
            health_port,
            clusterwide=not config.namespaces,
            namespaces=config.namespaces,
            standalone=config.standalone,
            peering_name=config.peering,
            priority=args.priority if args.priority is not None else random.randint(1, 2**31 - 1),
            memo=kopf.Memo(config=config),
        ))
    return 0


def _check_free(port: int) -> None:
    """ValueError where /metrics cannot listen on ``port`` as the startup handler will
    (handlers.start_collector): there, a port taken since stops the operator (kopf.PermanentError)."""
    family, address = (socket.AF_INET6, "::") if socket.has_dualstack_ipv6() else (socket.AF_INET, "0.0.0.0")
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the metrics server does
        try:
            probe.bind((address, port))
        except OSError as exc:
            raise ValueError(f"cannot serve /metrics on port {port}: {exc.strerror}") from None


async def _operate(health_port: int, **options: Any) -> None:
    """kopf's operator, as ``kopf.run`` runs it, with /healthz on ``health_port`` unless 0 (``_serve_health``)."""
    import kopf

    runner = await _serve_health(health_port) if health_port else None
    try:
        await kopf.operator(**options)
    finally:
        if runner is not None:
            await runner.cleanup()


async def _serve_health(port: int) -> web.AppRunner:
    """/healthz as kopf's liveness endpoint answers it with no probe handler (``{}``, while the operator's loop
    runs), but on every IPv4 and IPv6 address (IPv4 only where the host has no IPv6): kopf's binds the one
    address its URL names."""
    from aiohttp import web

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:  # no host: every address of each family there is
        await web.TCPSite(runner, None, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise SystemExit(f"error: cannot serve /healthz on port {port}: {exc.strerror}") from None
    return runner
