"""The backtest benchmark's summary of a large group, and re-printing a saved report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.backtest import main, spread


def _series(slos: list[float], costs: list[float]) -> list[dict]:
    return [{"trace": f"s{i}", "slo": a, "cost_vs_oracle": c} for i, (a, c) in enumerate(zip(slos, costs))]


def test_spread_counts_series_at_each_attainment() -> None:
    line = spread(_series([1.0, 0.985, 0.96, 0.5, 0.995], [1.1, 1.2, 1.3, 1.4, 3.0]))
    assert ">= 99 %: 2, >= 98 %: 3, >= 95 %: 4, >= 90 %: 4" in line
    assert "median 98.50%" in line and "cost median x1.30" in line


def test_a_saved_report_is_printed_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    per_trace = _series([0.999] * 9 + [0.9], [1.2] * 10)
    figures = {"setting": None, "min_slo": 0.9, "mean_slo": 0.99, "at_99_where_reachable": 9,
               "geomean_cost_vs_oracle": 1.2, "per_trace": per_trace}
    group = {"traces": 10, "reachable_99": 10,
             "policies": {n: figures for n in ("foresail", "hpa", "kpa", "apa", "holt-winters", "static", "oracle")}}
    report = {"cold_starts": {"300": {"customers": group}},
              "timing_14_day": {"trace": "t", "steps": 20160, "seconds": 9.5, "per_policy_s": {"foresail": 9.0}}}
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(report))
    assert main(["--report", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "-- customers: 10 traces, 99 % reachable on 10" in out
    assert ">= 99 %: 9, >= 98 %: 9, >= 95 %: 9, >= 90 %: 10" in out
    assert "20160 steps" in out
