"""The pods of a deployment run two runtimes during a rollout (sglang to vllm), whose TTFT histograms have
different buckets. The p90 is read per runtime's histogram and the larger kept (a sum by `le` across both
mixed the counts of different bounds: 9.6 s where the slower pods' p90 is 3 s, 0.96 s where every pod's is
0.3 s), so that a rollout does not shrink the learned capacity as if the TTFT SLO were broken."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from foresail.demo.prometheus import PrometheusServer
from foresail_operator.metrics import PrometheusSource, Signals
from foresail_operator.runtimes import RUNTIMES
from tests.helpers import wait_for
from tests.operator.exporters import counting, serve

KEY = ("default", "chat")
VLLM_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0, 160.0, 640.0, 2560.0)
SGLANG_BUCKETS = (0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 2.0, 4.0, 6.0, 8.0, 10.0, 20.0, 40.0, 60.0, 80.0, 100.0, 200.0, 400.0)


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus (make install)")
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
    servers = [serve(vllm), serve(sglang)]
    try:
        with PrometheusServer(tmp_path / "prometheus") as prometheus, counting(counters):
            prometheus.write_targets([(f"127.0.0.1:{server.server_address[1]}",
                                       {"namespace": KEY[0], "llmdeployment": KEY[1], "pod": f"chat-{i}"})
                                      for i, server in enumerate(servers)])
            source = PrometheusSource(prometheus.url, window="5s")

            def both() -> Signals | None:
                signals = source.snapshot(RUNTIMES).get(KEY)
                return signals if signals and signals.scraped == 2 and (signals.requests or 0) > 5.5 else None

            signals = wait_for(both, timeout=40, interval=1.0, what="6 req/s from the pods of both runtimes")
            assert signals.ttft_p90 is not None and 2.0 <= signals.ttft_p90 <= 4.0, signals  # SGLang's 2-4 s bucket
    finally:
        stop.set()
        feeder.join()
        for server in servers:
            server.shutdown()
