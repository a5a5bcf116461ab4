"""Metric exporters for tests that run a real Prometheus: a registry served as the pods serve theirs,
and counters that grow at set rates."""

from __future__ import annotations

import contextlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest


def serve(registry: CollectorRegistry) -> ThreadingHTTPServer:
    """Serve ``registry`` on 127.0.0.1 in the text format, as the inference server and the activator do
    (prometheus_client's own server answers Prometheus in OpenMetrics, whose names turn vLLM's colons into
    underscores)."""

    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = generate_latest(registry)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@contextlib.contextmanager
def counting(rates: list[tuple[Any, float]]) -> Iterator[None]:
    """While inside, increase each counter at its rate per second, by the clock (so that the rates hold
    however often the thread runs)."""
    stop = threading.Event()

    def count() -> None:
        last = time.monotonic()
        while not stop.wait(0.1):
            now = time.monotonic()
            for counter, rate in rates:
                counter.inc(rate * (now - last))
            last = now

    thread = threading.Thread(target=count, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
