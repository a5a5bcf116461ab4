"""The policy API the operator calls, and the capacity model."""

import json
from dataclasses import replace

import numpy as np
import pytest
from scipy.stats import linregress

from foresail.autoscaler.capacity import CapacityModel
from foresail.autoscaler.policy import ForesailPolicy, Observation, PolicyConfig, let_go_runs
from foresail.autoscaler.schedule import parse_schedules

CFG = PolicyConfig(min_replicas=1, max_replicas=10, capacity=2.0, cold_start_s=120.0, interval_s=15.0,
                   quantile=0.9, scale_down_stabilization_s=300.0)


def obs(t, demand, current, waiting=0.0):
    return Observation(time_s=t, demand=demand, waiting=waiting,
                       ready_replicas=current, provisioned_replicas=current)


def test_missing_metrics_hold_capacity_and_say_so():
    p = ForesailPolicy(CFG)
    d = p.decide(obs(1000.0, None, 7))
    assert d.replicas == 7 and d.action == "hold" and "missing" in d.reason
    json.dumps(d.to_dict())


@pytest.mark.parametrize("current, scale_to_zero, replicas, action", [(0, True, 0, "hold"), (0, False, 1, "scale up"),
                                                                     (12, False, 10, "scale down")])
def test_without_metrics_zero_stays_zero_and_the_bounds_are_said(current, scale_to_zero, replicas, action):
    """Missing metrics wake no deployment at zero (the activator's request does), and a count the bounds change
    is a scale up or down in the action and the reason, not a hold."""
    p = ForesailPolicy(replace(CFG, scale_to_zero=scale_to_zero))
    d = p.decide(obs(1000.0, None, current))
    assert (d.replicas, d.action) == (replicas, action) and "missing" in d.reason
    assert d.reason.startswith(f"hold {replicas}" if action == "hold" else f"{action} {current}\u2192{replicas}")
    assert ("maxReplicas 10" in d.reason) == (action != "hold")


def test_a_metrics_outage_is_neither_quiet_nor_a_reason_to_scale_down_at_once():
    """After an hour without metrics, the first quiet reading neither scales to zero (the idle time counts
    from the last decision without data) nor drops the replicas held (they wait the stabilisation window)."""
    p = ForesailPolicy(replace(CFG, scale_to_zero=True, idle_s=600.0, predictive=False))
    t, current = 0.0, 3
    for _ in range(40):  # 10 min at 5 req/s
        t += 15.0
        current = p.decide(Observation(t, 5.0, 0.0, current, current, counted=True)).replicas
    for _ in range(240):  # an hour without metrics
        t += 15.0
        current = p.decide(Observation(t, None, None, current, current, counted=True)).replicas
    assert current == 3
    back, held, zero = t, None, None
    while zero is None:  # quiet from now on
        t += 15.0
        d = p.decide(Observation(t, 0.0, 0.0, current, current, counted=True))
        if d.replicas < current and held is None:
            held = t
        if d.replicas == 0:
            zero = t
        current = d.replicas
    assert held - back > 300.0 and zero - back >= 600.0 and "no demand for 6" in d.reason


@pytest.mark.parametrize("order", [slice(None), slice(None, None, -1)])
def test_a_backfill_in_any_order_counts_idle_time_from_its_latest_demand(order):
    """Quiet for days, then light demand up to the last minute: the first quiet interval after the backfill
    is 15 s of idle time, not days, whichever order the samples come in."""
    t = 1.7e9 + np.arange(3 * 1440) * 60.0
    demand = np.where(t >= t[-30], 0.2, 0.0)
    p = ForesailPolicy(replace(CFG, scale_to_zero=True, idle_s=600.0))
    p.warm_start(t[order], demand[order])
    d = p.decide(Observation(t[-1] + 15.0, 0.0, 0.0, 1, 1, counted=True))
    assert d.replicas == 1, d.reason


def test_a_demand_too_large_to_be_real_is_a_metrics_fault_not_a_crash():
    # 1e200 req/s: its square overflows the forecaster's features, whose NaN crashed the decision
    t = np.arange(1, 3 * 1440 + 1) * 60.0
    cfg = PolicyConfig(capacity=2.0, cold_start_s=120.0, interval_s=60.0, max_replicas=10)
    p = ForesailPolicy(cfg)
    p.warm_start(t, np.full(len(t), 5.0))
    d = p.decide(obs(t[-1] + 60.0, 1e200, 3))
    assert d.replicas == 3 and d.action == "hold" and "missing or unusable" in d.reason
    for k in range(2, 5):  # the forecaster recorded a gap, not the value: it goes on forecasting 5 req/s
        d = p.decide(obs(t[-1] + 60.0 * k, 5.0, d.replicas))
    assert d.forecast_upper is not None and 5.0 <= d.forecast_upper < 10.0 and d.replicas == 3
    assert p.forecaster.history_peak(t[-1], t[-1] + 60.0) is None  # that minute is a gap
    assert p.forecaster.history_peak(t[-1] + 60.0, t[-1] + 240.0) == 5.0
    p.forecaster.observe(t[-1] + 300.0, 1e200)  # the forecaster alone records it as a gap too
    assert p.forecaster.history_peak(t[-1] + 240.0, t[-1] + 300.0) is None


def test_reactive_mode_scales_up_at_once_and_down_after_stabilisation():
    p = ForesailPolicy(PolicyConfig(capacity=2.0, interval_s=15.0, predictive=False))
    d = p.decide(obs(0.0, 7.0, 1))
    assert d.replicas == 4 and d.reactive_floor == 4 and d.predicted_replicas is None
    assert d.reason.startswith("scale up 1\u21924")
    current, t = 4, 15.0
    while t < 290:
        current = p.decide(obs(t, 1.0, current)).replicas
        assert current == 4  # held by the stabilisation window
        t += 15
    while t < 330:
        current = p.decide(obs(t, 1.0, current)).replicas
        t += 15
    assert current == 1


def test_queue_raises_the_reactive_floor():
    p = ForesailPolicy(PolicyConfig(capacity=2.0, predictive=False, queue_drain_s=60.0))
    assert p.decide(obs(0.0, 2.0, 1, waiting=240.0)).reactive_floor == 3  # (2 + 240/60) / 2


