"""Metric exporters for tests that run a real Prometheus: a registry served as the pods serve theirs,
counters that grow at set rates, and pods that hold requests."""

from __future__ import annotations

import contextlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, generate_latest

from foresail.demo.prometheus import PrometheusServer
from tests.helpers import Kube


def serve(registry: CollectorRegistry, failing: Callable[[], bool] = lambda: False) -> ThreadingHTTPServer:
    """Serve ``registry`` on 127.0.0.1 in the text format, as the inference server and the activator do
    (prometheus_client's own server answers Prometheus in OpenMetrics, whose names turn vLLM's colons into
    underscores); an empty 500 while ``failing()``."""

    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = b"" if failing() else generate_latest(registry)
            self.send_response(500 if failing() else 200)
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


@contextlib.contextmanager
def serving(running: dict[str, float]) -> Iterator[dict[str, str]]:
    """While inside, one metrics server per name in ``running``, on 127.0.0.1, with that many requests
    running under vLLM's names and none completed; gives each name's /metrics URL."""
    servers = {}
    for name, value in running.items():
        registry = CollectorRegistry()
        Gauge("vllm:num_requests_running", "requests running", ["model_name"], registry=registry).labels(
            "tiny").set(value)
        Gauge("vllm:num_requests_waiting", "requests queued", ["model_name"], registry=registry).labels("tiny").set(0)
        Counter("vllm:request_success", "requests completed", registry=registry)
        servers[name] = serve(registry)
    try:
        yield {name: f"http://127.0.0.1:{s.server_address[1]}/metrics" for name, s in servers.items()}
    finally:
        for server in servers.values():
            server.shutdown()


@contextlib.contextmanager
def pods_in_flight(kube: Kube, namespace: str, running: dict[str, float],
                   prometheus: PrometheusServer | None = None,
                   owner: str = "") -> Iterator[dict[str, tuple[str, dict[str, str]]]]:
    """While inside, each pod named in ``running`` serves its metrics (``serving``): its Pod object points
    there (``status.podIP`` and the ``prometheus.io/port`` annotation), and ``prometheus``, if given,
    scrapes it with the target labels the chart's scrape config attaches (namespace, llmdeployment
    ``owner``, pod); gives each pod's scrape target (address, labels)."""
    with serving(running) as urls:
        targets = {}
        for pod, url in urls.items():
            address = url.split("/")[2]
            path = f"/api/v1/namespaces/{namespace}/pods/{pod}"
            kube.merge(f"{path}/status", {"status": {"podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}]}})
            kube.merge(path, {"metadata": {"annotations": {"prometheus.io/port": address.split(":")[1]}}})
            targets[pod] = (address, {"namespace": namespace, "llmdeployment": owner, "pod": pod})
        if prometheus is not None:
            prometheus.write_targets(list(targets.values()))
        try:
            yield targets
        finally:
            if prometheus is not None:
                prometheus.write_targets([])
