"""`autoscaling.demandUnit: tokens`: demand, forecast and capacity counted in prompt + generated tokens/s.

The metrics path is the operator's own: `PrometheusSource` (prometheus-api-client over HTTP), the
`Collector` and the decision loop's `step` in advisory mode. The first test reads token counters through
a real Prometheus scraping a target that counts like a vLLM pod; the others use `FakePrometheus`
(checked against a real Prometheus in tests/reliability/test_prometheus_faults.py), which reports
1.5 req/s, 300 prompt and 75 generated tokens/s (250 tokens per request) on 3 ready replicas.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter

from foresail.demo.prometheus import PrometheusServer
from foresail_operator.activation import ARRIVALS_METRIC
from foresail_operator.autoscaler import Loop, backfill
from foresail_operator.collector import Collector
from foresail_operator.metrics import PrometheusSource, Signals
from foresail_operator.spec import LLMDeploymentSpec, parse_spec
from tests.helpers import wait_for
from tests.operator.advisory import KEY, decisions
from tests.operator.exporters import counting, serve


def spec(unit: str, capacity: float) -> LLMDeploymentSpec:
    return parse_spec({"model": {"source": "builtin:tiny"}, "minReplicas": 1, "maxReplicas": 10,
                       "autoscaling": {"mode": "advisory", "intervalSeconds": 5, "demandUnit": unit,
                                       "slo": {"capacityPerReplica": capacity}}})


async def test_tokens_per_second_set_the_replica_count() -> None:
    loop, decision = await decisions(spec("tokens", 100))
    fields = loop.view["fields"]
    assert fields["forecast"]["demand"] == 375  # 300 prompt + 75 generated tokens/s
    assert fields["recommendedReplicas"] == 4 and "375 tok/s needs 4 replicas at 100 tok/s each" in decision.reason
    assert fields["capacity"]["perReplica"] == 100 and loop.view["conditions"]["MetricsAvailable"][0] is True
    # the forecaster's counting noise is that of requests worth 250 tokens each, not of single tokens
    assert loop.policy is not None and loop.policy.forecaster.arrival_size == 250
    # the same pods counted in requests: 1.5 req/s at 100 each needs 1, and the 3 found are kept
    loop, decision = await decisions(spec("requests", 100))
    assert loop.view["fields"]["forecast"]["demand"] == 1.5 and loop.view["fields"]["recommendedReplicas"] == 3
    assert loop.policy is not None and loop.policy.forecaster.arrival_size == 1


async def test_without_token_counters_the_replicas_are_held_and_the_condition_says_why() -> None:
    loop, decision = await decisions(spec("tokens", 100), values={"prompt_tokens": "NaN", "generation_tokens": "NaN"})
    ok, reason, message = loop.view["conditions"]["MetricsAvailable"]
    assert (ok, reason) == (False, "NoData") and "no token counters for default/tiny" in message, message
    assert decision.replicas == 3 and "missing" in decision.reason


def test_queued_requests_count_at_the_recent_tokens_per_request() -> None:
    loop = Loop(KEY, forecast_step_s=60.0)
    loop.configure(spec("tokens", 100), None)
    idle = loop.read(Signals(requests=0.0, prompt_tokens=0.0, generation_tokens=0.0, waiting=4.0), taken_at=90.0)
    assert idle == (0.0, 0.0, 1000.0, False)  # no completion seen yet: the default
    busy = Signals(requests=2.0, prompt_tokens=400.0, generation_tokens=100.0, waiting=4.0)
    assert loop.read(busy, taken_at=100.0) == (500.0, 500.0, 250.0, False)
    more = Signals(requests=2.0, prompt_tokens=400.0, generation_tokens=100.0, waiting=8.0)
    reading = loop.read(more, taken_at=110.0)
    assert reading is not None
    assert reading[:3] == pytest.approx((500.0, 500.0 + 4 / 10 * 250.0, 250.0))  # 4 more in 10 s
    assert loop.read(Signals(requests=2.0, waiting=8.0), taken_at=120.0) is None  # no token series
    # no pod reports: the requests the activator counted arriving, at the tokens per request lately
    assert loop.read(Signals(arrivals=0.5), taken_at=130.0) == (0.0, 125.0, 250.0, True)
    # pods report and the activator counts more (requests it holds, or the pods' counts lag): the larger
    both = Signals(requests=2.0, prompt_tokens=400.0, generation_tokens=100.0, running=0.0, arrivals=3.0)
    assert loop.read(both, taken_at=140.0) == (500.0, 750.0, 250.0, False)
    assert loop.read(Signals(requests=2.0, prompt_tokens=400.0, generation_tokens=100.0, running=0.0, arrivals=1.0),
                     taken_at=150.0) == (500.0, 500.0, 250.0, False)


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus (make install)")
def test_token_counters_read_through_a_real_prometheus(tmp_path: Path) -> None:
    """A target counting like a vLLM pod (5 req/s of 200 prompt and 50 generated tokens each), scraped by
    a real Prometheus: the instant signals and the backfill's range query in both units."""
    registry = CollectorRegistry()
    requests_ = Counter("vllm:request_success", "requests", registry=registry)
    prompt = Counter("vllm:prompt_tokens", "prompt tokens", registry=registry)
    generated = Counter("vllm:generation_tokens", "generated tokens", registry=registry)

    server = serve(registry)
    port = server.server_address[1]
    try:
        with counting([(requests_, 5.0), (prompt, 1000.0), (generated, 250.0)]), PrometheusServer(tmp_path) as real:
            real.write_targets([(f"127.0.0.1:{port}", {"namespace": "default", "llmdeployment": "tiny"})])
            source = PrometheusSource(real.url, timeout_s=5.0, window="5s")
            # a rate() over 5 s reads low until the series is older than its window: wait for the requests'
            signals = wait_for(lambda: (s := source.snapshot(["foresail"]).get(KEY)) and s.requests
                               and abs(s.requests - 5.0) < 1.0 and s, timeout=40, what="5 req/s in Prometheus")
            assert signals.prompt_tokens == pytest.approx(1000.0, rel=0.3)
            assert signals.generation_tokens == pytest.approx(250.0, rel=0.3)

            def both_units() -> bool:  # polled: a range query's rate() may lag the instant read above
                now = time.time()
                _, tokens = source.demand_history(KEY, "foresail", now - 60, now, 1.0, unit="tokens")
                _, reqs = source.demand_history(KEY, "foresail", now - 60, now, 1.0)
                assert tokens and reqs
                assert tokens[-1] == pytest.approx(1250.0, rel=0.3) and reqs[-1] == pytest.approx(5.0, rel=0.3)
                return True

            wait_for(both_units, timeout=20, what="the history in tokens and in requests")

            # the decision loop's backfill, at start in requests and again after a switch to tokens (the
            # forecaster's buckets hold the first, ramping, seconds of the series, and the second backfill
            # reaches further: compare the two units over the buckets both hold)
            loop, collector = Loop(KEY, forecast_step_s=1.0), Collector(source, period_s=1.0)
            loaded: dict[str, dict[int, float]] = {}
            for unit in ("requests", "tokens"):
                assert loop.needs_backfill(spec(unit, 1.0))
                loop.configure(spec(unit, 1.0), None)
                asyncio.run(backfill(loop, collector, "foresail", logging.getLogger("test")))
                assert not loop.needs_backfill(spec(unit, 1.0))
                assert loop.policy is not None  # configured
                forecaster = loop.policy.forecaster
                assert forecaster.start_bucket_ is not None  # backfilled
                loaded[unit] = {forecaster.start_bucket_ + i: float(v)
                                for i, v in enumerate(forecaster.history_) if v > 0}
            both = set(loaded["requests"]) & set(loaded["tokens"])
            assert both, loaded
            tokens, requests = (sum(loaded[unit][b] for b in both) for unit in ("tokens", "requests"))
            assert tokens / requests == pytest.approx(250.0, rel=0.3)
    finally:
        server.shutdown()
        server.server_close()


