"""Behaviours of the scaling policy pinned one by one, each by a test that fails if the code were wrong (found by
a mutation audit: each test here kills a change of the policy that the other tests let through)."""

import math

import numpy as np
import pytest

from foresail.autoscaler.policy import ForesailPolicy, Observation, PolicyConfig


def obs(t, demand, current, waiting=0.0):
    return Observation(time_s=t, demand=demand, waiting=waiting, ready_replicas=current, provisioned_replicas=current)


@pytest.mark.parametrize("bad, match", [
    ({"quantile": 0.3}, "quantile"), ({"quantile": 1.0}, "quantile"),
    ({"min_replicas": -1}, "min_replicas"), ({"max_replicas": 0, "min_replicas": 0}, "max_replicas >= 1"),
    ({"min_replicas": 5, "max_replicas": 4}, "min_replicas <= max_replicas"),
    ({"capacity": 0.0}, "capacity"), ({"interval_s": 0.0}, "interval_s"), ({"cold_start_s": -1.0}, "cold_start_s"),
    ({"slo_wait_s": -1.0}, "slo_wait_s"), ({"max_governor": 0.5}, "max_governor"),
])
def test_a_config_outside_its_bounds_is_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        PolicyConfig(**bad)


def test_a_restarted_policy_does_not_drop_the_replicas_it_finds_at_once():
    """The replicas found at the first decision count as a recommendation of the stabilisation window."""
    p = ForesailPolicy(PolicyConfig(capacity=2.0, predictive=False, scale_down_stabilization_s=300.0))
    d = p.decide(obs(0.0, 2.0, 6))
    assert d.replicas == 6 and d.action == "hold" and "stabilisation window" in d.reason
    held = [p.decide(obs(t, 2.0, 6)).replicas for t in range(15, 316, 15)]
    assert held == [6] * 20 + [1]  # until the window of the first decision has passed


def test_the_stabilisation_window_never_scales_up_while_demand_falls():
    """8 replicas were recommended but only 4 run (another writer, a quota): as demand falls the window holds
    the 4, it does not ask for the 8 again."""
    p = ForesailPolicy(PolicyConfig(capacity=2.0, predictive=False, scale_down_stabilization_s=300.0))
    assert p.decide(obs(0.0, 16.0, 8)).replicas == 8
    d = p.decide(obs(15.0, 2.0, 4))
    assert d.replicas == 4 and d.action == "hold"


def _steady(capacity: float) -> tuple[ForesailPolicy, float]:
    """A policy that has seen six hours of 6 req/s, and the time of its next decision."""
    p = ForesailPolicy(PolicyConfig(capacity=capacity, max_replicas=50, cold_start_s=120.0, interval_s=15.0))
    t = np.arange(1, 6 * 60 + 1) * 60.0
    p.warm_start(t, np.full(len(t), 6.0))
    return p, float(t[-1]) + 15.0


def test_the_headroom_is_the_configured_quantile_of_the_forecast_over_the_horizon():
    p, now = _steady(2.0)
    d = p.decide(obs(now, 6.0, 3))
    assert d.forecast_upper == pytest.approx(p.last_forecast.window(now, now + 135.0, 0.9))
    assert d.forecast_upper > d.forecast_median


@pytest.mark.parametrize("capacity", [1.0 + 0.1 * k for k in range(20)])
def test_the_forecast_asks_for_enough_replicas_to_serve_its_upper_quantile(capacity):
    """ceil(upper / capacity): a fraction of a replica's demand is a replica more, however small."""
    p, now = _steady(capacity)
    d = p.decide(obs(now, 6.0, 3))
    assert d.predicted_replicas == math.ceil(d.forecast_upper / capacity - 1e-9)
    assert d.predicted_replicas * capacity >= d.forecast_upper


def test_a_few_forecast_misses_do_not_widen_the_headroom_before_ten_are_checked():
    p, now = _steady(2.0)
    p.resume_coverage(0.0, 9, 0.9)  # nine checked, all missed
    assert p.forecast_coverage() is None
    assert p.decide(obs(now, 6.0, 3)).headroom == 1.0
    p.resume_coverage(0.0, 10, 0.9)
    assert p.forecast_coverage() == (0.0, 10)
    assert p.decide(obs(now + 15.0, 6.0, 3)).headroom > 1.0


def test_zero_waits_for_a_quiet_spell_watched_over_the_whole_cold_start_a_day_earlier():
    """A 1-min idle time but a 5-min cold start: a replica asked for at zero serves 5 min on, so a day earlier
    the next 5 min (not only the next minute) must have been watched and quiet before the deployment goes to
    zero; a gap from 3 min on keeps its replica."""
    p = ForesailPolicy(PolicyConfig(min_replicas=0, capacity=1.0, cold_start_s=300.0, idle_s=60.0,
                                    scale_to_zero=True))
    now = 3 * 86400.0
    t = np.arange(now - 2 * 86400.0, now + 1, 60.0)
    watched = ~((t > now - 86400.0 + 180.0) & (t <= now - 86400.0 + 900.0))
    p.warm_start(t[watched], np.zeros(int(watched.sum())))
    decisions = [p.decide(obs(now + 15.0 * k, 0.0, 1)) for k in range(1, 7)]
    assert [d.replicas for d in decisions] == [1] * 6
    assert "not watched and quiet" in decisions[-1].reason


def test_a_fresh_ramp_is_extrapolated_to_three_times_todays_demand_at_most():
    p, now = _steady(1.0)
    p.reconfigure(cold_start_s=300.0, max_replicas=1000)
    for k in range(6):  # 10, 20, ... 60 req/s: a perfect line that reaches 270 req/s in 315 s
        d = p.decide(obs(now + 15.0 * k, 10.0 * (k + 1), 60))
    assert "ramp" in d.reason and d.forecast_upper == pytest.approx(180.0) and d.predicted_replicas == 180


