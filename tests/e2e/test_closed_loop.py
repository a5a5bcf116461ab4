"""The closed loop with every real part: API test server, operator process, Prometheus, and
real inference server processes started by the pod runner with a cold-start delay.

Two LLMDeployments, one predictive and one reactive, receive the same load ramp in the same run, with
evenly spaced arrivals, so that neither sees a noisier demand than the other.
"""

from __future__ import annotations

import asyncio
import functools
import math
import shutil
import signal
import threading
import time
import warnings
from typing import Any, Iterator

import pytest

from foresail.demo.load import replay
from foresail.demo.stack import LocalStack
from tests.helpers import condition, found, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus (make install)"),
]
COLD_START_S = 20.0
CAPACITY = 1.0
STEP_S = 5.0
WARMUP = [0.5] * 6  # 30 s of low load to build a little history
RAMP = [0.5 + 3.0 * (i + 1) / 18 for i in range(18)]  # 90 s ramp to 3.5 req/s
HOLD = [3.5] * 4
NEED_AT_PEAK = 4  # replicas at 1 req/s each; current demand needs 4 only in the last sixth of the ramp
T_PEAK = (len(WARMUP) + len(RAMP)) * STEP_S
# when current demand alone, read 5 % high (as reactive may read it), first needs the peak's replicas at the
# spec's capacity: 100 s
T_DEMAND = STEP_S * next(i for i, r in enumerate(WARMUP + RAMP) if math.ceil(1.05 * r / CAPACITY) >= NEED_AT_PEAK)


def manifest(name: str, mode: str) -> dict:
    return {"apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": name},
            "spec": {"model": {"source": "builtin:tiny"}, "minReplicas": 1, "maxReplicas": 5,
                     "autoscaling": {"mode": mode, "intervalSeconds": 5,
                                     "slo": {"capacityPerReplica": CAPACITY},
                                     "forecast": {"coldStartSeconds": int(COLD_START_S) + 3},
                                     "scaleDown": {"stabilizationSeconds": 20}}}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[LocalStack]:
    workdir = tmp_path_factory.mktemp("closed-loop")
    with LocalStack(workdir, cold_start_s=COLD_START_S) as st:
        yield st
        print((workdir / "operator.log").read_text()[-8000:])


def test_predictive_asks_ahead_of_the_peak_and_of_reactive(stack: LocalStack):
    """Replicas asked for at t are ready at t + cold start. Predictive mode must have the peak's
    replicas ready at the peak; reactive mode, which only sees current demand, asks later and has
    them ready only after the peak (this is the gap Foresail closes)."""
    for mode in ("predictive", "reactive"):
        stack.apply(manifest(mode, mode))
    for mode in ("predictive", "reactive"):
        stack.wait_ready(mode, 1, timeout_s=120)
    asked_at: dict[str, float] = {}
    ready_at: dict[str, float] = {}
    timeline: list[tuple] = []
    start = time.monotonic()
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.5):
            t = round(time.monotonic() - start, 1)
            for mode in ("predictive", "reactive"):
                desired = (stack.deployment(mode) or {}).get("spec", {}).get("replicas", 0)
                ready = stack.runner.ready_count("default", mode)
                timeline.append((t, mode, desired, ready))
                if mode not in asked_at and desired >= NEED_AT_PEAK:
                    asked_at[mode] = t
                if mode not in ready_at and ready >= NEED_AT_PEAK:
                    ready_at[mode] = t

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    rates = WARMUP + RAMP + HOLD

    async def both() -> list:
        return await asyncio.gather(*(replay(rates, STEP_S, functools.partial(stack.runner.endpoints, "default", mode),
                                             model=mode, even=True) for mode in ("predictive", "reactive")))

    outcomes = asyncio.run(both())
    stop.set()
    watcher.join()
    decisions = {m: stack.llmd(m)["status"].get("history", []) for m in ("predictive", "reactive")}
    histories = {m: [h["reason"] for h in decisions[m]] for m in decisions}
    detail = (f"asked at {asked_at}, ready at {ready_at}, peak at {T_PEAK} s; decisions {histories}; "
              f"timeline {timeline[::4]}")
    assert all(o.ok for run in outcomes for o in run if o.status != "no replica"), "requests failed"
    assert {"predictive", "reactive"} <= set(asked_at), detail
    # predictive asks for the peak's replicas on a forecast, before current demand alone needs them
    assert asked_at["predictive"] < T_DEMAND, detail
    assert any("forecast" in reason for reason in histories["predictive"]), detail
    # and before reactive, whose are ready only after the peak (on a quiet machine predictive's are ready
    # before it too; under CI load not always): when reactive asked on current demand at the spec's
    # capacity. Pods that fall behind that pace (a starved CPU) leave a backlog and teach a lower capacity,
    # on which reactive rightly asks early; that run compares nothing, and says so.
    reactive_ask = next((h["reason"] for h in decisions["reactive"] if h.get("to", 0) >= NEED_AT_PEAK), None)
    if reactive_ask is not None and ("backlog" in reactive_ask or f"at {CAPACITY:g} req/s each" not in reactive_ask):
        warnings.warn(f"reactive's pods fell behind {CAPACITY:g} req/s each, no comparison: {reactive_ask}",
                      stacklevel=1)
    else:
        assert asked_at["predictive"] < asked_at["reactive"], detail
        assert ready_at.get("reactive", math.inf) > T_PEAK, detail
    predictive = stack.llmd("predictive")
    assert condition(predictive, "ForecastReady")["status"] == "True"
    assert predictive["status"]["coldStartSeconds"] >= COLD_START_S
    # the pods' KV-cache gauge, through Prometheus, into the status (absent from a decision made without metrics)
    capacity = wait_for(lambda: "kvCacheUsage" in (c := stack.llmd("predictive")["status"].get("capacity") or {}) and c,
                        timeout=30, what="status.capacity.kvCacheUsage")
    assert capacity["perReplica"] > 0 and capacity["source"], capacity
    assert 0 <= capacity["kvCacheUsage"] <= 1, capacity
    # how often the recent forecasts covered demand, once ten were checked (one per 5-s decision, each a
    # horizon after it was made), through the CRD's status schema
    forecast = wait_for(lambda: "coverage" in (f := stack.llmd("predictive")["status"]["forecast"]) and f,
                        timeout=60, what="status.forecast.coverage")
    assert 0 <= forecast["coverage"] <= 1 and 10 <= forecast["checked"] <= 60, forecast


