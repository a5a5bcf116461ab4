"""Invariants of the scaling policy (hypothesis): bounds, fail-static on missing data, monotonicity.

`ForesailPolicy` is driven through random configurations and observation sequences (demand may be
missing, NaN, infinite, negative or absurdly large, and so may the queue; the provisioned count may be
anything), in closed loop or not.
"""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foresail.autoscaler.forecast import MAX_RATE
from foresail.autoscaler.policy import ForesailPolicy, Observation, PolicyConfig

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
DEMAND = st.one_of(st.none(), st.just(math.nan), st.just(math.inf), st.just(-math.inf), st.just(1e200),
                   st.floats(-5, 0), st.floats(0, 200), st.floats(0, 5))
WAITING = st.one_of(st.none(), st.just(math.nan), st.just(math.inf), st.floats(-5, 0), st.floats(0, 500))


@st.composite
def configs(draw: st.DrawFn) -> PolicyConfig:
    low = draw(st.integers(0, 6))
    to_zero = draw(st.booleans())
    return PolicyConfig(
        min_replicas=low, max_replicas=draw(st.integers(max(low, 1), 20)),
        capacity=draw(st.floats(0.05, 50)), cold_start_s=draw(st.sampled_from([0.0, 30.0, 120.0, 600.0])),
        interval_s=draw(st.sampled_from([5.0, 15.0, 60.0])), quantile=draw(st.sampled_from([0.5, 0.9, 0.99])),
        scale_down_stabilization_s=draw(st.sampled_from([0.0, 1.0, 60.0, 300.0])),
        scale_to_zero=to_zero, idle_s=draw(st.sampled_from([30.0, 600.0])),
        predictive=draw(st.booleans()))


@st.composite
def observations(draw: st.DrawFn, config: PolicyConfig, n: int) -> list[Observation]:
    out, t = [], 1_700_000_000.0
    for _ in range(n):
        t += config.interval_s * draw(st.sampled_from([1, 1, 1, 2, 10]))
        out.append(Observation(time_s=t, demand=draw(DEMAND), waiting=draw(WAITING),
                               provisioned_replicas=draw(st.integers(0, config.max_replicas + 3))))
    return out


def policy(config: PolicyConfig, prior: str | None) -> ForesailPolicy:
    return ForesailPolicy(config, prior=prior)


def check_bounds(config: PolicyConfig, obs: Observation, replicas: int) -> None:
    assert replicas <= config.max_replicas, f"{replicas} > max {config.max_replicas}"
    if replicas == 0:
        assert config.scale_to_zero or config.min_replicas == 0, "0 replicas without scale_to_zero"
    else:
        assert replicas >= config.min_replicas, f"{replicas} < min {config.min_replicas}"
    if obs.demand is None or not math.isfinite(obs.demand) or obs.demand > MAX_RATE:
        floor = min(obs.provisioned_replicas, config.max_replicas)
        assert replicas >= floor, f"scaled down to {replicas} from {obs.provisioned_replicas} without data"


@SETTINGS
@given(data=st.data(), config=configs(), prior=st.sampled_from([None, "default"]), closed_loop=st.booleans())
def test_replicas_stay_within_bounds_and_missing_data_never_scales_down(data, config, prior, closed_loop):
    p = policy(config, prior)
    replicas = None
    for obs in data.draw(observations(config, 40)):
        if closed_loop and replicas is not None:
            obs = Observation(obs.time_s, obs.demand, obs.waiting, provisioned_replicas=replicas)
        decision = p.decide(obs)
        replicas = decision.replicas
        check_bounds(config, obs, replicas)
        assert decision.reason, "every decision says why"


@SETTINGS
@given(data=st.data(), config=configs(), prior=st.sampled_from([None, "default"]),
       low=st.floats(0, 100), extra=st.floats(0.01, 100), waiting=st.one_of(st.none(), st.floats(0, 200)))
def test_more_demand_never_yields_fewer_replicas(data, config, prior, low, extra, waiting):
    history = data.draw(observations(config, 25))
    a, b = policy(config, prior), policy(config, prior)
    for obs in history:
        assert a.decide(obs).replicas == b.decide(obs).replicas, "the policy is not deterministic"
    t = history[-1].time_s + config.interval_s
    current = data.draw(st.integers(0, config.max_replicas + 3))
    less = a.decide(Observation(t, low, waiting, provisioned_replicas=current)).replicas
    more = b.decide(Observation(t, low + extra, waiting, provisioned_replicas=current)).replicas
    assert more >= less, f"demand {low + extra:.3g} got {more} replicas but {low:.3g} got {less}"


def test_zero_scale_down_stabilization_does_not_crash():
    p = ForesailPolicy(PolicyConfig(min_replicas=1, max_replicas=5, scale_down_stabilization_s=0.0,
                                    predictive=False), prior=None)
    assert p.decide(Observation(0.0, 4.0, provisioned_replicas=1)).replicas == 4
    assert p.decide(Observation(15.0, 1.0, provisioned_replicas=4)).replicas == 1  # scale down at once


def test_scale_to_zero_never_stops_between_zero_and_min():
    config = PolicyConfig(min_replicas=2, max_replicas=2, capacity=1.0, cold_start_s=0.0, interval_s=15.0,
                          quantile=0.5, scale_down_stabilization_s=1.0, scale_to_zero=True, idle_s=30.0)
    p = ForesailPolicy(config, prior="default")
    t = 1_700_000_000.0
    for _ in range(37):
        t += 15
        p.decide(Observation(t, None, provisioned_replicas=0))
    for at, demand in ((t + 30, 0.0), (t + 180, 1.0), (t + 210, 0.0)):
        replicas = p.decide(Observation(at, demand, provisioned_replicas=0)).replicas
        assert replicas == 0 or replicas >= 2, f"{replicas} replica(s): neither zero nor min_replicas=2"
