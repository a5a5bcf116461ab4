"""The decision loop brings a deployment at zero replicas back ahead of demand that came a day earlier.

At zero replicas no pod exports metrics: the operator's own path (`PrometheusSource` over HTTP against
`FakePrometheus`, which has no series for the deployment, `Collector`, `step` in advisory mode) reads
that as zero demand, so only the demand history can wake it.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone

import numpy as np
import pytest

from foresail.autoscaler.policy import Decision
from foresail_operator.activation import HELD_REQUESTS, REQUESTED_AT, STAMP_FRESH_S
from foresail_operator.autoscaler import Loop
from foresail_operator.spec import parse_spec
from tests.operator.advisory import KEY, THREE_READY, decisions

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


def stamped(age_s: float, held: str) -> dict:
    """The LLMDeployment as the activator leaves it: stamped ``age_s`` ago with ``held`` requests."""
    stamp = datetime.fromtimestamp(time.time() - age_s, timezone.utc).isoformat(timespec="milliseconds")
    return {"metadata": {"name": "tiny", "namespace": "default",
                         "annotations": {REQUESTED_AT: stamp, HELD_REQUESTS: held}}, "status": {}}


@pytest.mark.parametrize("age_s, held, replicas", [(1.0, "1", 1), (1.0, "150", 3), (1.0, "garbage", 1),
                                                   (STAMP_FRESH_S + 5, "150", 0)])
async def test_requests_held_at_the_activator_count_as_queued_demand_at_zero(age_s: float, held: str,
                                                                             replicas: int) -> None:
    """No pod counts a request the activator holds: a fresh stamp's count stands for queued requests
    (150 to drain within the 60-s horizon at 1 req/s per replica need 3); a stale one for none."""
    loop = Loop(KEY, forecast_step_s=60.0)
    loop.configure(SPEC, None)
    loop, decision = await decisions(SPEC, AT_ZERO, series=False, loop=loop, body=stamped(age_s, held))
    assert loop.view["fields"]["recommendedReplicas"] == replicas, decision.reason
    count = {"1": 1, "150": 150, "garbage": 1}[held] if replicas else 0
    assert decision.reason.endswith(f" ({count} of the queued requests held at the activator)") == bool(replicas)


@pytest.mark.parametrize("arrivals, replicas, reason", [
    ("3", 3, "current demand 3 req/s needs 3 replicas"),
    ("0", 0, "no demand arrives at the activator and none is forecast"),
])
async def test_at_zero_the_activators_count_of_arrivals_is_the_demand(arrivals: str, replicas: int,
                                                                      reason: str) -> None:
    """No pod reports at zero replicas: the requests the activator counted arriving are the demand (3 req/s
    at 1 req/s per replica need 3), and a count of 0 is a watched quiet step, not an unknown one."""
    loop = Loop(KEY, forecast_step_s=60.0)
    loop.configure(SPEC, None)
    loop, decision = await decisions(SPEC, AT_ZERO, series=False, loop=loop, arrivals=arrivals)
    fields = loop.view["fields"]
    assert fields["recommendedReplicas"] == replicas and fields["forecast"]["demand"] == float(arrivals)
    assert reason in decision.reason
    assert decision.reason.endswith("(demand counted at the activator: no pod reports it)")
    assert loop.view["conditions"]["MetricsAvailable"][:2] == (True, "CountedAtActivator")
    _, unseen = await decisions(SPEC, AT_ZERO, series=False)  # without the count: nothing is seen at zero
    assert "at zero replicas no demand is seen" in unseen.reason, unseen.reason


async def test_while_replicas_start_the_activators_count_stands_in_for_the_pods() -> None:
    """Two replicas asked for, none reporting yet: with the activator's count the loop decides on it (5 req/s
    need 5); without it the replicas are held for want of data."""
    starting = {"spec": {"replicas": 2}, "status": {"readyReplicas": 0}}
    loop, decision = await decisions(SPEC, starting, series=False, arrivals="5")
    assert loop.view["fields"]["recommendedReplicas"] == 5, decision.reason
    loop, decision = await decisions(SPEC, starting, series=False)
    assert loop.view["conditions"]["MetricsAvailable"][:2] == (False, "NoSeries")
    assert decision.replicas == 2 and "missing" in decision.reason


async def test_while_replicas_start_the_activators_count_wins_over_pods_that_report_zeros() -> None:
    """The replicas asked for at a wake already export metrics, zeros, while the activator holds what
    arrives: its count (5 req/s, needing 5) is the demand, as it is whenever it exceeds the pods'."""
    starting = {"spec": {"replicas": 2}, "status": {"readyReplicas": 0}}
    idle = {"requests": "0", "running": "0", "waiting": "0"}
    loop, decision = await decisions(SPEC, starting, values=idle, arrivals="5")
    assert loop.view["fields"]["forecast"]["demand"] == 5 and loop.view["fields"]["recommendedReplicas"] == 5
    assert "current demand 5 req/s needs 5 replicas" in decision.reason, decision.reason
    assert loop.view["conditions"]["MetricsAvailable"][1] == "MetricsFresh"  # the pods report: not at the door
    loop, decision = await decisions(SPEC, starting, values=idle)
    assert loop.view["fields"]["forecast"]["demand"] == 0 and loop.view["fields"]["recommendedReplicas"] < 5


async def test_requests_held_by_every_activator_replica_add_up() -> None:
    """Each activator replica stamps only the requests it holds; Prometheus sums what they all hold (150
    against a stamp of 40): the larger is the queue (150 to drain within the 60-s horizon need 3)."""
    loop = Loop(KEY, forecast_step_s=60.0)
    loop.configure(SPEC, None)
    loop, decision = await decisions(SPEC, AT_ZERO, series=False, loop=loop, body=stamped(1.0, "40"),
                                     arrivals="0", held="150")
    assert loop.view["fields"]["recommendedReplicas"] == 3, decision.reason
    assert decision.reason.endswith(" (150 of the queued requests held at the activator)"), decision.reason
    _, alone = await decisions(SPEC, AT_ZERO, series=False, held="150")  # no count of arrivals: ignored
    assert alone.replicas == 0, alone.reason


def _quiet_for_an_hour() -> Loop:
    """A loop whose two hours of history had 1 req/s, then nothing for the last hour."""
    loop = Loop(KEY, forecast_step_s=60.0)
    loop.configure(SPEC, None)
    assert loop.policy is not None
    now = time.time()
    times = np.arange(now - 7200, now - 60, 60.0)
    loop.policy.warm_start(times, np.where(times < now - 3600, 1.0, 0.0))
    return loop


async def test_with_the_activators_count_a_deployment_goes_to_zero_without_a_quiet_day_before() -> None:
    """Three ready replicas whose pods have seen nothing for an hour, and no history a day back. Zero is
    safe only where what arrives there is seen: with the activator's series (0 req/s) the deployment goes
    to zero; without it, it keeps a replica until a quiet day was watched."""
    idle = {"requests": "0", "running": "0", "waiting": "0"}
    loop, decision = await decisions(SPEC, THREE_READY, loop=_quiet_for_an_hour(), values=idle, arrivals="0")
    assert loop.view["fields"]["recommendedReplicas"] == 0 and "scale to zero" in decision.reason, decision.reason
    assert loop.view["conditions"]["MetricsAvailable"][1] == "MetricsFresh"  # the pods' signals are what is read
    loop, decision = await decisions(SPEC, THREE_READY, loop=_quiet_for_an_hour(), values=idle)
    assert loop.view["fields"]["recommendedReplicas"] >= 1 and "not watched and quiet" in decision.reason