def test_the_floor_drains_the_backlog_that_builds_up_during_the_cold_start():
    p = ForesailPolicy(PolicyConfig(capacity=2.0, cold_start_s=120.0, predictive=False, queue_drain_s=60.0))
    d = p.decide(obs(0.0, 6.0, 1, waiting=60.0))  # 4 req/s short: 60 + 4 x 120 = 540 queued when new ones serve
    assert d.reactive_floor == 8 and d.replicas == 8  # (6 + 540/60) / 2 = 7.5
    assert "backlog" in d.reason and "540" in d.reason


def test_a_need_of_billions_of_replicas_is_computed_not_listed():
    """The floor's queue costs the distinct times replicas start serving, not the replicas: with a tiny
    capacity the need runs to billions, which a list of start times per replica could not hold."""
    p = ForesailPolicy(PolicyConfig(capacity=1e-9, cold_start_s=120.0, predictive=False, queue_drain_s=60.0,
                                    max_replicas=1000))
    d = p.decide(obs(0.0, 6.0, 1, waiting=60.0))
    expected = (6.0 + (60.0 + (6.0 - 1e-9) * 120.0) / 60.0) / 1e-9  # the test above at a billionth of its capacity
    assert abs(d.reactive_floor - expected) <= 1
    assert d.replicas == 1000 and d.reason.endswith("capped at max 1000")
    assert "current demand 6 req/s plus draining" in d.reason, d.reason  # what needs more than the cap


def test_replicas_still_starting_count_from_when_they_will_serve():
    cfg = PolicyConfig(capacity=2.0, cold_start_s=120.0, interval_s=60.0, predictive=False, queue_drain_s=60.0,
                       max_replicas=20)
    p = ForesailPolicy(cfg)
    assert p.decide(obs(0.0, 6.0, 1, waiting=60.0)).replicas == 8  # (6 + (60 + 4 x 120) / 60) / 2 = 7.5
    # a minute on, the queue has grown by 4 x 60; the 7 asked for serve at 120 s and drain it by 174 s,
    # so nothing more is asked (counting them from 180 s, as new ones, would ask for (6 + 780/60) / 2 = 10)
    starting = Observation(time_s=60.0, demand=6.0, waiting=300.0, ready_replicas=1, provisioned_replicas=8)
    d = p.decide(starting)
    assert d.reactive_floor == 8 and d.replicas == 8 and "540" in d.reason  # 300 + 4 x 60 queued at 120 s
    # one fewer would leave 60 queued at 180 s: the floor keeps all that were asked for
    fresh = ForesailPolicy(cfg)  # a policy that did not ask for them counts them from a cold start on
    assert fresh.decide(starting).reactive_floor == 10


def test_a_scale_down_forgets_the_youngest_replicas_asked_for():
    p = ForesailPolicy(PolicyConfig(capacity=2.0, cold_start_s=120.0, interval_s=30.0, predictive=False,
                                    queue_drain_s=60.0, scale_down_stabilization_s=0.0, max_replicas=20))
    assert p.decide(obs(0.0, 4.0, 1, waiting=30.0)).replicas == 5  # 4 asked at 0 s: they serve at 120 s
    # 810 queued at 120 s, held there by the 5; 7 more from 150 s drain it by 210 s
    assert p.decide(Observation(30.0, 10.0, 90.0, 1, 5)).replicas == 12
    assert p.decide(Observation(60.0, 10.0, 0.0, 1, 12)).replicas == 5  # the 7 asked at 30 s go
    # the 4 left serve at 120 s: 540 queued then, drained by 270 s with 5 more from 210 s; had the scale-down
    # removed the oldest, they would serve at 150 s, with 780 queued, and the floor would be 12
    assert p.decide(Observation(90.0, 10.0, 300.0, 1, 5)).reactive_floor == 10


def test_replicas_asked_only_to_drain_a_backlog_go_once_it_has_drained():
    p = ForesailPolicy(PolicyConfig(capacity=2.0, cold_start_s=120.0, predictive=False, queue_drain_s=60.0,
                                    scale_down_stabilization_s=300.0))
    assert p.decide(obs(0.0, 8.0, 4)).replicas == 4  # a level of demand: 4 replicas
    d = p.decide(obs(15.0, 8.0, 4, waiting=240.0))  # a queue: (8 + 240/60) / 2 = 6
    assert d.replicas == 6 and "backlog" in d.reason
    d = p.decide(obs(30.0, 8.0, 6))  # drained: back to what the demand needs, not held by the window
    assert d.replicas == 4 and d.action == "scale down"
    d = p.decide(obs(45.0, 2.0, 4))  # a fall in demand itself is still held by the window
    assert d.replicas == 4 and "stabilisation window" in d.reason


def test_predictive_decision_uses_the_forecast_and_respects_max():
    p = ForesailPolicy(CFG)
    t = np.arange(1, 6 * 60 + 1) * 60.0
    p.warm_start(t, np.full(len(t), 6.0))
    d = p.decide(obs(t[-1] + 15.0, 6.0, 3))
    assert d.forecast_ready and d.forecast_upper >= d.forecast_median > 4
    assert d.predicted_replicas >= 3 and d.replicas == max(d.reactive_floor, d.predicted_replicas)
    assert "forecast p90" in d.reason and d.horizon_s == 135.0
    p.reconfigure(max_replicas=2, cold_start_s=300.0)
    d = p.decide(obs(t[-1] + 30.0, 6.0, 3))
    assert d.replicas == 2 and "max 2" in d.reason and d.horizon_s == 315.0


def test_a_new_horizon_keeps_what_a_request_counts_for():
    """A reconfigure that rebuilds the forecaster (a new horizon) keeps the last tokens per request."""
    p = ForesailPolicy(CFG)
    p.decide(Observation(60.0, 4000.0, 0.0, 1, 1, arrival_size=1000.0))
    p.reconfigure(cold_start_s=300.0)
    assert p.forecaster.arrival_size == 1000.0


def test_without_history_the_policy_is_reactive_and_says_why():
    p = ForesailPolicy(CFG, prior=None)
    d = p.decide(obs(60.0, 3.0, 1))
    assert not d.forecast_ready and d.replicas == 2 and "reactive only" in d.reason


