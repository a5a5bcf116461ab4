"""The instant queries of one snapshot are evaluated at one time, so that a scrape landing between two of them
does not mix two states of the pods in one snapshot (the running requests of one scrape, the waiting of the next:
a growth of the requests in the system that never happened).

A real Prometheus scrapes a target whose running and waiting gauges move together. A proxy in front of it holds
the snapshot's query of the waiting requests until a scrape of new values (5 and 5) landed, then forwards it as
it came, to the operator's own `PrometheusSource` (prometheus-api-client over HTTP)."""

from __future__ import annotations

import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from prometheus_client import CollectorRegistry, Gauge

from foresail.demo.prometheus import PrometheusServer
from foresail_operator.metrics import PrometheusSource
from tests.helpers import wait_for
from tests.operator.advisory import KEY
from tests.operator.exporters import serve


def holding_proxy(upstream: str, move: Callable[[], None], moved: list[float]) -> ThreadingHTTPServer:
    """Forwards each instant query to ``upstream`` as it came; the waiting requests' query only after calling
    ``move`` and once Prometheus answers the moved value (kept in ``moved``) to the same query without a time (at
    most 20 s)."""

    class Proxy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            url = urlparse(self.path)
            params = {name: values[0] for name, values in parse_qs(url.query).items()}
            if "num_requests_waiting" in params.get("query", ""):
                move()
                deadline = time.monotonic() + 20
                while not moved and time.monotonic() < deadline:
                    now = requests.get(f"{upstream}/api/v1/query", params={"query": params["query"]}, timeout=5)
                    moved.extend(float(r["value"][1]) for r in now.json()["data"]["result"] if r["value"][1] == "5")
                    time.sleep(0.1)
            answer = requests.get(upstream + url.path, params=params, timeout=10)
            self.send_response(answer.status_code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer.content)))
            self.end_headers()
            self.wfile.write(answer.content)

        def log_message(self, *args: object) -> None:
            pass

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    return proxy


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus (make install)")
def test_a_scrape_between_the_queries_of_a_snapshot_does_not_mix_two_states(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    running = Gauge("vllm:num_requests_running", "running", registry=registry)
    waiting = Gauge("vllm:num_requests_waiting", "waiting", registry=registry)
    running.set(1)
    waiting.set(1)
    moved: list[float] = []

    def move() -> None:  # one scrape sees both new
        running.set(5)
        waiting.set(5)

    target = serve(registry)
    try:
        with PrometheusServer(tmp_path) as real:
            real.write_targets([(f"127.0.0.1:{target.server_address[1]}",
                                 {"namespace": KEY[0], "llmdeployment": KEY[1]})])
            direct = PrometheusSource(real.url, timeout_s=5.0, window="5s")
            wait_for(lambda: (s := direct.snapshot(["foresail"]).get(KEY)) and s.waiting == 1.0, timeout=40,
                     what="the gauges in Prometheus")
            proxy = holding_proxy(real.url, move, moved)
            try:
                signals = PrometheusSource(f"http://127.0.0.1:{proxy.server_address[1]}", timeout_s=30.0,
                                           window="5s").snapshot(["foresail"])[KEY]
            finally:
                proxy.shutdown()
                proxy.server_close()
    finally:
        target.shutdown()
        target.server_close()
    assert moved == [5.0]  # the new values were scraped before the waiting requests' query was answered
    assert (signals.running, signals.waiting) == (1.0, 1.0)  # both as they were when the snapshot started
