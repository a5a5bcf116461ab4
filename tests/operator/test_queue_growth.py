"""The queue's growth, part of the demand (arrivals = completions + growth of what is in the system), is timed by
the collector's snapshots, not by the decisions: decisions more frequent than the reads (intervalSeconds 5 against
the 15-s collect period) read the same demand between two snapshots, not three times the growth and then none.
The metrics path is the operator's own (`FakePrometheus` through `PrometheusSource` and the `Collector`, `step`)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from foresail_operator.autoscaler import Loop, step
from foresail_operator.collector import Collector
from foresail_operator.metrics import PrometheusSource
from foresail_operator.spec import parse_spec
from tests.operator.advisory import BODY, KEY, THREE_READY
from tests.reliability.fake_prometheus import FakePrometheus

SPEC = parse_spec({"model": {"source": "builtin:tiny"}, "minReplicas": 1, "maxReplicas": 50,
                   "autoscaling": {"mode": "advisory", "intervalSeconds": 5, "slo": {"capacityPerReplica": 1}}})


async def test_decisions_between_two_reads_see_the_growth_the_reads_show() -> None:
    fake = FakePrometheus([KEY], values={"requests": "2", "running": "4", "waiting": "0"}).start()
    try:
        collector = Collector(PrometheusSource(fake.url, timeout_s=2.0, window="10s"), period_s=1.0)
        loop, log = Loop(KEY, forecast_step_s=60.0), logging.getLogger("test.growth")
        await collector.collect_once()
        first = collector.taken_at
        await step(loop, None, collector, BODY, SPEC, THREE_READY, [], log)  # type: ignore[arg-type]
        await asyncio.sleep(0.5)
        fake.values["waiting"] = "30"  # 30 more requests queued by the next read
        await collector.collect_once()
        assert first is not None and collector.taken_at is not None
        expected = 2 + 30 / (collector.taken_at - first)
        demands = []
        for _ in range(3):  # decisions before the next read
            await step(loop, None, collector, BODY, SPEC, THREE_READY, [], log)  # type: ignore[arg-type]
            demands.append(loop.view["fields"]["forecast"]["demand"])
            await asyncio.sleep(0.1)
    finally:
        fake.stop()
    assert demands == [pytest.approx(expected, rel=0.01)] * 3