def test_scale_to_zero_after_idle():
    cfg = PolicyConfig(min_replicas=0, capacity=1.0, interval_s=60.0, scale_to_zero=True, idle_s=600.0,
                       predictive=False)
    p = ForesailPolicy(cfg)
    p.warm_start(np.arange(-86400.0, -86400.0 + 3600, 60.0) + 60, np.zeros(60))  # a day ago: watched, idle
    current = p.decide(obs(0.0, 0.5, 1)).replicas
    for k in range(1, 10):
        d = p.decide(obs(k * 60.0, 0.0, current))
        current = d.replicas
        assert current == 1
        assert d.reason == ("hold 1: nothing needs a replica now; 1 is kept until scale to zero (after 600 s with no "
                            "demand and none forecast)")  # not "bounds min 0", which 1 is not
    d = p.decide(obs(11 * 60.0, 0.0, current))
    assert d.replicas == 0 and "zero" in d.reason
    assert p.decide(obs(12 * 60.0, 0.2, 0)).replicas == 1


def test_capacity_model_learns_from_saturated_throughput():
    m = CapacityModel(initial=2.0, min_samples=3)
    m.observe(throughput=9.0, waiting=0, ready_replicas=3)  # not saturated: no evidence
    assert m.capacity == 2.0
    for _ in range(30):
        m.observe(throughput=9.0, waiting=5, ready_replicas=3)
    assert m.capacity == pytest.approx(3.0, rel=0.05)
    m2 = CapacityModel(initial=2.0, min_samples=1, ttft_slo_s=1.0)
    m2.observe(throughput=4.0, waiting=0, ready_replicas=2, ttft_p90=2.0)
    assert m2.capacity == pytest.approx(1.0)


def test_capacity_model_learns_from_a_nearly_full_kv_cache():
    m = CapacityModel(initial=2.0, min_samples=2)
    m.observe(throughput=6.0, waiting=0, ready_replicas=2, kv_cache=0.8)  # at the threshold: no evidence
    m.observe(throughput=6.0, waiting=0, ready_replicas=2, kv_cache=None)
    assert not m.learned and m.capacity == 2.0
    for _ in range(2):
        m.observe(throughput=6.0, waiting=0, ready_replicas=2, kv_cache=0.96)
    assert m.learned and m.capacity == pytest.approx(3.0 * 0.8 / 0.96)
    m.observe(throughput=6.0, waiting=4, ready_replicas=2, kv_cache=0.96)  # a queue is the stronger evidence
    assert m.capacity == pytest.approx(0.9 * 2.5 + 0.1 * 3.0)


def test_capacity_model_resumes_a_learned_figure_within_its_bounds():
    """Within [0.25, 4] x the initial figure; not one that was not learned, nor one that is not a positive figure
    (the operator's restart test gives it garbled statuses)."""
    for estimate, samples, want in ((3.0, 6, 3.0), (100.0, 6, 8.0), (0.01, 9, 0.5), (3.0, 4, 2.0),
                                    (float("nan"), 6, 2.0), (float("inf"), 6, 2.0), (-1.0, 6, 2.0)):
        m = CapacityModel(initial=2.0, min_samples=5)
        m.resume(estimate, samples)
        assert m.capacity == want and m.learned == (want != 2.0), (estimate, samples)
    m = CapacityModel(initial=2.0, min_samples=5)
    m.resume(3.0, 6)
    m.observe(throughput=6.0, waiting=4, ready_replicas=3)  # and carries on learning: 2.0 per replica
    assert m.capacity == pytest.approx(0.9 * 3.0 + 0.1 * 2.0) and m.n_samples_ == 7


@pytest.mark.parametrize("step_s", [5.0, 15.0])
def test_forecasts_from_the_first_steps_at_any_forecast_step(step_s):
    # the demo's accelerated clock: one 5-s step stands for one trace minute; the prior applies there too
    cfg = PolicyConfig(capacity=1.0, cold_start_s=15.0, interval_s=step_s, max_replicas=50)
    p = ForesailPolicy(cfg, forecast_step_s=step_s)
    current, decisions = 1, []
    for k in range(1, 13):
        d = p.decide(obs(k * step_s, 4.0 + k, current))  # a steady ramp
        decisions.append(d)
        current = d.replicas
    assert not decisions[0].forecast_ready and "steps" in decisions[0].reason
    ready = [d for d in decisions if d.forecast_ready]
    assert len(ready) >= 8 and p.last_forecast.ready and p.last_forecast.reason == "prior model"
    last = decisions[-1]
    assert 10 < last.forecast_median < 40 and last.forecast_upper >= last.forecast_median
    assert "forecast" in last.reason or last.replicas == last.reactive_floor
    no_prior = ForesailPolicy(cfg, prior=None, forecast_step_s=step_s)
    d = no_prior.decide(obs(step_s, 3.0, 1))
    d = no_prior.decide(obs(2 * step_s, 3.0, d.replicas))
    assert not d.forecast_ready and "no prior model" in d.reason and "steps" in d.reason


# six hours of 2 req/s but one minute at 30, two hours before their end: a later burst to 30 is not demand
# never seen, which would be let go as a lone outlier
SEEN_30 = np.where(np.arange(6 * 60) == 4 * 60, 30.0, 2.0)


def test_bursts_the_forecast_keeps_missing_hold_the_recent_peak():
    t = np.arange(1, 6 * 60 + 1) * 60.0
    out = {}
    for window in (0.0, 3600.0):
        cfg = PolicyConfig(capacity=1.0, cold_start_s=120.0, interval_s=60.0, max_replicas=50, burst_window_s=window)
        p = ForesailPolicy(cfg)
        p.warm_start(t, SEEN_30)
        d = p.decide(obs(t[-1] + 60.0, 2.0, 2))
        assert "holding the peak" not in d.reason  # no forecast misses yet: nothing is held
        p._misses.extend([True] * 20)  # the forecasts kept falling short of demand
        d = p.decide(obs(t[-1] + 120.0, 30.0, d.replicas))
        for k in range(3, 12):
            d = p.decide(obs(t[-1] + 60.0 * k, 1.0, d.replicas))
        out[window] = d
    held = out[3600.0]
    assert held.replicas >= 30 and "holding the peak demand of the last 3600 s (30 replicas)" in held.reason
    assert out[0.0].replicas < 30 and "holding the peak" not in out[0.0].reason


@pytest.mark.parametrize("interval, steps, held", [(60.0, 1, False), (60.0, 2, False), (60.0, 3, True),
                                                   (15.0, 4, False), (15.0, 9, True)])
