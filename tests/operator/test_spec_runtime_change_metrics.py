"""A spec's runtime changed from one family of metric names to another (tgi to vllm, sglang to vllm): while the
rollout replaces the pods, the deployment's pods run both, and a real Prometheus answers its series in both
runtimes' queries. The snapshot adds them up (it kept one of them, whichever query came last: the demand and the
queue of the other runtime's pods were lost, so replicas could be scaled down in the middle of the rollout); the
p90 TTFT is read per runtime's histogram and the larger kept (a sum by `le` across both mixed the counts of
different bounds: 9.6 s where the slower pods' p90 is 3 s, 0.96 s where every pod's is 0.3 s, and a rollout
shrank the learned capacity as if the TTFT SLO were broken)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from foresail.demo.prometheus import PrometheusServer
from foresail_operator.metrics import PrometheusSource, Signals
from foresail_operator.runtimes import RUNTIMES
from tests.helpers import wait_for
from tests.operator.exporters import counting, serve

KEY = ("default", "chat")
VLLM_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0, 160.0, 640.0, 2560.0)
SGLANG_BUCKETS = (0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0, 200.0, 400.0)
needs_prometheus = pytest.mark.skipif(shutil.which("prometheus") is None,
                                      reason="needs Debian's prometheus (make install)")


def read_both(tmp_path: Path, registries: list[CollectorRegistry], rates: list[tuple[Any, float]],
              more_than: float) -> Signals:
    """Serve each registry as one pod of the deployment to a real Prometheus, the counters growing at their rates;
    the first snapshot that has both pods scraped and more than ``more_than`` req/s."""
    servers = [serve(registry) for registry in registries]
    try:
        with PrometheusServer(tmp_path / "prometheus") as prometheus, counting(rates):
            prometheus.write_targets([(f"127.0.0.1:{server.server_address[1]}",
                                       {"namespace": KEY[0], "llmdeployment": KEY[1], "pod": f"chat-{i}"})
                                      for i, server in enumerate(servers)])
            source = PrometheusSource(prometheus.url, window="5s")

            def both() -> Signals | None:
                signals = source.snapshot(RUNTIMES).get(KEY)
                return signals if signals and signals.scraped == 2 and (signals.requests or 0) > more_than else None

            return wait_for(both, timeout=40, interval=1.0, what=f"{more_than} req/s from the pods of both runtimes")
    finally:
        for server in servers:
            server.shutdown()


@needs_prometheus
def test_the_pods_of_both_runtimes_count_during_a_rollout_from_tgi_to_vllm(tmp_path: Path):
    tgi, vllm = CollectorRegistry(), CollectorRegistry()
    tgi_done = Gauge("tgi_request_success", "TGI's counter, exported without _total", registry=tgi)
    Gauge("tgi_batch_current_size", "running", registry=tgi).set(2)
    Gauge("tgi_queue_size", "queued", registry=tgi).set(4)
    vllm_done = Counter("vllm:request_success", "requests completed", registry=vllm)
    Gauge("vllm:num_requests_running", "running", registry=vllm).set(1)
    Gauge("vllm:num_requests_waiting", "queued", registry=vllm).set(1)
    Gauge("vllm:kv_cache_usage_perc", "KV cache", registry=vllm).set(0.25)
    # 2 req/s at the TGI pod and 3 at the vLLM one: more than either alone once both are scraped
    signals = read_both(tmp_path, [tgi, vllm], [(tgi_done, 2.0), (vllm_done, 3.0)], more_than=4.5)
    assert signals.requests is not None and signals.requests < 7, signals  # not counted twice (10)
    assert (signals.running, signals.waiting, signals.kv_cache) == (3, 5, 0.25), signals


@needs_prometheus
def test_the_ttft_p90_of_a_rollout_between_runtimes_is_the_slower_runtimes(tmp_path: Path):
    vllm, sglang = CollectorRegistry(), CollectorRegistry()
    fast = Histogram("vllm:time_to_first_token_seconds", "TTFT", buckets=VLLM_BUCKETS, registry=vllm)
    slow = Histogram("sglang:time_to_first_token_seconds", "TTFT", buckets=SGLANG_BUCKETS, registry=sglang)
    counters = [(Counter("vllm:request_success", "done", registry=vllm), 3.0),
                (Counter("sglang:num_requests", "done", registry=sglang), 3.0)]
    stop = threading.Event()

    def observe() -> None:  # the same number of requests at each pod: 0.05 s at the vLLM one, 3 s at SGLang's
        while not stop.wait(0.05):
            fast.observe(0.05)
            slow.observe(3.0)

    feeder = threading.Thread(target=observe, daemon=True)
    feeder.start()
    try:
        signals = read_both(tmp_path, [vllm, sglang], counters, more_than=5.5)
    finally:
        stop.set()
        feeder.join()
    assert signals.ttft_p90 is not None and 2.0 <= signals.ttft_p90 <= 4.0, signals  # SGLang's 2-4 s bucket
