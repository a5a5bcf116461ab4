"""Prometheus faults on the operator's metrics path: down, slow, NaN, +Inf, empty, malformed, non-vector.

The metrics path is driven for real: `PrometheusSource` (prometheus-api-client over HTTP) inside the
operator's `Collector`, then the decision loop's `step` with a real `ForesailPolicy` in advisory mode
(no API writes, as in bench/decision_loop.py). The Prometheus is `FakePrometheus`
(fake_prometheus.py), a tiny server speaking the `/api/v1/query` API: a real Prometheus cannot be made
to answer malformed JSON or a scalar to a vector query, or to stall on demand. Its well-formed,
NaN, +Inf, empty-vector and scalar answers are checked against a real Prometheus below.

The deployment runs 3 replicas with `scaleDown.stabilizationSeconds: 0` and good data asks for 2, so a
fault mistaken for data would show at once as a scale-down. Every fault must hold 3, set
MetricsAvailable=False with a reason naming the problem, and recover when Prometheus answers well.
The last test runs the real operator process against the fake answering garbage.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from foresail.demo.prometheus import PrometheusServer
from foresail.kubetest.testing import start_apiserver
from foresail_operator.autoscaler import Loop, step
from foresail_operator.collector import Collector
from foresail_operator.metrics import PrometheusSource
from foresail_operator.spec import parse_spec
from tests.helpers import wait_for
from tests.operator.conftest import Operator
from tests.reliability.conftest import install_crds
from tests.reliability.fake_prometheus import FakePrometheus
from tests.reliability.support import DEPLOYS, LLMDS, condition, llmd_doc

KEY = ("default", "tiny")
REPLICAS = 3
TIMEOUT_S = 0.5  # the source's query timeout in these tests (the operator's is 5 s)
AUTOSCALING = {"intervalSeconds": 5, "slo": {"capacityPerReplica": 1},
               "scaleDown": {"stabilizationSeconds": 0}}
SPEC = parse_spec({"model": {"source": "builtin:tiny"}, "minReplicas": 1, "maxReplicas": 5,
                   "autoscaling": {"mode": "advisory", **AUTOSCALING}})
BODY = {"metadata": {"name": "tiny", "namespace": "default"}, "status": {}}
DEPLOYMENT = {"spec": {"replicas": REPLICAS}, "status": {"readyReplicas": REPLICAS}}
LOG = logging.getLogger("test")

# fault -> (condition reason, a phrase its message must contain)
FAULTS = {
    "down": ("PrometheusUnavailable", "refused"),
    "slow": ("PrometheusUnavailable", "timed out"),
    "error": ("PrometheusUnavailable", "too many samples"),
    "malformed": ("PrometheusUnavailable", "query failed"),
    "scalar": ("PrometheusUnavailable", "malformed series"),
    "matrix": ("NoSeries", "no series for default/tiny"),
    "empty": ("NoSeries", "no series for default/tiny"),
    "nan": ("NoData", "no usable demand"),
    "inf": ("NoData", "no usable demand"),
    "huge": ("NoData", "(NaN, Inf or above 1e+12)"),
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def decide(collector: Collector, loop: Loop) -> tuple[int, tuple]:
    await collector.collect_once()
    decision = await step(loop, None, collector, BODY, SPEC, DEPLOYMENT, [], LOG)  # type: ignore[arg-type]
    return decision.replicas, loop.view["conditions"]["MetricsAvailable"]


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_prometheus_fault_holds_capacity_and_says_why(fault: str) -> None:
    port = free_port()  # for "down", nothing listens there until the recovery
    fake = None if fault == "down" else FakePrometheus([KEY], delay_s=3 * TIMEOUT_S, port=port).start()
    source = PrometheusSource(f"http://127.0.0.1:{port}", timeout_s=TIMEOUT_S, window="10s")
    collector = Collector(source, period_s=1.0)
    loop = Loop(KEY, forecast_step_s=60.0)  # the forecaster stays unready: good data asks exactly 2
    try:
        if fake is not None:  # good data first: the policy asks for fewer replicas than run
            await decide(collector, loop)  # a new policy counts the replicas it found for one decision
            await asyncio.sleep(0.01)
            replicas, metrics = await decide(collector, loop)
            assert metrics[:2] == (True, "MetricsFresh"), metrics
            assert replicas == 2, "good data (1.5 req/s at 1 req/s per replica) must ask for 2"
        if fake is not None:
            fake.mode = fault
        started = time.monotonic()
        collecting = asyncio.create_task(collector.collect_once())
        await asyncio.sleep(0.05)
        # the decision does not wait for Prometheus: the collector runs beside the loop (and until the
        # collection fails, the last good read, 1 s old, still counts)
        await step(loop, None, collector, BODY, SPEC, DEPLOYMENT, [], LOG)  # type: ignore[arg-type]
        assert time.monotonic() - started < 1.0, "a decision waited for a slow Prometheus"
        await collecting
        for _ in range(2):
            decision = await step(loop, None, collector, BODY, SPEC, DEPLOYMENT, [], LOG)  # type: ignore[arg-type]
            metrics = loop.view["conditions"]["MetricsAvailable"]
            assert decision.replicas == REPLICAS, decision.reason
            reason, phrase = FAULTS[fault]
            assert metrics[0] is False and metrics[1] == reason and phrase in metrics[2], metrics
            assert f"holding {REPLICAS} replicas" in metrics[2]
            await asyncio.sleep(0.01)
        if fake is None:
            fake = FakePrometheus([KEY], port=port).start()
        fake.mode = "good"
        await decide(collector, loop)
        await asyncio.sleep(0.01)
        replicas, metrics = await decide(collector, loop)
        assert metrics[:2] == (True, "MetricsFresh"), metrics
        assert replicas == 2, loop.view["fields"]
    finally:
        if fake is not None:
            fake.stop()


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus (make install)")
def test_the_fake_answers_like_a_real_prometheus(tmp_path: Path) -> None:
    """Each answer the fake gives in a well-formed mode has the shape a real Prometheus gives."""
    labels = 'label_replace(label_replace({expr}, "namespace", "default", "", ""), "llmdeployment", "tiny", "", "")'
    cases = {"good": labels.format(expr="vector(1.5)"), "nan": labels.format(expr="vector(0/0)"),
             "inf": labels.format(expr="vector(1/0)"), "empty": "vector(1) > 2", "scalar": "scalar(vector(1.5))"}
    fake = FakePrometheus([KEY]).start()

    def number(stamp: object) -> str:
        """A timestamp's JSON kind: Prometheus writes one on a whole second as an integer (1733380000)."""
        return "number" if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) else repr(stamp)

    def shape(body: dict[str, Any]) -> tuple[str, str, list[Any]]:
        """The envelope with timestamps replaced by their JSON kind."""
        data = body["data"]
        if data["resultType"] == "scalar":
            return body["status"], data["resultType"], [number(data["result"][0]), data["result"][1]]
        return body["status"], data["resultType"], [
            (item["metric"], number(item["value"][0]), item["value"][1]) for item in data["result"]]

    try:
        with PrometheusServer(tmp_path) as real:
            for mode, promql in cases.items():
                want = requests.get(f"{real.url}/api/v1/query", params={"query": promql}, timeout=10)
                fake.mode = mode
                got = requests.get(f"{fake.url}/api/v1/query", params={"query": "vllm:num_requests_waiting"},
                                   timeout=10)
                assert (got.status_code, got.headers["Content-Type"]) == (want.status_code,
                                                                          want.headers["Content-Type"])
                expected = shape(want.json())
                if mode == "good":  # the fake's value depends on the signal asked for
                    expected = (*expected[:2], [(m, t, "0") for m, t, _ in expected[2]])
                assert shape(got.json()) == expected, mode
            posted = requests.post(f"{fake.url}/api/v1/query", data={"query": "x"}, timeout=10)
            assert json.loads(posted.text)["status"] == "success"
    finally:
        fake.stop()


