"""Scale to zero and back: at zero replicas nothing runs to count requests, as in the operator (the
collector reports zero demand for a deployment with no replicas), so only demand that recurs a day or a
week later can bring a replica back before it arrives. With the activator's count of arriving requests
(``Observation.counted``) time at zero is known rather than a gap."""

from __future__ import annotations

import numpy as np
import pytest

from foresail.autoscaler.forecast import DemandForecaster
from foresail.autoscaler.policy import ForesailPolicy, Observation, PolicyConfig

DAY = 86400.0
T0 = 1_699_920_000.0  # a midnight (UTC)
STEP = 60.0


def office_hours(t: float) -> float:
    """5 req/s from 09:00 to 17:00, nothing otherwise."""
    return 5.0 if 9 <= ((t - T0) % DAY) / 3600 < 17 else 0.0


def run_day(demand, days_of_history: int, predictive: bool = True, hours: float = 24.0, counted: bool = False):
    """Warm-start on ``days_of_history`` days of ``demand``, then run the next day in closed loop where
    demand is seen only while a replica runs, or always with ``counted`` (the activator counts it). An
    observation at ``t`` is the rate over the step before it, ``demand(t - STEP)``. Returns (hour of the
    decision, replicas, reason) per decision."""
    config = PolicyConfig(min_replicas=1, max_replicas=10, capacity=1.0, interval_s=STEP, cold_start_s=120.0,
                          scale_to_zero=True, idle_s=600.0, predictive=predictive)
    policy = ForesailPolicy(config, forecast_step_s=STEP)
    start = T0 + days_of_history * DAY
    if days_of_history:
        times = np.arange(T0, start, STEP) + STEP
        policy.warm_start(times, np.array([demand(t - STEP) for t in times]))
    current, out = 1, []
    for k in range(int(hours * 3600 / STEP)):
        t = start + (k + 1) * STEP
        seen = demand(t - STEP) if current > 0 or counted else 0.0
        d = policy.decide(Observation(t, seen, 0.0, current, current, counted=counted))
        current = d.replicas
        out.append((((t - T0) % DAY) / 3600, current, d.reason))
    return out


@pytest.mark.parametrize("predictive", [True, False])
def test_a_deployment_at_zero_wakes_a_cold_start_ahead_of_demand_that_came_yesterday(predictive: bool) -> None:
    decisions = run_day(office_hours, days_of_history=7, predictive=predictive)
    night = [r for h, r, _ in decisions if 1 <= h < 8.9]
    assert night and max(night) == 0, "idle all night: scaled to zero"
    woke = next((h, r, why) for h, r, why in decisions if 8 <= h < 10 and r > 0)
    # asked for at 08:58 (the 180-s horizon reaches 09:00), ready at 09:00 after the 120-s cold start
    assert woke[0] == pytest.approx(8 + 58 / 60) and woke[1] == 5
    assert "5 req/s arrived a day ago within the next 180 s" in woke[2]
    assert all(r >= 5 for h, r, _ in decisions if 9 <= h < 17), "serving through office hours"
    assert all(r == 0 for h, r, _ in decisions if 17.3 <= h < 24), "back to zero in the evening"