def test_a_changed_unit_starts_the_history_and_capacity_over() -> None:
    """What was learned in requests means nothing in tokens: the forecaster and capacity start again."""
    loop = Loop(KEY, forecast_step_s=60.0)
    loop.configure(parse_spec({"model": {"source": "builtin:tiny"}}), None)
    assert loop.policy is not None and loop.capacity is not None
    loop.policy.warm_start([60.0, 120.0, 180.0], [1.0, 2.0, 3.0])
    before = loop.policy
    config = loop.configure(parse_spec({"model": {"source": "builtin:tiny"},
                                        "autoscaling": {"demandUnit": "tokens"}}), None)
    assert loop.policy is not before and loop.policy.forecaster.start_bucket_ is None
    assert (config.unit, config.capacity, loop.capacity.initial) == ("tok/s", 1000.0, 1000.0)


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus (make install)")
def test_the_backfill_takes_the_larger_of_the_pods_and_the_activators_count(tmp_path: Path) -> None:
    """Through a real Prometheus: the pods of "tiny" complete 2 req/s while the activator counts 6 arriving
    (it holds the rest while replicas start), those of "other" 5 while it counts 1 (clients that call the
    Service directly). The backfill's history is the larger of the two, 6 and 5, as the live read is."""
    rates = {("pods", "tiny"): 2.0, ("pods", "other"): 5.0, ("door", "tiny"): 6.0, ("door", "other"): 1.0}
    registries = {"tiny": CollectorRegistry(), "other": CollectorRegistry(), "door": CollectorRegistry()}
    arrivals = Counter(ARRIVALS_METRIC, "arrivals", ["namespace", "llmdeployment"], registry=registries["door"])
    counters = {("pods", name): Counter("vllm:request_success", "requests", registry=registries[name])
                for name in ("tiny", "other")}
    counters |= {("door", name): arrivals.labels("default", name) for name in ("tiny", "other")}
    servers = {name: serve(registry) for name, registry in registries.items()}
    address = {name: f"127.0.0.1:{server.server_address[1]}" for name, server in servers.items()}
    try:
        with counting([(counters[key], rate) for key, rate in rates.items()]), PrometheusServer(tmp_path) as real:
            real.write_targets([(address[n], {"namespace": "default", "llmdeployment": n}) for n in ("tiny", "other")])
            real.scrape_activator(address["door"])
            source = PrometheusSource(real.url, timeout_s=5.0, window="5s")

            def settled() -> bool:
                snapshot = source.snapshot(["foresail"])
                return all((s := snapshot.get(("default", n))) and s.requests and s.arrivals
                           and abs(s.requests - rates["pods", n]) < 0.5 and abs(s.arrivals - rates["door", n]) < 0.5
                           for n in ("tiny", "other"))

            wait_for(settled, timeout=40, what="both deployments' rates in Prometheus")

            def ends_at_the_larger() -> bool:
                now = time.time()
                for name, larger in (("tiny", 6.0), ("other", 5.0)):
                    _, history = source.demand_history(("default", name), "foresail", now - 30, now, 1.0)
                    assert history and history[-1] == pytest.approx(larger, rel=0.2), (name, history)
                return True

            # a range query's rate() reads low while a series is younger than its window, which the instant
            # reads above may already have outgrown (once seen at 4.7 of 6 on a loaded machine): poll it too
            wait_for(ends_at_the_larger, timeout=20, what="the history to end at the larger of the two counts")
    finally:
        for server in servers.values():
            server.shutdown()
