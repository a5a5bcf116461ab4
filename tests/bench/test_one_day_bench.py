"""The one-day benchmark's replay of one series, and its clear error without the archive."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.one_day import main, replay
from foresail.backtest.traces import Trace


def test_a_steady_day_meets_the_slo_at_no_less_than_the_oracles_cost() -> None:
    rng = np.random.default_rng(0)
    result = replay((Trace("steady/chunk-0", 60.0, rng.poisson(600, 1440).astype(float)), 120.0))
    assert result is not None  # the series can be replayed
    slo, cost = result
    assert slo >= 0.99 and cost >= 1.0


def test_a_series_without_demand_is_left_out() -> None:
    assert replay((Trace("idle/chunk-0", 60.0, np.zeros(1440)), 120.0)) is None


def test_a_missing_archive_is_an_error_not_a_crash(tmp_path: Path, capsys) -> None:
    assert main(["--traces", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().out