def test_demand_a_week_ago_wakes_it_too() -> None:
    def mondays(t: float) -> float:
        return office_hours(t) if int((t - T0) // DAY) % 7 == 0 else 0.0

    decisions = run_day(mondays, days_of_history=7)
    woke = next((h, r, why) for h, r, why in decisions if r > 0 and h > 1)
    assert woke[0] == pytest.approx(8 + 58 / 60) and "arrived a week ago" in woke[2]


def test_without_a_day_of_history_it_does_not_go_to_zero() -> None:
    """Zero replicas see nothing, so only a quiet spell watched a day or a week earlier makes zero safe."""
    decisions = run_day(office_hours, days_of_history=0, hours=12)
    assert all(r >= 1 for _, r, _ in decisions)
    night = [why for h, _, why in run_day(office_hours, days_of_history=0, predictive=False, hours=6) if h >= 1]
    assert night and all("not scaling to zero: this time a day and a week earlier was not watched" in w
                         for w in night), night[:1]
    quiet = run_day(office_hours, days_of_history=1, hours=12)
    assert [r for h, r, _ in quiet if 2 <= h < 8] and all(r == 0 for h, r, _ in quiet if 2 <= h < 8)


@pytest.mark.parametrize("predictive", [True, False])
def test_a_pause_does_not_scale_to_zero_while_demand_is_due(predictive: bool) -> None:
    def lunch_break_today(t: float) -> float:
        return 0.0 if t >= T0 + 7 * DAY and 12 <= ((t - T0) % DAY) / 3600 < 12.5 else office_hours(t)

    decisions = run_day(lunch_break_today, days_of_history=7, predictive=predictive, hours=14)
    assert all(r > 0 for h, r, _ in decisions if 9 <= h < 14), "yesterday's noon demand keeps a replica"
    if not predictive:  # with no forecast to hold it, the reason names what keeps it from zero
        kept = [why for h, _, why in decisions if 12.2 <= h < 12.5]
        assert kept and all("not scaling to zero: 5 req/s arrived a day ago within the next 180 s" in w
                            for w in kept), kept


def test_history_peak_reads_the_steps_that_overlap_a_window() -> None:
    f = DemandForecaster(step_s=60.0, prior=None)
    assert f.history_peak(0.0, 600.0) is None
    f.partial_fit(np.array([60.0, 120.0, 180.0, 300.0]), np.array([1.0, 3.0, 2.0, 5.0]))
    assert f.history_peak(0.0, 60.0) == 1.0  # the step [0, 60)
    assert f.history_peak(30.0, 150.0) == 3.0  # overlaps [0, 60), [60, 120), [120, 180)
    assert f.history_peak(120.0, 180.0) == 2.0
    assert f.history_peak(300.0, 900.0) is None  # nothing recorded after 300 s


def test_demand_missed_at_zero_is_unknown_so_the_next_day_stays_up() -> None:
    """A new evening peak arrives while the deployment is at zero and is lost; that evening is recorded as
    unknown, not as idle, so the next day the deployment stays up through it and serves it."""
    def with_new_evening_peak(t: float) -> float:
        evening = 20 <= ((t - T0) % DAY) / 3600 < 20.5
        return 3.0 if t >= T0 + 7 * DAY and evening else office_hours(t)

    decisions = run_day(with_new_evening_peak, days_of_history=7, hours=48)
    per_day = int(DAY / STEP)
    first = [r for h, r, _ in decisions[:per_day] if 20.1 <= h < 20.5]
    second = [r for h, r, _ in decisions[per_day:] if 20.1 <= h < 20.5]
    assert first and max(first) == 0, "at zero, the first evening's peak is not seen"
    assert second and min(second) >= 3, "the next evening it is served"


def test_nights_at_zero_are_quiet_when_the_activator_counts_them() -> None:
    """A spell spent at zero is a gap: without a count, the evening after the first evening and night at
    zero stays up (and so the third night with it); with the activator's count that spell was watched and
    quiet, so every night goes to zero."""
    def nights_at_zero(counted: bool) -> list[bool]:
        decisions = run_day(office_hours, days_of_history=1, hours=72, counted=counted)
        per_day = int(DAY / STEP)
        return [all(r == 0 for h, r, _ in decisions[d * per_day:(d + 1) * per_day] if 2 <= h < 8) for d in range(3)]

    assert nights_at_zero(counted=False) == [True, True, False]
    assert nights_at_zero(counted=True) == [True, True, True]


def test_demand_counted_at_zero_wakes_the_deployment_and_is_remembered() -> None:
    """The new evening peak of the test above, counted by the activator: replicas are asked for the step
    it is counted (rather than the whole peak being lost), and the next evening the deployment is at zero
    until, from that history, its replicas are asked for a cold start before the peak arrives."""
    def with_new_evening_peak(t: float) -> float:
        evening = 20 <= ((t - T0) % DAY) / 3600 < 20.5
        return 3.0 if t >= T0 + 7 * DAY and evening else office_hours(t)

    decisions = run_day(with_new_evening_peak, days_of_history=7, hours=48, counted=True)
    per_day = int(DAY / STEP)
    woke = next((h, r, why) for h, r, why in decisions[:per_day] if h >= 19 and r > 0)
    assert woke[0] == pytest.approx(20 + 1 / 60) and woke[1] == 3, woke
    quiet = [r for h, r, _ in decisions[per_day:] if 18 <= h < 19.9]
    assert quiet and max(quiet) == 0, quiet
    woke = next((h, r, why) for h, r, why in decisions[per_day:] if h >= 19 and r > 0)
    # asked for at 19:58, the 180-s horizon reaching 20:00, ready as the peak arrives after the 120-s cold start
    assert woke[0] == pytest.approx(19 + 58 / 60) and woke[1] == 3, woke
    assert "3 req/s arrived a day ago within the next 180 s" in woke[2], woke[2]
    night = [why for h, r, why in decisions[:per_day] if 22 <= h < 23 and r == 0]
    assert night and all(w.startswith("hold 0: no demand for ") for w in night), night[:1]  # counted, not unseen


def test_with_the_activators_count_a_new_deployment_goes_to_zero_after_its_idle_window() -> None:
    """Without a day of history, zero is unsafe when nothing sees what arrives there (the test above); the
    activator's count sees it, so the first quiet night goes to zero after ``idle_s`` (600 s)."""
    decisions = run_day(office_hours, days_of_history=0, hours=12, counted=True)
    first_zero = next(h for h, r, _ in decisions if r == 0)
    assert first_zero == pytest.approx(11 / 60), first_zero  # 600 s after the first decision (00:01) saw none
    assert all(r == 0 for h, r, _ in decisions if 1 <= h < 8.9)
