"""The server's life: listen, load and warm the model, serve, drain on SIGTERM, exit."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn

import psutil
from aiohttp import web
from prometheus_client import disable_created_metrics

from .api import ServerState, build_app
from .engine import Engine, EngineError, Limits
from .metrics import ServerMetrics
from .sources import ModelLoadError

log = logging.getLogger("foresail_inference")


def seconds_since_process_start() -> float:
    """Seconds since this process started, to the clock tick on Linux. (psutil's create_time adds the boot time,
    which Linux gives in whole seconds, so it can be up to a second early.)"""
    try:
        after_name = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        started = int(after_name[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime: clock ticks after boot
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):  # not Linux
        return time.time() - psutil.Process().create_time()


def _url(address: Any) -> str:
    """The URL of a listening socket's address (an IPv6 one in brackets)."""
    host, port = address[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _load_and_start(args: argparse.Namespace, metrics: ServerMetrics) -> Engine:
    """Load the model and start its batching engine (runs in a worker thread)."""
    import torch
    from transformers.utils import logging as hf_logging

    from .models import load_model

    hf_logging.set_verbosity_error()
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = load_model(args.model, revision=args.revision, cache_dir=args.cache_dir, device=args.device)
    metrics.model_load_seconds.set(loaded.load_seconds)
    engine = Engine(loaded, Limits(args.max_waiting, args.max_tokens_in_flight), metrics, args.scheduler,
                    args.prefix_cache)
    engine.start()
    return engine


def _abandon_load() -> NoReturn:
    """Exit 0 now: a thread cannot be stopped, and the interpreter would wait at exit for the loading thread to
    finish the whole load (minutes, holding the GPU, for a large model)."""
    log.info("stopped while loading the model: the load is abandoned")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


async def serve(args: argparse.Namespace, name: str) -> int:
    """Answer /health at once, /ready once warmed; on SIGTERM drain and exit 0 (at once while loading). Exit 1 if
    loading fails."""
    disable_created_metrics()  # vLLM exports no *_created series
    metrics = ServerMetrics(name)
    state = ServerState(name, metrics, args.api_key or None, args.max_body_bytes)
    app = build_app(state)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    try:
        await site.start()
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", args.host, args.port, exc)
        await runner.cleanup()
        return 1
    urls = [_url(address) for address in runner.addresses]
    for url in urls:  # one per address: --host '' listens on each family's, on a port of its own with --port 0
        print(f"listening on {url}", flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="load")
    loading = loop.run_in_executor(executor, _load_and_start, args, metrics)
    stopping = asyncio.ensure_future(stop.wait())
    first: list[asyncio.Future[Any]] = [loading, stopping]
    await asyncio.wait(first, return_when=asyncio.FIRST_COMPLETED)
    if not loading.done():
        await runner.cleanup()
        _abandon_load()
    try:
        engine = loading.result()
    except ModelLoadError as exc:
        log.error("cannot load model: %s", exc)
        await runner.cleanup()
        return 1
    except Exception:
        log.exception("cannot start the model %s", args.model)
        await runner.cleanup()
        return 1
    state.engine = engine
    try:
        await engine.warm_up()
    except EngineError as exc:  # e.g. a KV cache (--max-tokens-in-flight) too large for the memory
        log.error("cannot start the model %s: %s", args.model, exc)
        await asyncio.to_thread(engine.stop)
        await runner.cleanup()
        return 1
    state.ready = True
    cold_start = seconds_since_process_start()
    metrics.cold_start_seconds.set(cold_start)
    log.info("ready on %s (cold start %.2f s, model load %.2f s)", urls[0], cold_start, engine.loaded.load_seconds)
    print(f"ready on {urls[0]}", flush=True)

    await stopping
    log.info("draining: %d requests in flight, up to %.0f s", len(engine.in_flight), args.drain_timeout)
    drained = await engine.drain(args.drain_timeout)
    if not drained:
        log.warning("drain timeout: abandoning %d requests", len(engine.in_flight))
    # the engine first: stopping it fails the requests left, so their handlers end and the runner closes at once
    # (instead of waiting its shutdown_timeout for them)
    await engine.shutdown()
    await runner.cleanup()
    log.info("stopped")
    return 0

