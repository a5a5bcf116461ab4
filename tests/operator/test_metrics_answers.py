"""Answers a real Prometheus never gives but a proxy in front of one may: two series of one deployment in a
`sum by` answer (the operator kept whichever came last), labels that are not strings (a TypeError traceback
from the collector) and an HTML page with status 200 (the reason read "Expecting value: line 1 column 1").
Each is a metrics fault: the collector keeps the reason and the decision loops hold capacity.

The operator's `PrometheusSource` (prometheus-api-client over HTTP) and `Collector` against `FakePrometheus`
(tests/reliability/fake_prometheus.py) told to answer those bodies."""

from __future__ import annotations

import json
import time

import pytest

from foresail_operator.collector import Collector
from foresail_operator.metrics import PrometheusSource
from tests.operator.advisory import KEY
from tests.reliability.fake_prometheus import FakePrometheus

LABELS = {"namespace": KEY[0], "llmdeployment": KEY[1]}


def vector(*series: dict) -> bytes:
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": list(series)}}).encode()


ANSWERS = {  # answer -> what the reason says
    "two series of one deployment": (
        vector({"metric": LABELS, "value": [time.time(), "1.5"]}, {"metric": LABELS, "value": [time.time(), "900"]}),
        [f"Prometheus answered two series for {KEY[0]}/{KEY[1]} in one query"]),
    "labels that are not strings": (
        vector({"metric": {"namespace": KEY[0], "llmdeployment": ["x"]}, "value": [time.time(), "1.5"]}),
        ["Prometheus answered a malformed series"]),
    "an HTML page": (b"<html><body>Sign in</body></html>",
                     ["the answer is not JSON (Expecting value", "<html><body>Sign in"]),
}


@pytest.mark.parametrize("answer", list(ANSWERS))
async def test_an_answer_a_proxy_garbled_holds_capacity_and_says_why(answer: str) -> None:
    body, says = ANSWERS[answer]
    fake = FakePrometheus([KEY]).start()
    collector = Collector(PrometheusSource(fake.url, timeout_s=2.0, window="10s"))
    try:
        await collector.collect_once()
        signals, reason = collector.lookup(KEY, 2)
        assert reason is None and signals is not None and signals.requests == 1.5, reason  # the good answer
        fake.body = body
        await collector.collect_once()
        signals, reason = collector.lookup(KEY, 2)
        assert signals is None and reason is not None, signals
        assert reason.startswith("PrometheusUnavailable: "), reason
        for words in says:
            assert words in reason, reason
    finally:
        fake.stop()
