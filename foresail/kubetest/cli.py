"""``foresail dev apiserver``: run the Kubernetes API test server."""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import re
import signal
import sys
from pathlib import Path

import yaml

from foresail.checks import check_port, check_writable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``dev`` sub-subcommands."""
    sub = parser.add_subparsers(dest="dev_command", metavar="TOOL", required=True)
    server = sub.add_parser("apiserver", help="run the Kubernetes API test server",
                            description="Run the Kubernetes API test server on 127.0.0.1.")
    server.add_argument("--port", type=int, default=0, help="port (0 picks a free one)")
    server.add_argument("--kubeconfig", type=Path, help="write a kubeconfig for it here")
    server.add_argument("--simulate-pods", action="store_true",
                        help="run the simulated Deployment controller and kubelet")
    server.add_argument("--ready-delay", type=float, default=0.5, metavar="S",
                        help="seconds before a simulated pod becomes ready (default 0.5)")
    server.add_argument("--unpullable-images", default=r".*(doesnotexist|unpullable).*",
                        metavar="REGEX", help="images the simulated kubelet cannot pull")
    server.add_argument("--no-validate-builtins", action="store_true",
                        help="do not check built-in objects against the Kubernetes 1.32 schemas")
    server.add_argument("--bookmark-interval", type=float, default=1.0, metavar="S",
                        help="seconds between watch BOOKMARK events (default 1)")
    server.add_argument("--event-log-size", type=int, default=1000, metavar="N",
                        help="events kept for watch resumption (default 1000)")


def write_kubeconfig(path: Path, url: str) -> None:
    """Write a kubeconfig whose current context points at ``url`` (atomically), in a folder that exists
    (``_check_kubeconfig``)."""
    config = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": "kubetest", "cluster": {"server": url}}],
        "users": [{"name": "kubetest", "user": {"token": "kubetest-token"}}],
        "contexts": [{"name": "kubetest", "context": {"cluster": "kubetest", "user": "kubetest",
                                                      "namespace": "default"}}],
        "current-context": "kubetest",
    }
    partial = path.with_name(path.name + ".partial")
    partial.write_text(yaml.safe_dump(config))
    os.replace(partial, path)


async def serve(args: argparse.Namespace) -> None:
    """Serve until SIGTERM or SIGINT."""
    from aiohttp import web

    from .controllers import ControllerConfig, Simulator
    from .server import ServerConfig, app_api, make_app

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app = make_app(ServerConfig(args.event_log_size, not args.no_validate_builtins,
                                args.bookmark_interval))
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port)
    await site.start()
    port = runner.addresses[0][1]
    url = f"http://127.0.0.1:{port}"
    simulator = None
    if args.simulate_pods:
        simulator = Simulator(app_api(app), ControllerConfig(args.ready_delay,
                                                             args.unpullable_images))
        simulator.start()
    if args.kubeconfig:
        write_kubeconfig(args.kubeconfig, url)
    print(f"kubetest apiserver listening on {url}", flush=True)
    await stop.wait()
    if simulator:
        await simulator.stop()
    await runner.cleanup()


def configure_logging() -> None:
    """Log warnings and errors (internal errors with their tracebacks) of every library, and
    the server's own notes (e.g. why each watch ended), to stderr."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("foresail.kubetest").setLevel(logging.INFO)


def _check_flags(args: argparse.Namespace) -> None:
    """ValueError saying what is wrong with ``dev apiserver``'s flags, if anything."""
    check_port("--port", args.port)
    if not 0 <= args.ready_delay < math.inf or not 0 < args.bookmark_interval < math.inf:
        raise ValueError("--ready-delay must be seconds >= 0 and --bookmark-interval seconds > 0")
    if args.event_log_size < 1:
        raise ValueError("--event-log-size must be at least 1")
    try:
        re.compile(args.unpullable_images)
    except re.error as exc:
        raise ValueError(f"--unpullable-images is not a regular expression: {exc}") from None
    if args.kubeconfig is not None:
        _check_kubeconfig(args.kubeconfig)


def _check_kubeconfig(path: Path) -> None:
    """Make the folder of ``path``; ValueError unless a kubeconfig can then be written there."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--kubeconfig {path}: {path.parent} is not a folder and cannot be made "
                         f"({exc.strerror or exc})") from None
    check_writable("--kubeconfig", str(path))


def run(args: argparse.Namespace) -> int:
    """Run the chosen ``dev`` tool."""
    if args.dev_command == "apiserver":
        try:
            _check_flags(args)
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        configure_logging()
        asyncio.run(serve(args))
        return 0
    print(f"unknown dev tool {args.dev_command}", file=sys.stderr)
    return 2