def test_operator_restart_keeps_the_forecast_history(stack: LocalStack):
    before = stack.llmd("predictive")["status"]["forecast"]["historySeconds"]
    assert before >= 60
    log = stack.workdir / "operator.log"
    backfills = log.read_text().count("/predictive: backfilled")
    stack.stop_operator(signal.SIGKILL)
    stack.start_operator()
    wait_for(lambda: log.read_text().count("/predictive: backfilled") > backfills, timeout=60,
             what="the new process backfilling from Prometheus")
    after = wait_for(lambda: (o := stack.llmd("predictive"))["status"]["forecast"]["historySeconds"] >= before
                     and o, timeout=60, what="history restored from Prometheus")
    assert after["status"]["forecast"]["historySeconds"] >= before


def test_prometheus_down_holds_replicas_and_says_so(stack: LocalStack):
    """Without metrics nothing scales down, even where the spec alone would now allow it. The replicas are
    read once both deployments report the outage: until then the last good read still decides, and a
    scale-down it makes is right."""
    stack.patch("reactive", {"spec": {"minReplicas": 3}})  # something to hold, whatever the ramp left
    wait_for(lambda: found(stack.deployment("reactive"))["spec"]["replicas"] == 3, timeout=60,
             what="reactive at its new minReplicas 3")
    stack.prometheus.stop()
    try:
        # first the last good read goes stale (MetricsStale), then the failed query is reported
        def unavailable(m: str) -> dict[str, Any] | bool:
            return (c := condition(stack.llmd(m), "MetricsAvailable")).get("reason") == "PrometheusUnavailable" and c

        for mode in ("predictive", "reactive"):
            cond = wait_for(functools.partial(unavailable, mode), timeout=30,
                            what=f"{mode}: MetricsAvailable=False, PrometheusUnavailable")
            assert cond["status"] == "False" and "holding" in cond["message"], cond
        replicas = {m: found(stack.deployment(m))["spec"]["replicas"] for m in ("predictive", "reactive")}
        assert replicas["reactive"] == 3, replicas
        stack.patch("reactive", {"spec": {"minReplicas": 1}})  # with data, no load would now mean 1 replica
        time.sleep(25)  # longer than the 20 s scale-down window: no load, but no data either
        for mode, n in replicas.items():
            assert found(stack.deployment(mode))["spec"]["replicas"] == n, f"{mode} changed replicas without metrics"
    finally:
        stack.prometheus.start()
    wait_for(lambda: condition(stack.llmd("predictive"), "MetricsAvailable").get("status") == "True",
             timeout=60, what="MetricsAvailable=True again")
    wait_for(lambda: found(stack.deployment("reactive"))["spec"]["replicas"] == 1, timeout=90,
             what="reactive down to minReplicas 1 once metrics are back")


def test_token_demand_is_read_from_the_pods_token_counters(stack: LocalStack):
    """demandUnit: tokens, advisory: the pods' prompt and generation counters, through Prometheus, give a
    demand in tokens/s, several times the request rate (each request has a prompt and up to 12 new tokens)."""
    doc = manifest("tokens", "advisory")
    doc["spec"]["autoscaling"].update(demandUnit="tokens", slo={"capacityPerReplica": 200})
    stack.apply(doc)
    stack.wait_ready("tokens", 1, timeout_s=120)
    rates = [2.0] * 8  # 40 s at 2 req/s
    load = threading.Thread(target=lambda: asyncio.run(
        replay(rates, STEP_S, lambda: stack.runner.endpoints("default", "tokens"), model="tokens")), daemon=True)
    load.start()
    try:
        # a demand several times the request rate, and a forecast in tokens once it has 3 steps of history
        forecast = wait_for(lambda: ((f := stack.llmd("tokens")["status"].get("forecast") or {}).get("demand") or 0)
                            > 3 * max(rates) and "tok/s p90" in f.get("summary", "") and f,
                            timeout=60, what="a token demand and forecast in status.forecast")
    finally:
        load.join()
    assert condition(stack.llmd("tokens"), "MetricsAvailable")["status"] == "True", forecast
