"""Scheduled replica floors: windows of the week (or of every hour) in which a deployment keeps at least
N replicas.

Demand a team knows is coming (business hours, a nightly batch, a launch at 9 on Monday) is not always
in the history the forecaster learns from: a customer switching on is the one thing its past does not
foretell. A schedule says it. Its floor is raised a horizon (the cold start plus one interval) before
the window opens, so that the replicas are ready when it does, and dropped when it closes, where the
forecast and the reactive floor decide again. KEDA's cron scaler, by contrast, starts the replicas at
the window's start, a cold start late.

The policy applies the floor (``PolicyConfig.schedules``), so the operator and the backtester
(``foresail backtest --schedule``) hold the same replicas; ``parse_schedules`` reads the entries of
``spec.autoscaling.schedules`` for both.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class Schedule:
    """Every listed weekday, from `start` to `end` local time (past midnight when `end` <= `start`); when
    `hourly`, every hour of those days from `start`'s minute to `end`'s (past the hour when `end` <= `start`)."""

    name: str
    start: dt.time
    end: dt.time
    min_replicas: int
    zone: ZoneInfo
    days: tuple[int, ...] = tuple(range(7))  # Monday is 0
    hourly: bool = False

    def windows(self, since: float, until: float) -> Iterator[tuple[float, float]]:
        """(open, close) as Unix times of the windows that start from a day (an hour, when hourly) before
        `since` to `until` (a window past midnight, or past the hour, may still be open)."""
        if self.hourly:
            yield from self._hourly_windows(since, until)
            return
        day = dt.datetime.fromtimestamp(since, self.zone).date() - dt.timedelta(days=1)
        last = dt.datetime.fromtimestamp(until, self.zone).date()
        while day <= last:
            if day.weekday() in self.days:
                opens = dt.datetime.combine(day, self.start, self.zone)
                closes = dt.datetime.combine(day + dt.timedelta(days=int(self.end <= self.start)), self.end, self.zone)
                yield opens.timestamp(), closes.timestamp()
            day += dt.timedelta(days=1)

    def _hourly_windows(self, since: float, until: float) -> Iterator[tuple[float, float]]:
        """The hourly windows from the hour before `since` to `until`, on the listed local days."""
        length_s = 60.0 * ((self.end.minute - self.start.minute) % 60)
        opens = dt.datetime.fromtimestamp(since - 3600, self.zone).replace(minute=self.start.minute, second=0,
                                                                           microsecond=0).timestamp()
        while opens <= until:
            if dt.datetime.fromtimestamp(opens, self.zone).weekday() in self.days:
                yield opens, opens + length_s
            opens += 3600

    def describe(self) -> str:
        """The window in words, as the spec gives it."""
        days = "" if len(self.days) == 7 else " " + ",".join(DAYS[d] for d in self.days)
        hours = f"*:{self.start:%M}-*:{self.end:%M}" if self.hourly else f"{self.start:%H:%M}-{self.end:%H:%M}"
        return f"{hours} {self.zone.key}{days}"


class Floor(NamedTuple):
    """The replicas a schedule holds now, and why."""

    replicas: int
    reason: str


def scheduled_floor(schedules: Iterable[Schedule], now: float, lead_s: float) -> Floor | None:
    """The highest floor among the windows open at `now` or opening within `lead_s`; None when none is."""
    best: Floor | None = None
    for schedule in schedules:
        for opens, closes in schedule.windows(now, now + lead_s):
            if opens <= now + lead_s and closes > now and (best is None or schedule.min_replicas > best.replicas):
                when = f", {opens - now:.0f} s before it opens (the cold start)" if opens > now else ""
                n = schedule.min_replicas
                best = Floor(n, f"schedule {schedule.name} ({schedule.describe()}) holds at least {n} "
                                f"replica{'s' if n != 1 else ''}{when}")
    return best


def parse_schedules(items: Iterable[Mapping[str, Any]],
                    where: str = "spec.autoscaling.schedules") -> tuple[Schedule, ...]:
    """The entries of ``spec.autoscaling.schedules``; ValueError naming the field of a bad one."""
    return tuple(_parse(f"{where}[{i}]", f"#{i}", item) for i, item in enumerate(items))


def _parse(where: str, default_name: str, item: Mapping[str, Any]) -> Schedule:
    """One entry; ``where`` names it in errors."""
    if not isinstance(item, Mapping):
        raise ValueError(f"{where} must be a mapping with start, end and minReplicas")
    try:
        (start, hourly), (end, end_hourly) = _time_of_day(item["start"]), _time_of_day(item["end"])
    except (KeyError, ValueError):
        raise ValueError(f"{where}.start and .end must be times of day such as 09:00 and 18:00, "
                         "or minutes of every hour such as *:55 and *:10") from None
    if hourly != end_hourly:
        raise ValueError(f"{where}: start and end must both be times of day (09:00) or both of every hour (*:55)")
    if start == end:
        raise ValueError(f"{where}: start and end are the same time (a window past midnight ends the next day)")
    zone = str(item.get("timeZone", "UTC"))
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, OSError, ValueError):  # OSError: a folder of the tz database (America)
        raise ValueError(f"{where}.timeZone: unknown time zone {zone!r} (an IANA name such as Europe/Paris)") from None
    days = item.get("days") or DAYS
    if not isinstance(days, (list, tuple)) or not all(d in DAYS for d in days):
        raise ValueError(f"{where}.days must name days as {', '.join(DAYS)}")
    try:
        replicas = int(item.get("minReplicas", 1))
    except (TypeError, ValueError):
        raise ValueError(f"{where}.minReplicas must be a whole number of replicas") from None
    if replicas < 0:
        raise ValueError(f"{where}.minReplicas must not be negative")
    return Schedule(name=str(item.get("name") or default_name), start=start, end=end, zone=tz,
                    min_replicas=replicas, days=tuple(sorted({DAYS.index(d) for d in days})), hourly=hourly)


def _time_of_day(value: object) -> tuple[dt.time, bool]:
    """``HH:MM`` as a time of day, or ``*:MM`` as a minute of every hour (True); ValueError otherwise."""
    text = str(value)
    if text.startswith("*:"):
        return dt.time.fromisoformat(f"00:{text[2:]}"), True
    return dt.time.fromisoformat(text), False
