"""Finding jobs that recur by the clock (foresail.autoscaler.recurrence) on series built to have them, or not."""

from __future__ import annotations

import numpy as np
import pytest

from foresail.autoscaler.recurrence import as_schedules, find_recurring

STEP = 60.0
MINUTES = np.arange(14 * 1440)  # two weeks of minutes from midnight


def entries(rate: np.ndarray, start_s: float = 0.0, capacity: float = 1.0, **kw) -> list[dict]:
    return [w.entry() for w in find_recurring(rate, STEP, start_s, capacity, **kw)]


def windows(rate: np.ndarray, start_s: float = 0.0, **kw) -> list[tuple[str, str, str]]:
    """(name, start, end) of each entry, at one req/s per replica."""
    return [(e["name"], e["start"], e["end"]) for e in entries(rate, start_s, **kw)]


def replicas(rate: np.ndarray, start_s: float = 0.0) -> list[int]:
    return [e["minReplicas"] for e in entries(rate, start_s)]


def noisy(level: float, seed: int = 0) -> np.ndarray:
    """Poisson arrivals at ``level`` req/s, counted per minute, as rates."""
    return np.random.default_rng(seed).poisson(level * STEP, len(MINUTES)) / STEP


def test_a_job_at_every_hours_start_is_one_hourly_window_not_24_daily_ones():
    rate = noisy(0.5)
    rate[MINUTES % 60 < 10] += 7.0  # 7.5 req/s for the first 10 min of every hour
    found = find_recurring(rate, STEP, 0.0, 1.0)
    assert [w.entry() for w in found] == [{"name": "hourly-00", "start": "*:00", "end": "*:10", "minReplicas": 8}]
    assert found[0].seen >= 0.95 * found[0].periods and "hours" in found[0].evidence()


def test_a_daily_job_on_a_daily_cycle_is_found_at_its_time():
    day = MINUTES % 1440
    rate = noisy(1.0) * (1.5 + np.sin(2 * np.pi * day / 1440))  # a smooth day, 0.5 to 2.5 req/s
    rate[(day >= 2 * 60) & (day < 2 * 60 + 30)] += 20.0  # a job from 02:00 to 02:30
    assert windows(rate) == [("daily-0200", "02:00", "02:30")]
    assert 22 <= replicas(rate)[0] <= 24  # the p90 of the job's peak minute (about 22 req/s), one req/s each


def test_the_evidence_against_a_quiet_median_gives_no_ratio():
    rate = np.zeros(len(MINUTES))
    rate[(MINUTES % 1440 >= 180) & (MINUTES % 1440 < 250)] = 4.0  # only a job, nothing else all day
    (found,) = find_recurring(rate, STEP, 0.0, 1.0)
    assert found.evidence() == "raised in 14 of 14 days (100 %): peak 4 req/s (p90), against the day's median 0 req/s"


def test_a_smooth_daily_cycle_and_plain_noise_are_no_jobs():
    day = MINUTES % 1440
    office = np.clip(np.sin(2 * np.pi * (day - 8 * 60) / 1440) * 3, 0.2, None)  # rises over hours, not minutes
    assert windows(noisy(1.0) * office) == []
    assert windows(noisy(2.0)) == []


def test_a_job_on_half_the_days_is_not_a_habit():
    rate = noisy(1.0)
    for d in range(0, 14, 2):  # every other day
        rate[d * 1440 + 600:d * 1440 + 630] += 20.0
    assert windows(rate) == []
    assert windows(rate, min_share=0.5) == [("daily-1000", "10:00", "10:30")]  # unless asked to take it


def test_too_few_days_are_no_evidence():
    rate = noisy(1.0)[:4 * 1440]
    rate[MINUTES[:4 * 1440] % 1440 == 600] += 20.0
    assert windows(rate) == []
    assert windows(np.tile(rate, 2)) == [("daily-1000", "10:00", "10:01")]  # eight such days are
    eight = np.tile(rate, 2)
    for d in range(4):  # but not when four of them were not collected at the job's time
        eight[d * 1440 + 540:d * 1440 + 660] = np.nan
    assert windows(eight) == []


def test_times_follow_the_clock_of_a_trace_that_starts_mid_day_and_a_window_may_cross_midnight():
    rate = noisy(1.0)
    late = MINUTES % 1440 >= 23 * 60 + 50
    early = MINUTES % 1440 < 20
    rate[late | early] += 20.0  # 23:50 to 00:20
    start = 90 * 60  # the trace starts at 01:30: shift it so its clock keeps the job at 23:50
    assert windows(rate[90:], start_s=start) == [("daily-2350", "23:50", "00:20")]
    assert windows(rate[90:]) == [("daily-2220", "22:20", "22:50")]  # read from midnight, 90 min early


