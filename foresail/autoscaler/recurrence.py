"""Jobs that recur by the clock in a demand history, as ``autoscaling.schedules`` entries to review.

A forecaster learns levels and shapes, not a customer's cron: demand that jumps at the start of every
hour, or at 02:00 every day, waits a cold start for its replicas each time. Where a history shows such a
jump at the same minute of the hour (or time of day) in most hours (days, or weekdays), a schedule can
hold the replicas a horizon before it comes. This module finds those windows; ``foresail schedules`` prints them
as YAML with the evidence for each, for a person to check before applying them, and a policy with
``learn_schedules`` (``autoscaling.learnSchedules``) looks for them in its own history every hour.

A phase of the period (one step of the hour or of the day) belongs to a job when, in at least
``min_share`` of the periods, its demand is at least ``min_ratio`` times the period's median and
needs at least one replica more. Consecutive such phases form a window; one is kept only where demand
jumps into it (its first step at least ``min_ratio`` times the 10 minutes before, in the median period),
since a slow rise is the forecaster's to follow, and where its first step was seen (not in a gap) in at
least ``MIN_PERIODS`` periods. Its floor serves the 90th percentile of the window's peak
over the periods; a window longer than two hours holds that for its first hour (to a clock hour), then
steps by the clock hour, each hour's floor serving the 90th percentile of its own peak. Hourly windows are
looked for first and left out of the daily search, daily ones out of the weekday (Monday to Friday) search.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from foresail.autoscaler.schedule import Schedule, parse_schedules

PERIODS_S = {"hour": 3600, "day": 86400, "weekday": 86400}  # searched in this order
MIN_PERIODS = {"hour": 24, "day": 5, "weekday": 5}  # too few periods are no evidence of a habit
WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri"]
LOOKBACK_S = 600.0  # what "before the window" means for the jump into it
MAX_WINDOWS = 16  # the CRD's limit on autoscaling.schedules
STAIR_S = 3600.0  # a long window's floor steps by the clock hour


@dataclass(frozen=True)
class Recurring:
    """A window of the hour or of the day in which demand recurred, and the evidence."""

    period: str  # "hour" or "day"
    opens_s: float  # from the period's start (UTC)
    closes_s: float
    replicas: int  # the floor that serves the window's p90 peak (of its hour, in a long window's steps)
    seen: int  # periods in which its first phase was raised
    periods: int  # periods in which it was seen at all (not in a gap)
    peak: float  # the window's (or its step's) peak demand, p90 over the periods (units/s)
    median: float  # the periods' median demand (units/s), median over the periods

    def entry(self) -> dict:
        """The ``autoscaling.schedules`` entry."""
        days = {"days": WEEKDAYS} if self.period == "weekday" else {}
        opens, closes = self._minutes()
        return {"name": self.name, **days, "start": self._clock(opens), "end": self._clock(closes),
                "minReplicas": self.replicas}

    @property
    def name(self) -> str:
        """``hourly-00``, ``daily-0200`` or ``weekdays-0900``: the period and the opening minute."""
        if self.period == "hour":
            return f"hourly-{self._clock(self._minutes()[0])[2:]}"
        return f"{'daily' if self.period == 'day' else 'weekdays'}-{self._clock(self._minutes()[0]).replace(':', '')}"

    def describe(self, unit: str = "req/s") -> str:
        """The window, its floor and the evidence, in one line."""
        entry = self.entry()
        return f"{self.name} {entry['start']}-{entry['end']}: at least {self.replicas}, {self.evidence(unit)}"

    def evidence(self, unit: str = "req/s") -> str:
        """One line on why the window was found."""
        times = f"{self.peak / self.median:.0f}x " if self.median > 0 else "against "
        return (f"raised in {self.seen} of {self.periods} {self.period}s ({100 * self.seen / self.periods:.0f} %): "
                f"peak {self.peak:.3g} {unit} (p90), {times}the {self.period}'s median {self.median:.3g} {unit}")

    def _minutes(self) -> tuple[int, int]:
        """The opening minute of the period (rounded down) and the closing one (rounded up, and a minute after
        the opening at least): a window found at a step under a minute is never empty on the clock."""
        per = PERIODS_S[self.period] // 60
        opens, closes = math.floor(self.opens_s / 60.0 + 1e-9) % per, math.ceil(self.closes_s / 60.0 - 1e-9) % per
        return opens, closes + (closes == opens)

    def _clock(self, minute: int) -> str:
        """The clock of ``minute`` from the period's start: ``*:05`` in the hour, ``02:00`` in the day."""
        minutes = minute % (PERIODS_S[self.period] // 60)
        return f"*:{minutes:02d}" if self.period == "hour" else f"{minutes // 60:02d}:{minutes % 60:02d}"


def find_recurring(rate: np.ndarray, step_s: float, start_s: float, capacity: float, min_share: float = 0.8,
                   min_ratio: float = 2.0) -> list[Recurring]:
    """Windows of the hour, then of the day, then of the weekdays (Monday to Friday), in which ``rate``
    (units/s per step, NaN where unknown) recurred; ``start_s`` is the first step's time (Unix, or from the
    trace's day-0 midnight, UTC). Each search leaves out the phases of the windows found before it."""
    if not capacity > 0 or not step_s > 0:
        raise ValueError("capacity and step must be positive")
    rate = np.asarray(rate, float)
    found: list[Recurring] = []
    for period, period_s in PERIODS_S.items():
        taken = np.zeros(max(int(round(period_s / step_s)), 1), bool)
        for window in found:  # an hourly window recurs in every hour of the day: not a daily one
            own_s = PERIODS_S[window.period]
            steps = int(math.ceil(((window.closes_s - window.opens_s) % own_s) / step_s))
            for h in np.arange(0, period_s, own_s):
                taken[(int((h + window.opens_s) // step_s) + np.arange(steps)) % len(taken)] = True
        with warnings.catch_warnings():  # a phase or a period all in gaps is unknown: NaN, left out
            warnings.simplefilter("ignore", RuntimeWarning)
            found += _windows(rate, step_s, start_s, capacity, period, min_share, min_ratio, taken)
    return sorted(found, key=lambda w: -w.peak)[:MAX_WINDOWS]


def step_misfit(step_s: float, period: str) -> str | None:
    """Why ``find_recurring`` cannot search ``period`` ("hour", "day" or "weekday") at steps of ``step_s``, or
    None where it can: the steps must divide the period, two of them at least."""
    period_s = PERIODS_S[period]
    per = max(int(round(period_s / step_s)), 1)
    if per >= 2 and math.isclose(per * step_s, period_s):
        return None
    noun = "hour" if period == "hour" else "day"
    if step_s >= period_s or math.isclose(step_s, period_s):
        return f"a step of {step_s:g} s is not shorter than the {noun}"
    return f"a step of {step_s:g} s does not divide the {noun}"


def not_searched(rate: np.ndarray, step_s: float, start_s: float) -> dict[str, str]:
    """Why ``find_recurring(rate, step_s, start_s, ...)`` searches no window of a period, by period (those it
    searches left out): the step does not fit it (``step_misfit``), or too few periods were seen (``_periods``)."""
    rate = np.asarray(rate, float)
    return {period: why for period in PERIODS_S if (why := _periods(rate, step_s, start_s, period)[1]) is not None}


def as_schedules(found: Iterable[Recurring]) -> tuple[Schedule, ...]:
    """Found windows as scheduled floors (UTC), each named ``learned <name>``."""
    return parse_schedules([{**w.entry(), "name": f"learned {w.name}"} for w in found], "learned schedules")


def _periods(rate: np.ndarray, step_s: float, start_s: float, period: str) -> tuple[np.ndarray | None, str | None]:
    """The history cut into whole periods, a row each (those all in gaps, and weekends for the weekdays, left
    out); or None and why the period cannot be searched: the step does not fit it, or fewer than MIN_PERIODS."""
    misfit = step_misfit(step_s, period)
    if misfit is not None:
        return None, misfit
    per = int(round(PERIODS_S[period] / step_s))
    first = (-int(round(start_s / step_s))) % per  # the first step at a period's start
    n = max((len(rate) - first) // per, 0)
    m = rate[first:first + n * per].reshape(n, per)
    if period == "weekday":  # 1 January 1970, day 0, was a Thursday (3, counting Monday as 0)
        m = m[(np.floor((start_s + first * step_s) / 86400 + np.arange(n)) + 3) % 7 < 5]
    m = m[~np.isnan(m).all(axis=1)]  # periods in a gap are unknown; quiet ones count against a window
    if len(m) < MIN_PERIODS[period]:
        return None, f"only {len(m)} {period}{'s' if len(m) != 1 else ''} seen, {MIN_PERIODS[period]} needed"
    return m, None


def _windows(rate: np.ndarray, step_s: float, start_s: float, capacity: float, period: str, min_share: float,
             min_ratio: float, taken: np.ndarray) -> list[Recurring]:
    """The windows of one period; ``taken`` marks phases already held by a shorter period's windows."""
    period_s = PERIODS_S[period]
    per = len(taken)
    m, _ = _periods(rate, step_s, start_s, period)
    if m is None:
        return []
    median = np.nanmedian(m, axis=1, keepdims=True)
    raised = (m >= min_ratio * median) & (m >= median + capacity)
    share = np.nanmean(np.where(np.isnan(m), np.nan, raised), axis=0)  # of the periods that saw the phase
    job = (share >= min_share) & ~taken
    back = max(int(round(LOOKBACK_S / step_s)), 1)
    out = []
    for lo, hi in _runs(job):
        idx = np.arange(lo, hi) % per
        before = np.arange(lo - back, lo) % per
        jump = np.nanmedian(m[:, idx[0]] / np.maximum(np.nanmean(m[:, before], axis=1), 1e-9))
        if not jump >= min_ratio:
            continue
        evidence = (int(raised[:, idx[0]].sum()), int((~np.isnan(m[:, idx[0]])).sum()))
        if evidence[1] < MIN_PERIODS[period]:  # periods partly in a gap count only where they saw the jump
            continue
        for a, b, peak in _stairs(m, lo, hi, step_s, capacity):
            out.append(Recurring(period, a * step_s % period_s, b * step_s % period_s, _replicas(peak, capacity),
                                 *evidence, peak, float(np.nanmedian(median))))
    return out


def _replicas(peak: float, capacity: float) -> int:
    """The replicas that serve ``peak``; a rounding error above a whole number of replicas is not one more."""
    return math.ceil(peak / capacity - 1e-9)


def _p90_peak(m: np.ndarray, lo: int, hi: int) -> float:
    """The 90th percentile over the periods (rows) of the peak of phases lo to hi."""
    return float(np.nanquantile(np.nanmax(m[:, np.arange(lo, hi) % m.shape[1]], axis=1), 0.9))


def _stairs(m: np.ndarray, lo: int, hi: int, step_s: float, capacity: float) -> list[tuple[int, int, float]]:
    """A window as (start, stop, p90 peak) pieces: its first hour or more (to a clock hour) holds the whole
    window's peak, for the jump; each clock hour after holds its own (a last part-hour goes with the one before),
    neighbours within 25 % or at the same replicas joined."""
    hour = int(round(STAIR_S / step_s))
    whole = _p90_peak(m, lo, hi)
    if hour < 1 or not math.isclose(hour * step_s, STAIR_S) or hi - lo <= 2 * hour:
        return [(lo, hi, whole)]
    cuts = [c for c in range(lo + hour, hi) if c % hour == 0]
    if hi - cuts[-1] < hour:  # a last part-hour goes with the hour before it: a job's tail, not a new level
        cuts.pop()
    bounds = [lo, *cuts, hi]
    pieces = [(bounds[0], bounds[1], whole)]
    pieces += [(a, b, _p90_peak(m, a, b)) for a, b in zip(bounds[1:-1], bounds[2:], strict=True)]
    joined = [pieces[0]]
    for a, b, peak in pieces[1:]:
        was = joined[-1][2]
        if max(was, peak) <= 1.25 * min(was, peak) or _replicas(was, capacity) == _replicas(peak, capacity):
            joined[-1] = (joined[-1][0], b, max(was, peak))
        else:
            joined.append((a, b, peak))
    return joined


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in a cyclic array; a run across the end has stop > len."""
    if flags.all() or not flags.any():
        return []
    shift = int(np.argmin(flags))  # start from a False so no run is cut by the array's end
    rolled = np.roll(flags, -shift).astype(int)
    edges = np.diff(np.r_[0, rolled, 0])
    return [(int(a + shift), int(b + shift)) for a, b in zip(np.nonzero(edges == 1)[0], np.nonzero(edges == -1)[0],
                                                                     strict=True)]
