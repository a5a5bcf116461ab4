"""The scale-to-zero benchmark's runs on a series whose answer is known, and its clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import bench.scale_to_zero
from bench.scale_to_zero import compare, load_series, main
from foresail.backtest.traces import Trace, TraceError

DAY_MIN = 1440


def test_office_hours_go_to_zero_at_night_and_only_the_activator_keeps_every_night_at_zero() -> None:
    """Four days of 09:00-17:00 demand and a burst at 03:00 on the last night. Scale to zero saves the
    nights; with the activator's count every night is watched and quiet, so the last one is at zero too
    and the burst wakes it the minute it arrives; without it the night before was a gap, so that night
    stays up."""
    minute = np.arange(4 * DAY_MIN)
    demand = np.where((minute % DAY_MIN >= 540) & (minute % DAY_MIN < 1020), 60.0, 0.0)
    burst = 3 * DAY_MIN + 180  # 03:00 on the fourth day
    demand[burst:burst + 10] = 60.0
    runs = compare(Trace("office/chunk-0", 60.0, demand))
    assert set(runs) == {"activator", "no_activator", "kpa", "always_up"}
    assert runs["activator"].replica_hours < runs["always_up"].replica_hours
    assert runs["always_up"].ready.min() >= 1 and runs["kpa"].ready.min() == 0
    before = slice(burst - 10, burst)
    assert runs["activator"].ready[before].max() == 0 and runs["activator"].provisioned[burst] > 0
    assert runs["no_activator"].ready[before].min() == 1


def test_a_series_not_in_the_archive_is_named(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no such file"):
        load_series(tmp_path, ("m-large/chunk-0",))


def test_knative_reaching_foresails_slo_at_no_replica_hours_has_reached_it(monkeypatch, capsys) -> None:
    minute = np.arange(DAY_MIN)
    office = Trace("office/chunk-0", 60.0, np.where((minute >= 540) & (minute < 1020), 60.0, 0.0))
    monkeypatch.setattr(bench.scale_to_zero, "load_series", lambda *_: [office])
    monkeypatch.setattr(bench.scale_to_zero, "kpa_hours_at", lambda *_: 0.0)
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "0 h (xinf)" in out and "not reached" not in out
    assert "Knative reaches it on 1 of 1;" in out