def test_gaps_are_unknown_not_quiet():
    rate = noisy(1.0)
    rate[MINUTES % 1440 // 10 == 60] += 20.0  # 10:00 to 10:10
    rate[3 * 1440:4 * 1440] = np.nan  # a day not collected
    rate[5 * 1440 + 500:5 * 1440 + 700] = np.nan  # and the job's hours of another
    assert windows(rate) == [("daily-1000", "10:00", "10:10")]
    assert 21 <= replicas(rate)[0] <= 23
    assert find_recurring(rate, STEP, 0.0, 1.0)[0].evidence().startswith("raised in 12 of 12 days (100 %)")


@pytest.mark.parametrize("capacity, step", [(0.0, 60.0), (1.0, 0.0), (-1.0, 60.0)])
def test_bad_arguments_are_refused(capacity, step):
    with pytest.raises(ValueError, match="positive"):
        find_recurring(noisy(1.0), step, 0.0, capacity)


def test_a_job_across_the_hour_is_one_hourly_window():
    rate = noisy(0.5)
    rate[(MINUTES % 60 >= 55) | (MINUTES % 60 < 5)] += 7.0  # from :55 to :05 of every hour
    assert windows(rate) == [("hourly-55", "*:55", "*:05")]


@pytest.mark.parametrize("step, lo_s, hi_s, expected", [(5.0, 0.0, 10.0, ("*:00", "*:01")),
                                                        (15.0, 0.0, 30.0, ("*:00", "*:01")),
                                                        (15.0, 45.0, 75.0, ("*:00", "*:02"))])
def test_a_window_of_seconds_opens_and_closes_on_whole_minutes(step, lo_s, hi_s, expected):
    """At forecast steps under a minute a job may last seconds: its window opens at the minute before it and
    closes at the minute after, never at the same minute (which a schedule refuses), so it can be held."""
    t = np.arange(int(2 * 86400 / step)) * step
    rate = np.where((t % 3600 >= lo_s) & (t % 3600 < hi_s), 20.0, 1.0)
    found = find_recurring(rate, step, 0.0, 2.0)
    assert [(w.entry()["start"], w.entry()["end"]) for w in found] == [expected]
    assert [s.name for s in as_schedules(found)] == ["learned hourly-00"]


def test_a_job_on_weekdays_only_is_found_for_those_days():
    """The trace starts on Thursday 1 January 1970 (day 0); the job runs 09:00 to 09:30, Monday to Friday,
    so on 10 of the 14 days: not 80 % of the days, but all the weekdays."""
    rate = noisy(1.0)
    weekday = (MINUTES // 1440 + 3) % 7 < 5
    rate[weekday & (MINUTES % 1440 >= 9 * 60) & (MINUTES % 1440 < 9 * 60 + 30)] += 20.0
    found = find_recurring(rate, STEP, 0.0, 1.0)
    assert [w.name for w in found] == ["weekdays-0900"]
    entry = found[0].entry()
    assert entry["days"] == ["Mon", "Tue", "Wed", "Thu", "Fri"] and (entry["start"], entry["end"]) == ("09:00", "09:30")
    assert found[0].evidence().startswith("raised in 10 of 10 weekdays (100 %)")
    assert windows(rate, start_s=2 * 86400.0) == []  # read as from a Saturday, the job is on 6 of 10 weekdays


def test_a_long_window_holds_its_peak_for_its_first_hour_then_steps_by_the_clock_hour():
    day = MINUTES % 1440
    rate = np.full(len(MINUTES), 0.5)
    rate[(day >= 8 * 60) & (day < 13 * 60)] = 5.0  # a working day from 08:00 to 13:00 at 5 req/s
    rate[(day >= 10 * 60) & (day < 10 * 60 + 30)] = 20.0  # a burst at 10:00 every day
    rate[(day >= 13 * 60) & (day < 13 * 60 + 20)] = 2.0  # and a tail to 13:20, which goes with the hour before
    assert [(e["start"], e["end"], e["minReplicas"]) for e in entries(rate)] == [
        ("08:00", "09:00", 20), ("10:00", "11:00", 20), ("09:00", "10:00", 5), ("11:00", "13:20", 5)]


def test_a_window_of_two_hours_or_less_is_one_floor():
    day = MINUTES % 1440
    rate = np.full(len(MINUTES), 0.5)
    rate[(day >= 8 * 60) & (day < 10 * 60)] = 5.0
    rate[(day >= 9 * 60) & (day < 9 * 60 + 30)] = 20.0
    assert [(e["start"], e["end"], e["minReplicas"]) for e in entries(rate)] == [("08:00", "10:00", 20)]


def test_a_step_a_rounding_error_above_whole_replicas_joins_its_neighbour_at_the_same_replicas():
    day = MINUTES % 1440
    rate = np.full(len(MINUTES), 0.01)
    rate[(day >= 8 * 60) & (day < 10 * 60)] = 0.1 + 0.2  # 0.30000000000000004: three replicas of 0.1, not four
    rate[(day >= 10 * 60) & (day < 12 * 60)] = 0.21  # also three, though 30 % lower
    assert [(e["start"], e["end"], e["minReplicas"]) for e in entries(rate, capacity=0.1)] == [("08:00", "12:00", 3)]