def test_burst_memory_lets_go_of_a_lone_outlier_once_the_steps_after_show_it(interval, steps, held):
    """Demand at 1,000 times that before and after it for at most two forecast steps (2 min) is a lone
    outlier: a glitch, or a burst that did not last. The reactive floor serves it, but burst memory does
    not hold it for the hour. At 15-s decisions a 1-min rate() window spreads one glitching minute over 4
    intervals; 3 minutes at 60 s, or 9 intervals at 15 s, are a burst and are held."""
    t = np.arange(1, 6 * 60 + 1) * 60.0
    p = ForesailPolicy(PolicyConfig(capacity=1.0, cold_start_s=120.0, interval_s=interval, max_replicas=5000))
    p.warm_start(t, np.full(len(t), 2.0))
    p._misses.extend([True] * 20)  # the forecasts kept falling short of demand: bursts are held
    now = t[-1] + interval
    d = p.decide(obs(now, 2.0, 2))
    for _ in range(steps):
        now += interval
        d = p.decide(obs(now, 2000.0, d.replicas))
        assert d.replicas >= 2000  # served while it lasts
    end = now + 600.0  # past the scale-down window
    while now < end:
        now += interval
        d = p.decide(obs(now, 1.0, d.replicas))
    assert ("holding the peak demand of the last 3600 s (2000 replicas)" in d.reason) == held, d.reason
    assert (d.replicas >= 2000) == held


@pytest.mark.parametrize("steps, lone", [(4, True), (9, False)])
def test_the_replicas_asked_for_a_lone_outlier_are_let_go_once_the_interval_after_shows_it(steps, lone):
    """A glitching minute read every 15 s through a 1-min rate() (4 intervals at 1,000 times): the first
    interval after it shows it alone, and the decision there drops what the scale-down window kept for it,
    counts it in the forecaster's history as the demand after it, and says so. 9 intervals are a burst,
    which is held."""
    t = np.arange(1, 6 * 60 + 1) * 60.0
    p = ForesailPolicy(PolicyConfig(capacity=1.0, cold_start_s=120.0, interval_s=15.0, max_replicas=5000))
    p.warm_start(t, np.full(len(t), 2.0))
    now = t[-1]
    d = p.decide(obs(now, 2.0, 2))
    for _ in range(steps):
        now += 15.0
        d = p.decide(obs(now, 2000.0, d.replicas))
    assert d.replicas >= 2000
    d = p.decide(obs(now + 15.0, 2.0, d.replicas))
    assert (d.replicas <= 4) == lone, d.reason
    assert ("were a lone outlier" in d.reason) == lone, d.reason
    if lone:
        assert "the 60 s of demand before the last 15 s, up to 2e+03 req/s, were a lone outlier" in d.reason, d.reason
        assert p.forecaster.history_peak(t[-1], now + 15.0) == pytest.approx(2.0)  # counted as the demand after it
        assert d.forecast_median is not None and d.forecast_median < 4.0


def test_a_first_burst_below_the_glitch_threshold_is_let_go_and_its_next_time_held():
    """A minute at 20 times the demand (below LONE, 148) is let go like a glitch where it is also 10 times the
    week's highest before it: demand never seen. Its next time that week is a burst, and is held."""
    t = np.arange(1, 6 * 60 + 1) * 60.0
    p = ForesailPolicy(PolicyConfig(capacity=1.0, cold_start_s=120.0, interval_s=15.0, max_replicas=5000))
    p.warm_start(t, np.full(len(t), 2.0))
    now = t[-1]
    d = p.decide(obs(now, 2.0, 2))
    for burst in range(2):
        for _ in range(4):
            now += 15.0
            d = p.decide(obs(now, 40.0, d.replicas))
        assert d.replicas >= 40
        now += 15.0
        d = p.decide(obs(now, 2.0, d.replicas))
        if burst == 0:
            assert d.replicas <= 4, d.reason
            assert ("the 60 s of demand before the last 15 s, up to 40 req/s, were a lone outlier (more than 10x the "
                    "demand before and after them and the week's highest before them, 2 req/s): counted as 2 req/s"
                    ) in d.reason, d.reason
            assert p.forecaster.history_peak(t[-1], now) == pytest.approx(2.0)
            for _ in range(40):  # ten minutes
                now += 15.0
                d = p.decide(obs(now, 2.0, d.replicas))
    assert d.replicas >= 40 and "lone outlier" not in d.reason, d.reason


def test_after_a_restart_a_first_burst_in_the_backfill_is_let_go_and_its_next_time_held():
    """The history backfilled after a restart is judged as the live policy judged it: the first burst three
    minutes before counts as the demand around it, and is remembered, so the next one is held."""
    t = np.arange(1, 6 * 60 + 1) * 60.0
    p = ForesailPolicy(PolicyConfig(capacity=1.0, cold_start_s=120.0, interval_s=15.0, max_replicas=5000))
    p.warm_start(t, np.where(np.arange(len(t)) == len(t) - 4, 40.0, 2.0))
    assert p.forecaster.history_peak(t[0], t[-1]) == pytest.approx(2.0)
    assert list(p._firsts) == [(t[-5], 40.0)]  # the step [t[-5], t[-4]) held it
    now = t[-1]
    d = p.decide(obs(now, 2.0, 2))
    assert d.replicas <= 3 and d.forecast_median == pytest.approx(2.0, rel=0.05), d.reason
    for _ in range(4):
        now += 15.0
        d = p.decide(obs(now, 40.0, d.replicas))
    now += 15.0
    d = p.decide(obs(now, 2.0, d.replicas))
    assert d.replicas >= 40 and "lone outlier" not in d.reason, d.reason


@pytest.mark.parametrize("spike", [40.0, 2000.0])
def test_a_restart_right_after_a_lone_outlier_lets_it_go_once_the_decisions_after_it_show_it(spike):
    """The backfill's last step, a first burst (20 times) or a glitch (1,000 times) whose next step is not
    known yet, is handed to the decisions after the restart, which let it go as the interval after it shows
    it alone; the policy no longer holds its replicas and the history counts it as the demand around it."""
    t = np.arange(1, 6 * 60 + 1) * 60.0
    p = ForesailPolicy(PolicyConfig(capacity=1.0, cold_start_s=120.0, interval_s=15.0, max_replicas=5000))
    p.warm_start(t, np.where(np.arange(len(t)) == len(t) - 1, spike, 2.0))
    now = t[-1] + 15.0
    d = p.decide(obs(now, 2.0, int(spike)))
    assert "were a lone outlier" in d.reason, d.reason
    for _ in range(24):  # the replicas found at the restart are held through the window (300 s)
        now += 15.0
        d = p.decide(obs(now, 2.0, d.replicas))
    assert d.replicas <= 3, d.reason
    assert p.forecaster.history_peak(t[0], now) == pytest.approx(2.0)
    assert d.forecast_median == pytest.approx(2.0, rel=0.05)