@pytest.fixture
def garbage_prometheus():
    fake = FakePrometheus([KEY]).start()
    fake.mode = "malformed"
    yield fake
    fake.stop()


def test_the_operator_holds_replicas_when_prometheus_answers_garbage(tmp_path: Path, garbage_prometheus,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The real operator process, predictive mode, 3 replicas, Prometheus answering malformed JSON:
    replicas stay 3 and MetricsAvailable=False is written to the status; then Prometheus recovers."""
    with start_apiserver(tmp_path, simulate_pods=True, ready_delay_s=0.3) as cluster:
        kube = install_crds(cluster)
        for name, value in {"FORESAIL_PROMETHEUS_URL": garbage_prometheus.url, "FORESAIL_COLLECT_PERIOD": "1",
                            "FORESAIL_FORECAST_STEP": "5", "FORESAIL_RATE_WINDOW": "10s"}.items():
            monkeypatch.setenv(name, value)  # the operator process inherits the environment
        op = Operator(cluster.kubeconfig, tmp_path / "operator.log", "--standalone").start()
        try:
            kube.create(LLMDS, llmd_doc("tiny", replicas=REPLICAS, minReplicas=1, maxReplicas=5,
                                        autoscaling={"mode": "predictive", **AUTOSCALING}))
            missing = wait_for(lambda: (lambda o: condition(o, "MetricsAvailable").get("status") == "False" and o)(
                kube.get(f"{LLMDS}/tiny")), timeout=30, what="MetricsAvailable=False")
            cond = condition(missing, "MetricsAvailable")
            assert cond["reason"] == "PrometheusUnavailable" and "query failed" in cond["message"], cond
            time.sleep(12)  # two more decision intervals on garbage
            assert kube.read(f"{DEPLOYS}/tiny")["spec"]["replicas"] == REPLICAS
            assert condition(kube.get(f"{LLMDS}/tiny"), "MetricsAvailable")["status"] == "False"
            garbage_prometheus.mode = "good"  # 1.5 req/s needs 2 replicas: it may now scale down
            wait_for(lambda: condition(kube.get(f"{LLMDS}/tiny"), "MetricsAvailable").get("status") == "True",
                     timeout=20, what="MetricsAvailable=True after recovery")
            assert op.alive()
        finally:
            op.kill()
            print(op.text()[-6000:])
