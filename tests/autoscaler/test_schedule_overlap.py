"""Overlapping schedules: the highest floor among the windows open holds, whatever their order."""

import datetime as dt

import pytest

from foresail.autoscaler.schedule import parse_schedules, scheduled_floor


@pytest.mark.parametrize("order", [1, -1])
def test_the_highest_floor_of_overlapping_windows_holds(order):
    items = [{"name": "day", "start": "08:00", "end": "20:00", "minReplicas": 5},
             {"name": "lunch", "start": "12:00", "end": "14:00", "minReplicas": 2}]
    noon = dt.datetime(2026, 3, 4, 12, 30, tzinfo=dt.timezone.utc).timestamp()
    floor = scheduled_floor(parse_schedules(items[::order]), noon, 135.0)
    assert floor is not None and floor.replicas == 5 and floor.reason.startswith("schedule day ")
