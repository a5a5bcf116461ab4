"""A 200 answer that is not Prometheus's envelope (a proxy's {"status": "error"}, "data": null, a JSON list, a
series that is not an object) is a metrics fault like the others: the reads fail with a reason, the backfill
goes on without history, and the collector keeps collecting, also past a fault no check foresaw.

The operator's own `PrometheusSource` (prometheus-api-client over HTTP) against `FakePrometheus`
(tests/reliability/fake_prometheus.py) told to answer those bodies; the last test runs the real operator
process against it.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from foresail_operator.autoscaler import Loop, backfill
from foresail_operator.collector import Collector
from foresail_operator.metrics import MetricsError, PrometheusSource
from tests.helpers import condition, wait_for
from tests.operator.advisory import KEY
from tests.operator.conftest import LLMD, Operator
from tests.operator.test_capacity_learning import SPEC
from tests.reliability.fake_prometheus import FakePrometheus

UNREADABLE = {  # answer -> what the error says
    "no data": ({"status": "error", "error": "proxy: upstream timed out"}, "no data.result (KeyError: 'data')"),
    "null data": ({"status": "success", "data": None}, "no data.result (TypeError"),
    "a list": ([], "no data.result (TypeError"),
    "no result": ({"status": "success", "data": {"resultType": "vector"}}, "no data.result (KeyError: 'result')"),
    "a series that is not an object": ({"status": "success", "data": {"resultType": "matrix", "result": ["x"]}},
                                       "malformed series: x"),
}
TOO_DEEP = b"[" * 100_000 + b"]" * 100_000  # nested past Python's JSON decoder: a RecursionError, which no check names


@pytest.mark.parametrize("answer", list(UNREADABLE))
async def test_an_answer_without_data_result_is_a_metrics_error_and_the_backfill_goes_on(
        answer: str, caplog: pytest.LogCaptureFixture) -> None:
    body, says = UNREADABLE[answer]
    fake = FakePrometheus([KEY]).start()
    fake.body = json.dumps(body).encode()
    source = PrometheusSource(fake.url, timeout_s=2.0, window="10s")
    try:
        with pytest.raises(MetricsError, match="Prometheus") as instant:
            source.snapshot(["foresail"])
        assert says in str(instant.value)
        now = time.time()
        with pytest.raises(MetricsError, match="Prometheus range query failed|malformed series") as ranged:
            source.demand_history(KEY, "foresail", now - 60, now, 1.0)
        assert says in str(ranged.value)
        loop = Loop(KEY, forecast_step_s=60.0)
        loop.configure(SPEC, None)
        with caplog.at_level(logging.WARNING, logger="test.backfill"):
            await backfill(loop, Collector(source), "foresail", logging.getLogger("test.backfill"))
        assert f"could not backfill history from Prometheus: {ranged.value}" in caplog.text
    finally:
        fake.stop()


def test_the_operator_reads_metrics_again_after_unreadable_answers(cluster, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The real operator process: an answer without data.result, then one that breaks the JSON decoder, each
    say why metrics are missing; MetricsAvailable is True again once Prometheus answers well."""
    fake = FakePrometheus([KEY]).start()
    monkeypatch.setenv("FORESAIL_COLLECT_PERIOD", "1")  # the operator process inherits the environment
    op = Operator(cluster.kubeconfig, tmp_path / "operator.log", "--standalone", "--prometheus-url", fake.url).start()
    path = LLMD.format(ns="default") + "/tiny"

    def metrics() -> dict:
        return condition(cluster.kube.get(path), "MetricsAvailable")

    try:
        cluster.kube.create(LLMD.format(ns="default"), {
            "apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "tiny"},
            "spec": {"model": {"source": "builtin:tiny"}, "autoscaling": {"mode": "reactive", "intervalSeconds": 5}}})
        wait_for(lambda: metrics().get("status") == "True", timeout=60, what="metrics read")
        fake.body = json.dumps(UNREADABLE["no data"][0]).encode()
        wait_for(lambda: (lambda m: m.get("reason") == "PrometheusUnavailable" and "no data.result" in m["message"])(
            metrics()), timeout=30, what="MetricsAvailable=False, PrometheusUnavailable")
        fake.body = TOO_DEEP
        wait_for(lambda: (lambda m: m.get("reason") == "CollectorFailed" and "RecursionError" in m["message"])(
            metrics()), timeout=30, what="MetricsAvailable=False, CollectorFailed")
        time.sleep(3)  # three more collections fail the same way
        fake.body = None
        wait_for(lambda: metrics().get("status") == "True", timeout=30, what="MetricsAvailable=True again")
        assert op.alive()
        log = op.text()
        assert log.count("metrics unavailable, holding capacity: CollectorFailed: RecursionError") == 1, log[-3000:]
        assert "Traceback" in log and "metrics are back after: CollectorFailed" in log
    finally:
        op.kill()
        fake.stop()
        print(op.text()[-5000:])


def test_a_range_point_that_is_not_two_numbers_is_left_out() -> None:
    """The backfill keeps the points it can read: a timestamp or value that is not a number, or a point
    that is not a pair, is left out rather than ending the backfill."""
    now = round(time.time())
    values = [[now - 3, "1.5"], ["soon", "2"], [None, "2"], [now - 2, "NaN"], [now - 1], "x", [now, "2.5"]]
    fake = FakePrometheus([KEY]).start()
    fake.body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {}, "values": values}]}}).encode()
    try:
        source = PrometheusSource(fake.url, timeout_s=2.0, window="10s")
        assert source.rate_history(KEY, "foresail", "requests", now - 60, now, 1.0) == {now - 3: 1.5, now: 2.5}
    finally:
        fake.stop()