def test_a_backfill_is_judged_as_the_live_policy_judges_it():
    """``let_go_runs`` over a series gives the history and the first bursts that ``decide`` leaves after
    seeing it one forecast step at a time: glitches, first bursts, runs of one to three steps, bursts seen."""
    rng = np.random.default_rng(7)
    for _ in range(8):
        x = rng.poisson(rng.uniform(0.5, 20), 600) / 4 + 0.25
        for j, k in zip(rng.integers(1, 596, 5), rng.integers(1, 4, 5), strict=True):
            x[j : j + k] *= rng.choice([5, 12, 20, 100, 200, 1e4])
        t = np.arange(1, 601) * 60.0
        live = ForesailPolicy(PolicyConfig(capacity=1.0, interval_s=60.0, max_replicas=10**9), prior=None)
        for now, demand in zip(t, x, strict=True):
            live.decide(obs(now, float(demand), 1))
        want, firsts = let_go_runs(x)
        start = live.forecaster.start_bucket_
        assert live.forecaster.history_[: 600 - start] == pytest.approx(want[start:])
        assert list(live._firsts) == [(60.0 * j, peak) for j, peak in firsts]


def test_let_go_runs_judges_runs_by_their_neighbours_and_the_week_before():
    x = np.full(3 * 1440, 2.0)
    x[100] = 40.0  # first burst
    x[200:202] = 40.0  # as high again: seen
    x[299:302] = 4.0, 450.0, 4.0  # more than 10x its neighbours and the 40 before: the next first burst
    x[400] = 1e5  # a glitch (LONE times its neighbours) is let go but not remembered
    x[500:503] = 1e4  # three steps: a burst, kept
    x[600], x[601] = 1e4, np.nan  # a gap after it: not judged
    x[-1] = 1e4  # its next step is not known yet
    out, firsts = let_go_runs(x)
    assert firsts == [(100, 40.0), (300, 450.0)]
    assert out[100] == out[400] == 2.0 and out[300] == 4.0
    assert (out[200:202] == 40.0).all() and (out[500:503] == 1e4).all() and out[600] == 1e4 and out[-1] == 1e4
    week = np.concatenate([x[:150], np.full(7 * 1440, 2.0), [40.0, 2.0]])  # a week later it is new again
    assert let_go_runs(week)[1] == [(100, 40.0), (len(week) - 2, 40.0)]


def test_widened_headroom_stops_at_a_multiple_of_the_recent_peak():
    """Forecast misses widen the upper quantile, but not past widen_to_peak x the burst window's peak demand;
    the quantile itself is never cut."""
    t = np.arange(1, 6 * 60 + 1) * 60.0

    def decide(**changes):
        p = ForesailPolicy(PolicyConfig(capacity=0.25, cold_start_s=120.0, interval_s=60.0, max_replicas=200,
                                        **changes))
        p.warm_start(t, np.full(len(t), 2.0))
        p._misses.extend([True] * 20)  # the forecasts kept falling short: headroom x2
        return p.decide(obs(t[-1] + 60.0, 2.0, 8))

    plain = decide(max_headroom=1.0)  # no widening: the quantile alone
    raw = plain.forecast_upper
    unlimited, limited, tight = decide(widen_to_peak=0.0), decide(), decide(widen_to_peak=0.1)
    assert unlimited.headroom == limited.headroom == 2.0
    assert unlimited.forecast_upper == pytest.approx(2.0 * raw)
    assert limited.forecast_upper == pytest.approx(max(raw, min(2.0 * raw, 1.5 * 2.0)))  # peak demand 2.0
    assert limited.predicted_replicas < unlimited.predicted_replicas
    assert "1.5x the peak demand of the last 3600 s" in limited.reason
    assert tight.forecast_upper == pytest.approx(raw) and tight.predicted_replicas == plain.predicted_replicas
    with pytest.raises(ValueError, match="widen_to_peak"):
        PolicyConfig(widen_to_peak=-1.0)


def test_a_fresh_ramp_is_extrapolated_and_noise_is_not():
    cfg = PolicyConfig(capacity=1.0, cold_start_s=25.0, interval_s=5.0, max_replicas=50,
                       scale_down_stabilization_s=20.0)
    rng = np.random.default_rng(0)
    ramp, flat = ForesailPolicy(cfg, forecast_step_s=5.0), ForesailPolicy(cfg, forecast_step_s=5.0)
    for k in range(1, 9):
        r = ramp.decide(obs(k * 5.0, 1.0 + 0.5 * k, 4))
        f = flat.decide(obs(k * 5.0, 3.0 * rng.uniform(0.9, 1.1), 4))
    # 5 req/s now, rising 0.1 req/s per second: about 8 req/s at +30 s
    assert r.replicas >= 7 and "ramp" in r.reason
    assert f.replicas <= 5 and "ramp" not in f.reason
    off = ForesailPolicy(PolicyConfig(**{**cfg.__dict__, "trend_points": 0}), forecast_step_s=5.0)
    for k in range(1, 9):
        o = off.decide(obs(k * 5.0, 1.0 + 0.5 * k, 4))
    assert o.replicas <= r.replicas  # the guard only ever adds to the learned forecast


def test_the_ramp_line_is_scipys_least_squares_fit():
    cfg = PolicyConfig(capacity=1.0, cold_start_s=25.0, interval_s=5.0, trend_t=2.0)
    rng = np.random.default_rng(1)
    extrapolated = 0
    for _ in range(200):
        policy = ForesailPolicy(cfg, prior=None, forecast_step_s=5.0)
        t = np.sort(rng.uniform(0, 60, cfg.trend_points))
        y = 5 + rng.normal(0.05, 0.1) * t + rng.normal(0, 0.5, len(t))
        policy._recent.extend(zip(t, y, strict=True))
        fit = linregress(t - t[-1], y)
        significant = fit.slope > 0 and fit.slope / fit.stderr >= cfg.trend_t
        expected = min(fit.intercept + fit.slope * cfg.horizon_s, 3 * y[-1]) if significant else None
        got = policy._ramp()
        assert (got is None) == (expected is None) and (got is None or np.isclose(got, expected, rtol=1e-9))
        extrapolated += got is not None
    assert 20 < extrapolated < 180  # both branches are exercised


