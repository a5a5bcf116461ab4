"""Scheduled replica floors (spec.autoscaling.schedules): the windows in local time (daily and hourly),
raised a horizon ahead, and the floor through the operator's decision loop."""

from __future__ import annotations

import datetime as dt
import logging
import time
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from foresail.autoscaler.schedule import scheduled_floor
from foresail_operator.autoscaler import Loop
from foresail_operator.spec import SpecError, parse_spec
from tests.operator.advisory import KEY, decisions

PARIS = ZoneInfo("Europe/Paris")
LEAD = 300.0


def schedules(*items: dict) -> tuple:
    return parse_spec({"model": {"source": "a"}, "autoscaling": {"schedules": list(items)}}).autoscaling.schedules


def at(day: str, hhmm: str, zone: ZoneInfo = PARIS) -> float:
    """Unix time of a local date and time."""
    return dt.datetime.fromisoformat(f"{day}T{hhmm}").replace(tzinfo=zone).timestamp()


WORKDAYS = schedules({"name": "office", "days": ["Mon", "Tue", "Wed", "Thu", "Fri"], "start": "09:00",
                      "end": "18:00", "timeZone": "Europe/Paris", "minReplicas": 4})


@pytest.mark.parametrize("when, floor", [
    (("2026-12-07", "08:00"), None),  # a Monday, an hour before
    (("2026-12-07", "08:56"), 4),  # 240 s before it opens: within the 300-s lead
    (("2026-12-07", "12:00"), 4),
    (("2026-12-07", "17:59"), 4),
    (("2026-12-07", "18:00"), None),  # closed at its end
    (("2026-12-12", "12:00"), None),  # a Saturday
    (("2026-12-14", "08:56"), 4),  # Monday again, after a weekend
])
def test_a_weekday_window_in_local_time(when, floor):
    found = scheduled_floor(WORKDAYS, at(*when), LEAD)
    assert (found.replicas if found else None) == floor


def test_the_reason_says_which_schedule_and_how_far_ahead():
    ahead = scheduled_floor(WORKDAYS, at("2026-12-07", "08:56"), LEAD)
    assert ahead.reason == ("schedule office (09:00-18:00 Europe/Paris Mon,Tue,Wed,Thu,Fri) holds at least 4 "
                            "replicas, 240 s before it opens (the cold start)")
    assert "before it opens" not in scheduled_floor(WORKDAYS, at("2026-12-07", "09:00"), LEAD).reason


def test_a_window_past_midnight_belongs_to_the_day_it_opens():
    nightly = schedules({"name": "batch", "days": ["Fri"], "start": "22:00", "end": "02:00", "minReplicas": 2})
    utc = ZoneInfo("UTC")
    assert scheduled_floor(nightly, at("2026-12-12", "01:00", utc), 0).replicas == 2  # Saturday, 01:00
    assert scheduled_floor(nightly, at("2026-12-12", "02:30", utc), 0) is None
    assert scheduled_floor(nightly, at("2026-12-11", "01:00", utc), 0) is None  # Friday 01:00: Thursday's, not listed


def test_daylight_saving_time_moves_the_window_with_the_clock():
    """Paris is UTC+1 in winter and UTC+2 from 29 March 2026: 09:00 local is 08:00 UTC, then 07:00 UTC."""
    daily = schedules({"start": "09:00", "end": "10:00", "timeZone": "Europe/Paris", "minReplicas": 3})
    utc = ZoneInfo("UTC")
    assert scheduled_floor(daily, at("2026-03-28", "07:30", utc), 0) is None
    assert scheduled_floor(daily, at("2026-03-28", "08:30", utc), 0).replicas == 3
    assert scheduled_floor(daily, at("2026-03-29", "07:30", utc), 0).replicas == 3
    assert scheduled_floor(daily, at("2026-03-29", "08:30", utc), 0) is None