def test_a_queue_that_drains_within_the_slo_does_not_raise_the_governor():
    """5 queued on 4 replicas of 2 req/s drain in 0.6 s, within the 2-s SLO: no decision misses."""
    p = ForesailPolicy(PolicyConfig(capacity=2.0, predictive=False, slo_target=0.9, slo_wait_s=2.0))
    for k in range(40):
        p.decide(obs(15.0 * k, 6.0, 4, waiting=5.0))
    assert p.governor == 1.0
    for k in range(40, 60):  # 20 queued on 4 replicas take 2.5 s: each decision misses
        p.decide(obs(15.0 * k, 6.0, 4, waiting=20.0))
    assert p.governor > 1.0


def test_replicas_late_to_serve_count_from_an_interval_on_not_from_when_they_were_due():
    """7 asked at 0 s were due at 120 s; at 180 s they still do not serve: counted from 240 s, the queue they
    let build up needs one more (counted from 120 s, as if they had served, it would not)."""
    p = ForesailPolicy(PolicyConfig(capacity=2.0, cold_start_s=120.0, interval_s=60.0, predictive=False,
                                    queue_drain_s=60.0, max_replicas=50))
    assert p.decide(Observation(0.0, 6.0, 60.0, 1, 1)).replicas == 8
    d = p.decide(Observation(180.0, 6.0, 780.0, 1, 8))
    assert d.reactive_floor == 9 and d.replicas == 9 and "(420 req)" in d.reason


def test_a_longer_cold_start_is_forecast_over_its_whole_horizon():
    p, now = _steady(2.0)
    p.reconfigure(cold_start_s=900.0)
    p.decide(obs(now, 6.0, 3))
    assert p.last_forecast is not None and p.last_forecast.horizons_s[-1] >= p.config.horizon_s == 915.0


def test_a_smaller_error_window_keeps_only_the_latest_checks():
    p = ForesailPolicy(PolicyConfig(capacity=2.0))
    p.resume_coverage(0.5, 60, 0.9)
    assert p.forecast_coverage() == (0.5, 60)
    p.reconfigure(error_window=20)
    assert p.forecast_coverage() == (0.5, 20)


def test_idle_time_counts_from_when_the_queue_drained_not_from_the_last_arrival():
    """Requests queued for 15 min with none arriving: once the queue is gone, the idle time starts."""
    p = ForesailPolicy(PolicyConfig(min_replicas=0, capacity=2.0, predictive=False, scale_to_zero=True,
                                    idle_s=600.0, scale_down_stabilization_s=0.0))
    p.decide(Observation(0.0, 5.0, 0.0, 3, 3, counted=True))
    for k in range(1, 61):
        p.decide(Observation(15.0 * k, 0.0, 10.0, 1, 1, counted=True))
    replicas = [p.decide(Observation(15.0 * k, 0.0, 0.0, 1, 1, counted=True)).replicas for k in range(61, 101)]
    assert replicas == [1] * 39 + [0]  # 600 s after the queue was last seen, at 900 s


@pytest.mark.parametrize("size", [float("nan"), float("inf"), 0.0, -5.0])
def test_an_unreadable_request_size_keeps_the_last_one(size):
    """Tokens per request from a scrape with no request (0/0) is no size: the forecast keeps the last one."""
    p, now = _steady(2.0)
    p.decide(Observation(now, 6.0, 0.0, 3, 3, arrival_size=500.0))
    d = p.decide(Observation(now + 15.0, 6.0, 0.0, 3, 3, arrival_size=size))
    assert p.forecaster.arrival_size == 500.0 and d.forecast_ready and math.isfinite(d.forecast_upper)


@pytest.mark.parametrize("waiting", [float("nan"), float("inf"), -3.0])
def test_an_unreadable_queue_counts_as_none(waiting):
    p = ForesailPolicy(PolicyConfig(capacity=2.0, predictive=False))
    d = p.decide(obs(0.0, 6.0, 3, waiting=waiting))
    assert d.replicas == 3 and d.reactive_floor == 3 and "backlog" not in d.reason


def test_a_ramp_below_the_forecast_does_not_lower_it():
    p, now = _steady(2.0)
    for k in range(6):  # 6.00, 6.01, ... 6.05 req/s: a perfect, significant but shallow ramp
        t = now + 15.0 * k
        d = p.decide(obs(t, 6.0 + 0.01 * k, 4))
    assert "ramp" not in d.reason and d.forecast_upper == pytest.approx(p.last_forecast.window(t, t + 135.0, 0.9))


def test_replicas_asked_for_that_now_serve_are_not_counted_as_starting():
    """The 7 asked at 0 s all serve at 120 s: a queue then needs new replicas, a cold start away, not ones
    counted as about to serve (which would ask for 27)."""
    p = ForesailPolicy(PolicyConfig(capacity=2.0, cold_start_s=120.0, interval_s=60.0, predictive=False,
                                    queue_drain_s=60.0, max_replicas=50))
    assert p.decide(Observation(0.0, 6.0, 60.0, 1, 1)).replicas == 8
    d = p.decide(Observation(120.0, 30.0, 600.0, 8, 8))
    assert d.reactive_floor == 34 and d.replicas == 34  # (30 + 2280 / 60) / 2


def test_decisions_at_the_same_time_have_no_ramp_and_do_not_fail():
    p, now = _steady(2.0)
    decisions = [p.decide(obs(now, demand, 4)) for demand in (6.0, 7.0, 8.0, 9.0, 10.0, 11.0)]
    assert all("ramp" not in d.reason for d in decisions) and decisions[-1].replicas >= 6
