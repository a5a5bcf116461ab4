"""A spec's runtime changed from one family of metric names to another (tgi to vllm): while the rollout
replaces the pods, the deployment's pods run both, and a real Prometheus answers its series in both runtimes'
queries. The snapshot adds them up (it kept one of them, whichever query came last: the demand and the queue
of the other runtime's pods were lost, so replicas could be scaled down in the middle of the rollout)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge

from foresail.demo.prometheus import PrometheusServer
from foresail_operator.metrics import PrometheusSource, Signals
from foresail_operator.runtimes import RUNTIMES
from tests.helpers import wait_for
from tests.operator.exporters import counting, serve

KEY = ("default", "chat")


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus (make install)")
def test_the_pods_of_both_runtimes_count_during_a_rollout_from_tgi_to_vllm(tmp_path: Path):
    tgi, vllm = CollectorRegistry(), CollectorRegistry()
    tgi_done = Gauge("tgi_request_success", "TGI's counter, exported without _total", registry=tgi)
    Gauge("tgi_batch_current_size", "running", registry=tgi).set(2)
    Gauge("tgi_queue_size", "queued", registry=tgi).set(4)
    vllm_done = Counter("vllm:request_success", "requests completed", registry=vllm)
    Gauge("vllm:num_requests_running", "running", registry=vllm).set(1)
    Gauge("vllm:num_requests_waiting", "queued", registry=vllm).set(1)
    Gauge("vllm:kv_cache_usage_perc", "KV cache", registry=vllm).set(0.25)
    servers = [serve(tgi), serve(vllm)]
    try:
        with PrometheusServer(tmp_path / "prometheus") as prometheus, \
                counting([(tgi_done, 2.0), (vllm_done, 3.0)]):
            prometheus.write_targets([(f"127.0.0.1:{server.server_address[1]}",
                                       {"namespace": KEY[0], "llmdeployment": KEY[1], "pod": f"chat-{i}"})
                                      for i, server in enumerate(servers)])
            source = PrometheusSource(prometheus.url, window="5s")

            def both() -> Signals | None:
                signals = source.snapshot(RUNTIMES).get(KEY)
                return signals if signals and signals.scraped == 2 and (signals.requests or 0) > 4.5 else None

            # 2 req/s at the TGI pod and 3 at the vLLM one: more than either alone once both are scraped
            signals = wait_for(both, timeout=40, interval=1.0, what="5 req/s from the pods of both runtimes")
            assert signals.requests < 7, signals  # not counted twice (10)
            assert (signals.running, signals.waiting, signals.kv_cache) == (3, 5, 0.25), signals
    finally:
        for server in servers:
            server.shutdown()