@pytest.mark.parametrize("predictive", [True, False])
def test_replicas_asked_for_a_forecast_stay_for_a_cold_start(predictive: bool):
    """With a scale-down window shorter than the cold start, predictive mode keeps what a forecast asked
    for until it could be ready (replicas still starting are not dropped); reactive keeps its window."""
    cfg = PolicyConfig(capacity=1.0, cold_start_s=60.0, interval_s=5.0, max_replicas=20,
                       scale_down_stabilization_s=10.0, predictive=predictive)
    policy = ForesailPolicy(cfg, forecast_step_s=5.0)
    current = 1
    for k in range(1, 5):  # a short burst asks for at least 6 replicas
        current = policy.decide(obs(k * 5.0, 6.0, current)).replicas
    peak = current
    assert peak >= 6
    held = []
    for k in range(5, 15):  # then demand falls back: 50 s later, still inside the 60-s cold start
        current = policy.decide(obs(k * 5.0, 1.0, current)).replicas
        held.append(current)
    if predictive:
        assert min(held) == peak, held
    else:
        assert held[-1] < peak, held


def test_a_forecast_capped_at_max_says_so():
    cfg = PolicyConfig(capacity=1.0, cold_start_s=25.0, interval_s=5.0, max_replicas=3,
                       scale_down_stabilization_s=20.0)
    policy = ForesailPolicy(cfg, forecast_step_s=5.0)
    for k in range(1, 9):
        decision = policy.decide(obs(k * 5.0, 1.0 + 0.5 * k, 3))
    assert decision.replicas == 3 and decision.predicted_replicas > 3
    assert "forecast" in decision.reason and "capped at max 3" in decision.reason, decision.reason


def _governed(target: float, steps: list[float]) -> list:
    """Reactive decisions at demand 4/s on 4 ready replicas, with the given queue at each step."""
    p = ForesailPolicy(PolicyConfig(capacity=1.0, interval_s=60.0, max_replicas=50, predictive=False,
                                    slo_target=target, slo_wait_s=2.0))
    return [p.decide(obs(60.0 * k, 4.0, 4, waiting=w)) for k, w in enumerate(steps)]


def test_slo_governor_adds_replicas_after_missed_decisions_and_gives_them_back_slowly():
    # A queue of 100 cannot drain within 2 s on 4 replicas at 1/s each: every decision misses. The floor
    # (demand plus draining the queue within 60 s) is ceil(4 + 100 / 60) = 6 either way.
    assert [d.replicas for d in _governed(0.0, [100.0] * 10)] == [6] * 10  # off by default
    missed = _governed(0.99, [100.0] * 10)
    # each miss adds 0.05 * 0.99 to the log-multiplier: exp(0.495) = 1.64 after 10, ceil(1.64 * 6) = 10
    assert missed[-1].replicas == 10 and missed[0].replicas == 7
    assert "SLO governor x1.64" in missed[-1].reason and "99 % target" in missed[-1].reason
    # without a queue each decision takes 0.05 * 0.01 off: back to the demand's 4 after 990 of them
    after = _governed(0.99, [100.0] * 10 + [0.0] * 1000)
    assert after[20].replicas == 7 and after[-1].replicas == 4  # ceil(1.63 * 4) with the queue gone
    capped = _governed(0.99, [100.0] * 100)
    assert capped[-1].replicas == 18  # the multiplier stops at max_governor 3


def test_slo_governor_resumes_a_multiplier_within_its_bounds():
    """What a restarted operator finds in the status: 1.64 sizes the next decision as after ten misses."""
    cfg = PolicyConfig(capacity=1.0, interval_s=60.0, max_replicas=50, predictive=False, slo_target=0.99)
    for value, want in ((1.64, 1.64), (10.0, 3.0), (0.5, 1.0), (float("nan"), 1.0)):
        p = ForesailPolicy(cfg)
        p.resume_governor(value)
        assert p.governor == pytest.approx(want), value
    p = ForesailPolicy(cfg)
    p.resume_governor(1.64)
    assert p.decide(obs(60.0, 4.0, 4, waiting=100.0)).replicas == 11  # ceil(1.64 * 1.05 * 6): one miss more
    off = ForesailPolicy(replace(cfg, slo_target=0.0))
    off.resume_governor(2.0)
    assert off.governor == 1.0 and off.decide(obs(60.0, 4.0, 4, waiting=100.0)).replicas == 6


def test_the_record_of_forecast_checks_resumes_with_its_misses_spread_evenly():
    """What a restarted operator finds in status.forecast: p90 covered 70 % of the last 60, so the headroom
    is widened from the first decision (x1.4), where a new record would wait for ten checks."""
    t = np.arange(1, 6 * 60 + 1) * 60.0
    cfg = PolicyConfig(capacity=1.0, cold_start_s=120.0, interval_s=60.0, max_replicas=100)

    def policy(config: PolicyConfig = cfg) -> ForesailPolicy:
        p = ForesailPolicy(config)
        p.warm_start(t, np.full(len(t), 5.0))
        return p

    resumed, fresh = policy(), policy()
    resumed.resume_coverage(0.7, 60, 0.9)
    assert resumed.forecast_coverage() == (pytest.approx(0.7), 60)
    assert all(sum(list(resumed._misses)[k : k + 10]) == 3 for k in range(0, 60, 10))
    d = resumed.decide(obs(t[-1] + 60.0, 5.0, 5))
    assert d.headroom == pytest.approx(1.4) and "widened" in d.reason, d.reason
    assert fresh.decide(obs(t[-1] + 60.0, 5.0, 5)).headroom == 1.0
    for args, config in (((0.7, 60, 0.95), cfg), ((0.7, 60, 0.9), replace(cfg, predictive=False)),
                         ((1.5, 60, 0.9), cfg), ((0.7, 0, 0.9), cfg), ((float("nan"), 60, 0.9), cfg)):
        ignored = ForesailPolicy(config)
        ignored.resume_coverage(*args)
        assert ignored.forecast_coverage() is None, args
    window = ForesailPolicy(replace(cfg, error_window=20))
    window.resume_coverage(0.5, 60, 0.9)  # more than the window keeps: a window's worth
    assert window.forecast_coverage() == (0.5, 20)


