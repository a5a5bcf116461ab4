"""The one-day benchmark's replay of one series, and its clear error without the archive."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.one_day import main, replay
from foresail.backtest.traces import Trace


def test_a_steady_day_meets_the_slo_at_no_less_than_the_oracles_cost() -> None:
    rng = np.random.default_rng(0)
    trace = Trace("steady/chunk-0", 60.0, rng.poisson(600, 1440).astype(float))
    result = replay((trace, 120.0, "fluid"))
    assert result is not None  # the series can be replayed
    slo, cost, oracle = result
    assert slo >= 0.99 and cost >= 1.0 and oracle == 1.0


def test_with_single_requests_the_oracle_at_full_load_misses_what_foresails_headroom_serves() -> None:
    # 8 requests/s all day in 10-min windows, as ServeGen records them: capacity auto is 1 request/s a replica,
    # so the oracle holds exactly 8 replicas; single requests at random moments of a window bring some
    # minutes more than 480, which queue past the SLO wait
    flat = Trace("flat/chunk-0", 600.0, np.full(144, 4800.0))
    fluid, single = replay((flat, 120.0, "fluid")), replay((flat, 120.0, "requests"))
    assert fluid is not None and single is not None
    assert fluid[2] == 1.0 and single[2] < 0.9
    assert single[0] >= 0.99 and single[1] == pytest.approx(fluid[1], rel=0.01)  # Foresail's headroom serves them


def test_a_series_without_demand_is_left_out() -> None:
    assert replay((Trace("idle/chunk-0", 60.0, np.zeros(1440)), 120.0, "fluid")) is None


def test_a_missing_archive_is_an_error_not_a_crash(tmp_path: Path, capsys) -> None:
    assert main(["--traces", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().out
