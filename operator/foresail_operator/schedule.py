"""Scheduled replica floors: windows of the week in which a deployment keeps at least N replicas.

Demand a team knows is coming (business hours, a nightly batch, a launch at 9 on Monday) is not always
in the history the forecaster learns from: a customer switching on is the one thing its past does not
foretell. A schedule says it. Its floor is raised a horizon (the cold start plus one interval) before
the window opens, so that the replicas are ready when it does, and dropped when it closes, where the
forecast and the reactive floor decide again. KEDA's cron scaler, by contrast, starts the replicas at
the window's start, a cold start late.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable, Iterator, NamedTuple
from zoneinfo import ZoneInfo

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class Schedule:
    """Every listed weekday, from `start` to `end` local time (past midnight when `end` <= `start`)."""

    name: str
    start: dt.time
    end: dt.time
    min_replicas: int
    zone: ZoneInfo
    days: tuple[int, ...] = tuple(range(7))  # Monday is 0

    def windows(self, since: float, until: float) -> Iterator[tuple[float, float]]:
        """(open, close) as Unix times of the windows that start on the local days from the day before
        `since` to the day of `until` (the day before: a window past midnight may still be open)."""
        day = dt.datetime.fromtimestamp(since, self.zone).date() - dt.timedelta(days=1)
        last = dt.datetime.fromtimestamp(until, self.zone).date()
        while day <= last:
            if day.weekday() in self.days:
                opens = dt.datetime.combine(day, self.start, self.zone)
                closes = dt.datetime.combine(day + dt.timedelta(days=int(self.end <= self.start)), self.end, self.zone)
                yield opens.timestamp(), closes.timestamp()
            day += dt.timedelta(days=1)

    def describe(self) -> str:
        """The window in words, as the spec gives it."""
        days = "" if len(self.days) == 7 else " " + ",".join(DAYS[d] for d in self.days)
        return f"{self.start:%H:%M}-{self.end:%H:%M} {self.zone.key}{days}"


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
                best = Floor(schedule.min_replicas, f"schedule {schedule.name} ({schedule.describe()}) holds at "
                                                    f"least {schedule.min_replicas} replicas{when}")
    return best