def test_the_highest_open_floor_applies():
    both = schedules({"name": "day", "start": "08:00", "end": "20:00", "minReplicas": 2},
                     {"name": "peak", "start": "12:00", "end": "14:00", "minReplicas": 6})
    utc = ZoneInfo("UTC")
    assert scheduled_floor(both, at("2026-12-07", "10:00", utc), LEAD).replicas == 2
    peak = scheduled_floor(both, at("2026-12-07", "13:00", utc), LEAD)
    assert peak.replicas == 6 and "schedule peak" in peak.reason


HOURLY = schedules({"name": "etl", "days": ["Mon"], "start": "*:55", "end": "*:10", "minReplicas": 6})


@pytest.mark.parametrize("when, floor", [
    (("2026-12-07", "10:45"), None),  # a Monday, 10 min before the 10:55 window
    (("2026-12-07", "10:51"), 6),  # 240 s before it opens: within the 300-s lead
    (("2026-12-07", "11:05"), 6),  # past the hour: it closes at 11:10
    (("2026-12-07", "11:10"), None),
    (("2026-12-07", "14:58"), 6),  # every hour
    (("2026-12-07", "00:05"), None),  # the window that opened at 23:55 belongs to Sunday, not listed
    (("2026-12-08", "00:05"), 6),  # Monday's 23:55 window, past midnight
    (("2026-12-08", "00:55"), None),  # a Tuesday
])
def test_an_hourly_window_opens_every_hour_of_its_days(when, floor):
    found = scheduled_floor(HOURLY, at(*when, ZoneInfo("UTC")), LEAD)
    assert (found.replicas if found else None) == floor


def test_an_hourly_window_keeps_to_its_zone_and_says_so():
    """India is UTC+05:30, so :00 there is :30 UTC."""
    kolkata = schedules({"name": "sync", "start": "*:00", "end": "*:10", "timeZone": "Asia/Kolkata",
                         "minReplicas": 2})
    utc = ZoneInfo("UTC")
    assert scheduled_floor(kolkata, at("2026-12-07", "10:02", utc), 0) is None
    held = scheduled_floor(kolkata, at("2026-12-07", "10:32", utc), 0)
    assert held.replicas == 2 and held.reason == "schedule sync (*:00-*:10 Asia/Kolkata) holds at least 2 replicas"


@pytest.mark.parametrize("item, field", [
    ({"start": "*:55", "end": "18:00", "minReplicas": 1}, r"schedules\[0\]: start and end must both be"),
    ({"start": "*:5", "end": "*:10", "minReplicas": 1}, r"schedules\[0\]\.start and \.end"),
    ({"start": "*:10", "end": "*:10", "minReplicas": 1}, r"schedules\[0\]: start and end are the same"),
    ({"start": "09:00", "end": "09:00", "minReplicas": 1}, r"schedules\[0\]: start and end are the same"),
    ({"start": "9am", "end": "18:00", "minReplicas": 1}, r"schedules\[0\]\.start and \.end"),
    ({"start": "09:00", "end": "18:00", "timeZone": "Europe/Pariss", "minReplicas": 1}, r"schedules\[0\]\.timeZone"),
    ({"start": "09:00", "end": "18:00", "days": ["Funday"], "minReplicas": 1}, r"schedules\[0\]\.days"),
    ({"start": "09:00", "end": "18:00", "minReplicas": 11}, r"schedules\[0\]\.minReplicas"),
])
def test_a_bad_schedule_is_refused_naming_the_field(item, field):
    with pytest.raises(SpecError, match=field):
        schedules(item)


async def test_the_decision_loop_holds_the_floor_of_an_open_window():
    """Through the operator's loop (advisory mode, metrics from FakePrometheus): 1 req/s needs 1 replica,
    the open window holds 5, and the reason says so."""
    now = dt.datetime.fromtimestamp(time.time(), ZoneInfo("UTC"))
    window = {"name": "launch", "start": f"{now - dt.timedelta(hours=1):%H:%M}",
              "end": f"{now + dt.timedelta(hours=1):%H:%M}", "minReplicas": 5}
    base = {"model": {"source": "builtin:tiny"},
            "autoscaling": {"mode": "advisory", "intervalSeconds": 5, "slo": {"capacityPerReplica": 1}}}
    values = {"requests": "1", "running": "0", "waiting": "0"}
    one = {"spec": {"replicas": 1}, "status": {"readyReplicas": 1}}
    _, plain = await decisions(parse_spec(base), one, values=values)
    base["autoscaling"]["schedules"] = [window]
    loop, held = await decisions(parse_spec(base), one, values=values)
    assert plain.replicas == 1
    assert held.replicas == 5 and held.reason.startswith("scale up 1\u21925: schedule launch ("), held.reason
    assert loop.view["fields"]["recommendedReplicas"] == 5


