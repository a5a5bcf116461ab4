"""A schedule's timeZone that the CRD's pattern lets through but the tz database does not hold as a zone: a
folder of it (America, Etc, America/Argentina) is refused like a misspelt zone, as InvalidSpec naming the field,
not raised as an OSError that leaves the LLMDeployment without a status."""

from __future__ import annotations

import pytest

from foresail.autoscaler.schedule import parse_schedules
from foresail_operator.spec import SpecError, parse_spec


def spec(zone: str) -> dict:
    return {"model": {"source": "a"}, "autoscaling": {"schedules": [
        {"start": "09:00", "end": "18:00", "minReplicas": 2, "timeZone": zone}]}}


@pytest.mark.parametrize("zone", ["America", "Etc", "America/Argentina", "Europe/Pariss", "zone.tab"])
def test_a_time_zone_that_is_no_zone_is_an_invalid_spec_naming_the_field(zone: str) -> None:
    with pytest.raises(SpecError, match=rf"^spec\.autoscaling\.schedules\[0\]\.timeZone: unknown time zone '{zone}'"):
        parse_spec(spec(zone))


def test_the_zones_inside_those_folders_are_taken() -> None:
    (schedule,) = parse_schedules(spec("America/Argentina/Buenos_Aires")["autoscaling"]["schedules"])
    assert str(schedule.zone) == "America/Argentina/Buenos_Aires"