@pytest.mark.parametrize(("ago", "held"), [(30, True), (90, False)])
def test_after_a_restart_burst_memory_holds_the_backfilled_hours_peak(ago, held):
    """A three-minute burst to 30 req/s (longer than a lone outlier) ``ago`` minutes before a restart: with
    the record of checks carried on (70 % covered), burst memory holds the peak of the hour before, as it
    would have without the restart; not one older than its window (3,600 s)."""
    t = np.arange(1, 6 * 60 + 1) * 60.0
    x = np.full(len(t), 2.0)
    x[-ago : -ago + 3] = 30.0
    p = ForesailPolicy(PolicyConfig(capacity=1.0, cold_start_s=120.0, interval_s=15.0, max_replicas=500))
    p.warm_start(t, x)
    p.resume_coverage(0.7, 60, 0.9)
    d = p.decide(obs(t[-1] + 15.0, 2.0, 3))
    assert (d.replicas == 30 and "holding the peak demand of the last 3600 s" in d.reason) == held, d.reason
    assert d.replicas <= 4 or held


@pytest.mark.parametrize("target", [1.0, 0.3, -0.1])
def test_slo_target_outside_its_range_is_refused(target):
    with pytest.raises(ValueError, match="slo_target"):
        PolicyConfig(slo_target=target)


SCHEDULED = PolicyConfig(min_replicas=1, max_replicas=6, capacity=2.0, cold_start_s=120.0, interval_s=60.0,
                         predictive=False, schedules=parse_schedules([{"name": "batch", "start": "10:00",
                                                                       "end": "11:00", "minReplicas": 8}]))
TEN = 10 * 3600.0  # 10:00 UTC on 1 January 1970, the backtester's clock for a trace from its day-0 midnight


def test_a_schedule_holds_its_floor_from_a_horizon_before_it_opens_until_it_closes():
    """1 req/s needs 1 replica; the window holds max_replicas (its 8 capped at 6) from 180 s (cold start
    plus interval) before 10:00 until 11:00, then demand decides again at once."""
    p = ForesailPolicy(SCHEDULED)
    current, seen = 1, {}
    for t in np.arange(TEN - 600, TEN + 3600 + 120, 60.0):
        d = p.decide(obs(t, 1.0, current))
        current = seen[t - TEN] = d.replicas
    assert seen[-240.0] == 1 and seen[-180.0] == 6 and seen[3540.0] == 6 and seen[3600.0] == 1
    d = ForesailPolicy(SCHEDULED).decide(obs(TEN - 120, 1.0, 1))
    assert d.action == "scale up" and d.reason.startswith(
        "scale up 1\u21926: schedule batch (10:00-11:00 UTC) holds at least 8 replicas, 120 s before it opens "
        "(the cold start) (demand and forecast: 1; current demand 1 req/s needs 1 replica")


def test_a_schedule_raises_the_floor_even_when_metrics_are_missing():
    p = ForesailPolicy(SCHEDULED)
    assert p.decide(obs(TEN - 900, None, 2)).replicas == 2  # no window near: hold
    d = p.decide(obs(TEN + 60, None, 2))
    assert d.replicas == 6 and d.action == "scale up" and "schedule batch" in d.reason and "missing" in d.reason


@pytest.mark.parametrize("floor, held", [(30, False), (20, True)])
def test_demand_a_schedule_foretold_is_not_a_burst_to_hold(floor, held):
    """A spike to 30 req/s inside a window from 06:00 to 06:10: with a floor of 30 the schedule served it, so
    the burst memory does not hold its peak once the window closes; with a floor of 20 it came as a surprise
    (more than the floor serves) and is held, as without a schedule."""
    t = np.arange(1, 6 * 60 + 1) * 60.0  # six hours of 2 req/s, to 06:00
    window = [{"name": "job", "start": "06:00", "end": "06:10", "minReplicas": floor}]
    p = ForesailPolicy(PolicyConfig(capacity=1.0, cold_start_s=120.0, interval_s=60.0, max_replicas=50,
                                    schedules=parse_schedules(window)))
    p.warm_start(t, SEEN_30)
    p._misses.extend([True] * 20)  # the forecasts kept falling short of demand: bursts are held
    d = p.decide(obs(t[-1] + 60.0, 2.0, floor))
    d = p.decide(obs(t[-1] + 120.0, 30.0, d.replicas))
    for k in range(3, 12):  # to 06:11, after the window has closed
        d = p.decide(obs(t[-1] + 60.0 * k, 1.0, d.replicas))
    assert "schedule job" not in d.reason
    assert ("holding the peak demand of the last 3600 s (30 replicas)" in d.reason) == held, d.reason
    assert (d.replicas >= 30) == held


@pytest.mark.parametrize("floor, widened", [(30, False), (5, True)])
def test_demand_a_schedule_foretold_is_not_a_forecast_miss(floor, widened):
    """An hour at 20 req/s after six at 2: the forecasts fall short; inside a window whose floor serves it
    (30) those are not misses and the headroom stays x1; a floor of 5 does not serve it, so they are."""
    t = np.arange(1, 6 * 60 + 1) * 60.0
    window = [{"name": "job", "start": "06:00", "end": "07:00", "minReplicas": floor}]
    p = ForesailPolicy(PolicyConfig(capacity=1.0, cold_start_s=120.0, interval_s=60.0, max_replicas=50,
                                    schedules=parse_schedules(window)))
    p.warm_start(t, np.full(len(t), 2.0))
    d = p.decide(obs(t[-1] + 60.0, 2.0, floor))
    for k in range(2, 60):
        d = p.decide(obs(t[-1] + 60.0 * k, 20.0, d.replicas))
    assert (d.headroom > 1.0) == widened, d.reason


