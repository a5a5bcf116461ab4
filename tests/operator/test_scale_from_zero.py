"""The decision loop brings a deployment at zero replicas back ahead of demand that came a day earlier.

At zero replicas no pod exports metrics: the operator's own path (`PrometheusSource` over HTTP against
`FakePrometheus`, which has no series for the deployment, `Collector`, `step` in advisory mode) reads
that as zero demand, so only the demand history can wake it.
"""

from __future__ import annotations

import time

import numpy as np

from foresail.autoscaler.policy import Decision
from foresail_operator.autoscaler import Loop
from foresail_operator.spec import parse_spec
from tests.operator.advisory import KEY, decisions

SPEC = parse_spec({"model": {"source": "builtin:tiny"}, "minReplicas": 1, "maxReplicas": 10,
                   "autoscaling": {"mode": "advisory", "intervalSeconds": 5, "slo": {"capacityPerReplica": 1},
                                   "scaleToZero": {"enabled": True}}})
AT_ZERO = {"spec": {"replicas": 0}, "status": {}}
DAY = 86400.0


async def decide_at_zero(yesterday: float) -> tuple[Loop, Decision]:
    """One decision at zero replicas (no series in Prometheus), after a history whose rate a day ago, in
    the next two minutes, was ``yesterday`` req/s (and nothing since)."""
    loop = Loop(KEY, forecast_step_s=60.0)
    loop.configure(SPEC, None)
    assert loop.policy is not None
    now = time.time()
    times = np.arange(now - DAY - 3600, now - 60, 60.0)
    loop.policy.warm_start(times, np.where((times > now - DAY - 600) & (times < now - DAY + 120), yesterday, 0.0))
    return await decisions(SPEC, AT_ZERO, series=False, loop=loop)


async def test_demand_a_day_ago_wakes_a_deployment_at_zero() -> None:
    loop, decision = await decide_at_zero(yesterday=3.0)
    fields = loop.view["fields"]
    assert fields["recommendedReplicas"] == 3 and fields["forecast"]["demand"] == 0
    assert decision.reason.startswith("scale up 0\u21923: 3 req/s arrived a day ago"), decision.reason


async def test_without_it_the_deployment_stays_at_zero() -> None:
    loop, decision = await decide_at_zero(yesterday=0.0)
    assert loop.view["fields"]["recommendedReplicas"] == 0 and decision.action == "hold", decision.reason
