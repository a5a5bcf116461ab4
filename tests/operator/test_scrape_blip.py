"""One pod's scrape that fails once: Prometheus drops its gauges (running, waiting) from the sums at once and
brings them back at the next scrape, while the request rate, a rate() over a window, carries on. The demand is
completions plus the growth of what is in the system between two snapshots, so the gauges' return read as new
demand (5 -> 7 req/s against a real Prometheus, /tmp/review7/metrics/repro_blip_prom.py). The growth counts only
between snapshots of the same number of scraped pods. The metrics path is the operator's own (`FakePrometheus`
through `PrometheusSource` and the `Collector`, `step`), against `FakePrometheus` and a real Prometheus."""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge

from foresail.demo.prometheus import PrometheusServer
from foresail_operator.autoscaler import Loop, step
from foresail_operator.collector import Collector
from foresail_operator.metrics import PrometheusSource, Signals
from tests.operator.advisory import BODY, KEY, THREE_READY
from tests.operator.exporters import counting, serve
from tests.operator.test_queue_growth import SPEC
from tests.reliability.fake_prometheus import FakePrometheus


async def demands(reads: list[tuple[str, str]]) -> list[tuple[float, float]]:
    """One decision after each read of (requests running, pods scraped), 5 req/s completed all along: the demand
    each decision read, and when its snapshot was taken."""
    fake = FakePrometheus([KEY], values={"requests": "5", "waiting": "0"}, scraped={KEY: "2"}).start()
    try:
        collector = Collector(PrometheusSource(fake.url, timeout_s=2.0, window="10s"), period_s=1.0)
        loop, log, out = Loop(KEY, forecast_step_s=60.0), logging.getLogger("test.blip"), []
        for running, scraped in reads:
            fake.values["running"], fake.scraped[KEY] = running, scraped
            await collector.collect_once()
            await step(loop, None, collector, BODY, SPEC, THREE_READY, [], log)  # type: ignore[arg-type]
            assert collector.taken_at is not None
            out.append((loop.view["fields"]["forecast"]["demand"], collector.taken_at))
        return out
    finally:
        fake.stop()


@pytest.mark.parametrize("reads", [
    [("60", "2"), ("60", "2"), ("30", "1"), ("60", "2"), ("60", "2")],  # pod b's scrape fails once
    [("60", "2"), ("60", "2"), ("70", "3"), ("70", "3")],  # a new pod, 10 running at its first scrape
], ids=["scrape-blip", "pod-added"])
async def test_the_gauges_of_pods_not_scraped_both_times_are_no_growth(reads: list[tuple[str, str]]) -> None:
    """A pod's gauges that come back after a failed scrape, or those of a pod that a scale-up added, are not
    arriving requests: the demand stays the 5 req/s completed."""
    assert [demand for demand, _ in await demands(reads)] == [5.0] * len(reads)


async def test_the_same_pods_growth_still_counts() -> None:
    """Every pod scraped both times: 30 more requests running is demand, as before."""
    (_, _), (_, first), (demand, second) = await demands([("60", "2"), ("60", "2"), ("90", "2")])
    assert demand == pytest.approx(5 + 30 / (second - first), rel=0.01)


class Pod:
    """A pod's metrics under vLLM's names, 30 requests running and 2.5 req/s completed, whose scrapes fail
    (HTTP 500) while ``failing`` is set."""

    def __init__(self) -> None:
        registry, self.failing = CollectorRegistry(), False
        Gauge("vllm:num_requests_running", "running", registry=registry).set(30)
        Gauge("vllm:num_requests_waiting", "waiting", registry=registry).set(0)
        self.done = Counter("vllm:request_success", "completed", registry=registry)
        self.server = serve(registry, lambda: self.failing)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"


async def read_when(collector: Collector, loop: Loop, scraped: float) -> tuple[Signals, float]:
    """Collect until ``scraped`` pods' targets are up, their 30 running requests each in the sum (the queries of a
    snapshot run one after another: a scrape may land between them), and the completions have a rate; then one
    decision: the signals it read and its demand."""
    deadline = time.monotonic() + 30
    while True:
        await collector.collect_once()
        signals, _ = collector.lookup(KEY, replicas=3)
        if signals is not None and signals.scraped == scraped and signals.running == 30 * scraped \
                and signals.requests is not None:
            break
        assert time.monotonic() < deadline, f"no snapshot with {scraped} pods scraped: {signals}"
        await asyncio.sleep(0.2)
    await step(loop, None, collector, BODY, SPEC, THREE_READY, [], logging.getLogger("test.blip"))  # type: ignore[arg-type]
    return signals, loop.view["fields"]["forecast"]["demand"]


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus (make install)")
async def test_a_failed_scrape_reads_no_demand_against_prometheus(tmp_path: Path) -> None:
    """Pod b's scrape fails once: the 30 requests it runs leave the sum and come back, and are no new demand."""
    pods = [Pod(), Pod()]
    try:
        with PrometheusServer(tmp_path) as prometheus, counting([(pod.done, 2.5) for pod in pods]):
            prometheus.write_targets([(pod.address, {"namespace": KEY[0], "llmdeployment": KEY[1], "pod": name})
                                      for pod, name in zip(pods, "ab", strict=True)])
            collector = Collector(PrometheusSource(prometheus.url, timeout_s=2.0, window="10s"), period_s=1.0)
            loop = Loop(KEY, forecast_step_s=60.0)
            await read_when(collector, loop, scraped=2)
            pods[1].failing = True
            await read_when(collector, loop, scraped=1)  # pod b's gauges are gone at once
            pods[1].failing = False
            signals, demand = await read_when(collector, loop, scraped=2)
    finally:
        for pod in pods:
            pod.server.shutdown()
            pod.server.server_close()
    assert signals.requests is not None
    assert demand == pytest.approx(signals.requests, rel=0.01)  # the completions only