def hourly_job_history(hours: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-minute times (from the clock's midnight) and demand: 1 req/s, 16 req/s from minute 20 to 30."""
    t = np.arange(1, hours * 60 + 1) * 60.0
    return t, np.where((t - 60.0) % 3600 // 60 // 10 == 2, 16.0, 1.0)


@pytest.mark.parametrize("learn", [True, False])
def test_a_window_learned_from_the_history_is_held_ahead_of_the_job(learn: bool):
    """After a day of an hourly job (minutes 20 to 30), a policy with learn_schedules holds the job's replicas
    from a horizon before minute 20; one without waits for the job to show in the demand."""
    t, demand = hourly_job_history(26)
    p = ForesailPolicy(PolicyConfig(capacity=2.0, cold_start_s=120.0, interval_s=60.0, max_replicas=20,
                                    learn_schedules=learn))
    p.warm_start(t, demand)
    d = p.decide(obs(t[-1] + 17 * 60.0, 1.0, 1))  # minute 17 of the next hour, 180 s before the job
    assert [(w.name, w.replicas) for w in p.learned] == ([("hourly-20", 8)] if learn else [])
    assert (d.replicas >= 8) == learn, d.reason
    assert ("schedule learned hourly-20 (*:20-*:30 UTC) holds at least 8 replicas, 180 s before it opens"
            in d.reason) == learn, d.reason


def test_nothing_is_learned_from_less_than_a_day_or_without_a_job():
    for hours, demand in ((23, None), (48, 1.0)):
        t, job = hourly_job_history(hours)
        p = ForesailPolicy(PolicyConfig(capacity=2.0, cold_start_s=120.0, interval_s=60.0, learn_schedules=True))
        p.warm_start(t, job if demand is None else np.full(len(t), demand))
        p.decide(obs(t[-1] + 60.0, 1.0, 1))
        assert p.learned == (), hours


def test_learned_windows_are_looked_for_hourly_and_dropped_when_learning_is_turned_off():
    t, demand = hourly_job_history(23)
    p = ForesailPolicy(PolicyConfig(capacity=2.0, cold_start_s=120.0, interval_s=60.0, learn_schedules=True))
    p.warm_start(t, demand)
    now, current = t[-1], 1
    for _ in range(61):  # the day completes; looked for again within the hour
        now += 60.0
        current = p.decide(obs(now, float(demand[int(now // 60 - 1) % 60]), current)).replicas
    assert [w.name for w in p.learned] == ["hourly-20"]
    p.reconfigure(learn_schedules=False)
    assert p.learned == () and "learned" not in p.decide(obs(now + 60.0 * 18, 1.0, 1)).reason


def test_forecast_coverage_is_the_share_of_checked_forecasts_that_covered_demand():
    """Six flat hours at 2 req/s, then 20: the p90 covers the flat demand and misses the jump, and the
    widened headroom's reason says by how much; none is reported before ten forecasts were checked."""
    t = np.arange(1, 6 * 60 + 1) * 60.0
    p = ForesailPolicy(PolicyConfig(capacity=1.0, cold_start_s=120.0, interval_s=60.0, max_replicas=50))
    p.warm_start(t, np.full(len(t), 2.0))
    d = p.decide(obs(t[-1] + 60.0, 2.0, 2))
    assert p.forecast_coverage() is None
    for k in range(2, 40):
        d = p.decide(obs(t[-1] + 60.0 * k, 2.0, d.replicas))
    flat = p.forecast_coverage()
    assert flat is not None and flat[0] >= 0.9 and 10 <= flat[1] <= 60, flat
    for k in range(40, 60):
        d = p.decide(obs(t[-1] + 60.0 * k, 20.0, d.replicas))
    jumped = p.forecast_coverage()
    assert jumped is not None and jumped[0] < flat[0] - 0.1 and jumped[1] == min(60, flat[1] + 20), (flat, jumped)
    assert d.headroom > 1 and f"p90 covered {100 * jumped[0]:.0f} % of the last {jumped[1]})" in d.reason, d.reason


def test_forecast_coverage_starts_again_with_another_quantile_and_is_none_while_reactive():
    """The record is of one quantile's forecasts: a spec asking for another starts it again, and in reactive
    mode, where nothing is forecast, there is none (not the last one before the switch)."""
    t = np.arange(1, 6 * 60 + 1) * 60.0
    p = ForesailPolicy(PolicyConfig(capacity=1.0, cold_start_s=120.0, interval_s=60.0, max_replicas=50))
    p.warm_start(t, np.full(len(t), 2.0))
    d = p.decide(obs(t[-1] + 60.0, 2.0, 2))
    for k in range(2, 30):
        d = p.decide(obs(t[-1] + 60.0 * k, 2.0, d.replicas))
    assert p.forecast_coverage() is not None
    p.reconfigure(quantile=0.9)  # unchanged: the record stays
    assert p.forecast_coverage() is not None
    p.reconfigure(quantile=0.95)
    assert p.forecast_coverage() is None
    for k in range(30, 50):
        d = p.decide(obs(t[-1] + 60.0 * k, 2.0, d.replicas))
    assert p.forecast_coverage() is not None
    p.reconfigure(predictive=False)
    for k in range(50, 70):
        d = p.decide(obs(t[-1] + 60.0 * k, 2.0, d.replicas))
    assert p.forecast_coverage() is None and "reactive" in d.reason


@pytest.mark.parametrize("demand", [0.0, None])
def test_a_schedule_wakes_a_deployment_at_zero_to_min_replicas_at_least(demand):
    """With scale to zero and minReplicas 2, a window whose floor is 1 wakes the deployment to 2, never to 1
    (a count between zero and minReplicas), with metrics or without; the reason says why it is more than the
    floor, and a floor of 1 is "1 replica"."""
    config = replace(SCHEDULED, min_replicas=2, scale_to_zero=True, schedules=parse_schedules(
        [{"name": "batch", "start": "10:00", "end": "11:00", "minReplicas": 1}]))
    d = ForesailPolicy(config).decide(Observation(TEN - 120, demand, 0.0, 0, 0, counted=True))
    assert (d.replicas, d.action) == (2, "scale up"), d.reason
    assert d.reason.startswith("scale up 0\u21922: schedule batch (10:00-11:00 UTC) holds at least 1 replica, 120 s "
                               "before it opens (the cold start), minReplicas 2 above zero (demand and forecast: 0; ")


def test_recurring_windows_are_looked_for_again_after_the_clock_goes_back():
    """A day of the job at minutes 20 to 30 is learned; then the clock goes back 20 days (more than the history
    holds: the forecaster starts again) and the job runs at minutes 40 to 50. A day and an hour later the
    policy holds the new window, not the old one, as the jump counts as one interval for the hourly look too."""
    t, demand = hourly_job_history(26)
    p = ForesailPolicy(PolicyConfig(capacity=2.0, cold_start_s=120.0, interval_s=60.0, max_replicas=20,
                                    learn_schedules=True))
    p.warm_start(t + 30 * 86400.0, demand)
    current = p.decide(obs(30 * 86400.0 + t[-1] + 60.0, 1.0, 1)).replicas
    assert [w.name for w in p.learned] == ["hourly-20"]
    for now, rate in zip(t + 10 * 86400.0, np.roll(demand, 20), strict=True):
        current = p.decide(obs(now, float(rate), current)).replicas
    assert [w.name for w in p.learned] == ["hourly-40"]
