"""The ScalingLimited condition: whether spec.minReplicas or spec.maxReplicas bound what the demand and the
forecast need, as the HPA reports it. The decision loop runs as the operator runs it (advisory mode,
`FakePrometheus` answering 1 req/s per replica of capacity)."""

from __future__ import annotations

import pytest

from foresail_operator.spec import parse_spec
from foresail_operator.status import workload_status
from tests.operator.advisory import decisions


def spec(min_replicas: int, max_replicas: int):
    return parse_spec({"model": {"source": "builtin:tiny"}, "minReplicas": min_replicas, "maxReplicas": max_replicas,
                       "autoscaling": {"mode": "advisory", "intervalSeconds": 5, "slo": {"capacityPerReplica": 1}}})


@pytest.mark.parametrize("bounds, demand, expected", [
    ((1, 10), "15", (True, "TooManyReplicas", "15 replicas needed, capped at spec.maxReplicas 10")),
    ((5, 10), "1.5", (True, "TooFewReplicas", "2 replicas needed, held at spec.minReplicas 5")),
    ((1, 10), "4", (False, "DesiredWithinRange", "the 4 replicas needed are within")),
])
async def test_the_bounds_that_limit_the_recommendation_are_reported(bounds, demand: str, expected) -> None:
    values = {"requests": demand, "running": "0", "waiting": "0"}
    loop, decision = await decisions(spec(*bounds), values=values)
    limited, reason, message = loop.view["conditions"]["ScalingLimited"]
    assert (limited, reason) == expected[:2] and message.startswith(expected[2]), message
    assert decision.replicas == min(max(int(float(demand) + 0.999), bounds[0]), bounds[1])


def test_without_autoscaling_the_condition_says_so() -> None:
    status = workload_status(name="m", generation=1, desired=1, deployment=None, pods=[], problems=[], previous={},
                             autoscaling_on=False)
    limited = next(c for c in status["conditions"] if c["type"] == "ScalingLimited")
    assert (limited["status"], limited["reason"]) == ("False", "AutoscalingOff")
    pending = workload_status(name="m", generation=1, desired=1, deployment=None, pods=[], problems=[], previous={},
                              autoscaling_on=True)
    assert next(c for c in pending["conditions"] if c["type"] == "ScalingLimited")["reason"] == "Pending"
