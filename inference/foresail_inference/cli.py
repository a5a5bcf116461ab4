"""`foresail serve`: the OpenAI-compatible inference server. Heavy imports happen inside ``run``."""

from __future__ import annotations

import argparse
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the server's flags."""
    parser.add_argument("--model", default="builtin:tiny",
                        help="builtin:tiny, a model folder, a Hugging Face id or a .gguf file")
    parser.add_argument("--revision", default=None, help="Hugging Face revision (branch, tag or commit)")
    parser.add_argument("--cache-dir", default=None, help="Hugging Face cache folder")
    parser.add_argument("--served-model-name", default=None, help="model name in the API and metrics")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; '' (as containers run it): every IPv4 and IPv6 address (IPv4 "
                             "only where the host has no IPv6)")
    parser.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one and prints it")
    parser.add_argument("--max-waiting", type=int, default=256,
                        help="requests admitted but not yet generating; past it: 429")
    parser.add_argument("--max-tokens-in-flight", type=int, default=8192,
                        help="prompt + max_tokens summed over admitted requests (each rounded up to 16-token "
                             "pages); sizes the KV cache; past it: 429")
    parser.add_argument("--scheduler", choices=["prefill-step-first", "fifo"], default="prefill-step-first",
                        help="prefill-step-first: a waiting request's prefill runs in a step of its own (sooner "
                             "first token); fifo: transformers' default, prefills ride with the decodes (more "
                             "throughput)")
    parser.add_argument("--prefix-cache", action="store_true",
                        help="keep the KV-cache pages of finished requests and reuse them for prompts that start "
                             "with the same tokens (transformers' block sharing; evicted when the cache needs room)")
    parser.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest request body accepted")
    parser.add_argument("--api-key", default=os.environ.get("FORESAIL_API_KEY"),
                        help="bearer token required on the API (default: $FORESAIL_API_KEY; none: open)")
    parser.add_argument("--drain-timeout", type=float, default=30.0,
                        help="seconds to finish in-flight requests after SIGTERM")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="where to run the model")
    parser.add_argument("--log-level", default="INFO", type=str.upper,
                        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], help="logging level")


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM; exit 1 at once when the model cannot be found or loaded."""
    import asyncio
    import logging

    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for flag, value, ok, expected in (
        ("--port", args.port, 0 <= args.port <= 65535, "a port from 0 to 65535"),
        ("--max-waiting", args.max_waiting, args.max_waiting >= 1, "at least 1"),
        ("--max-tokens-in-flight", args.max_tokens_in_flight, args.max_tokens_in_flight >= 1, "at least 1"),
        ("--max-body-bytes", args.max_body_bytes, args.max_body_bytes >= 1, "at least 1"),
        ("--drain-timeout", args.drain_timeout, 0 <= args.drain_timeout < float("inf"), "seconds >= 0"),
        ("--threads", args.threads, args.threads is None or args.threads >= 1, "at least 1"),
    ):
        if not ok:
            logging.error("%s must be %s, got %s", flag, expected, value)
            return 2

    from .sources import ModelLoadError, resolve_source

    try:
        source = resolve_source(args.model)
    except ModelLoadError as exc:
        logging.error("cannot load model: %s", exc)
        return 1

    from .server import serve

    return asyncio.run(serve(args, args.served_model_name or source.default_name))