def test_learn_schedules_is_off_unless_asked():
    base = {"model": {"source": "a"}, "autoscaling": {}}
    assert parse_spec(base).autoscaling.learn_schedules is False
    base["autoscaling"]["learnSchedules"] = True
    assert parse_spec(base).autoscaling.learn_schedules is True


async def learned_decision(caplog, learn: bool, max_replicas: int = 10):
    """The loop's decision a minute before a job that came in the same 10 minutes of every hour (6 req/s at
    one req/s per replica) for the two days of history backfilled from Prometheus; and the job's minute."""
    spec = parse_spec({"model": {"source": "builtin:tiny"}, "maxReplicas": max_replicas, "autoscaling": {
        "mode": "advisory", "intervalSeconds": 5, "slo": {"capacityPerReplica": 1}, "learnSchedules": learn}})
    now = time.time()
    opens = (now // 60 + 1) * 60 % 3600  # the job's minute of the hour
    t = np.arange(now // 60 - 48 * 60, now // 60) * 60.0 + 60.0
    loop = Loop(KEY, forecast_step_s=60.0)
    loop.configure(spec, None)
    loop.backfilled = True
    assert loop.policy is not None  # configured
    loop.policy.warm_start(t, np.where((t - 60.0 - opens) % 3600 < 600, 6.0, 1.0))
    caplog.set_level(logging.INFO)
    one = {"spec": {"replicas": 1}, "status": {"readyReplicas": 1}}
    loop, decision = await decisions(spec, one, values={"requests": "1", "running": "0", "waiting": "0"}, loop=loop)
    return loop, decision, f"*:{int(opens // 60):02d}"


@pytest.mark.parametrize("learn", [True, False])
async def test_the_decision_loop_holds_a_learned_window_and_shows_it(learn: bool, caplog):
    """With learnSchedules the loop holds the job's replicas ahead of it, shows the window with its evidence
    in status.learnedSchedules and logs it; without, the forecast alone asks for fewer."""
    loop, decision, minute = await learned_decision(caplog, learn)
    learned = loop.view["fields"]["learnedSchedules"]
    if learn:
        assert [(w["start"], w["minReplicas"]) for w in learned] == [(minute, 6)], learned
        assert learned[0]["name"] == f"hourly-{minute[2:]}" and "(100 %): peak 6 req/s" in learned[0]["evidence"]
        assert "maxReplicas" not in learned[0]["evidence"]
        assert decision.replicas == 6 and f"schedule learned hourly-{minute[2:]}" in decision.reason, decision.reason
        assert any("learned schedules held from now on" in r.getMessage() for r in caplog.records)
    else:
        assert learned is None and decision.replicas < 6 and "learned" not in decision.reason, decision.reason


async def test_a_learned_floor_above_max_replicas_is_shown_as_held(caplog):
    """The status and the log give the floor the policy holds (maxReplicas), and what the window needs."""
    loop, decision, minute = await learned_decision(caplog, True, max_replicas=4)
    learned = loop.view["fields"]["learnedSchedules"]
    assert [(w["start"], w["minReplicas"]) for w in learned] == [(minute, 4)], learned
    assert learned[0]["evidence"].endswith("; it needs 6, held at maxReplicas 4"), learned[0]["evidence"]
    assert decision.replicas == 4, decision.reason
    assert any("at least 4, raised in" in r.getMessage() and "held at maxReplicas 4" in r.getMessage()
               for r in caplog.records)
