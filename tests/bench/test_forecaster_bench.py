"""The forecaster benchmark times the fit, the per-step work and the boosted baseline on a trace of its own."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.forecaster import main


def write_trace(path: Path, days: float, level: float = 600) -> None:
    steps = int(days * 1440)
    rng = np.random.default_rng(0)
    arrivals = rng.poisson(level * (1 + 0.6 * np.sin(2 * np.pi * np.arange(steps) / 1440)))
    path.write_text("time_s,arrivals\n" + "".join(f"{60 * k},{a}\n" for k, a in enumerate(arrivals)))


def test_a_four_day_trace_gets_every_figure_and_the_ratio_to_the_baseline(tmp_path: Path, capsys) -> None:
    trace, out = tmp_path / "four-days.csv", tmp_path / "figures.json"
    write_trace(trace, 4)
    assert main(["--trace", str(trace), "--repeats", "1", "--horizon-min", "30", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["steps"] == 4 * 1440 and figures["horizons"] == 30 and figures["own_model"]
    assert figures["fit_s"] > 0 and figures["boosted_fit_s"] > 0 and figures["boosted_models"] == 6
    assert 0 < figures["fit_peak_mib"] < 1000 and figures["fitted_kib"] > 0
    assert 0 < figures["step_ms_mean"] <= figures["step_ms_p99"] <= figures["step_ms_max"]
    assert figures["refits_in_last_day"] == 4  # every 360 steps of data
    printed = capsys.readouterr().out
    assert "5760 steps of 60 s (4.0 days)" in printed and "faster than the boosted baseline" in printed


def test_a_trace_of_three_days_or_less_or_without_demand_is_refused(tmp_path: Path, capsys) -> None:
    trace = tmp_path / "short.csv"
    write_trace(trace, 2)
    assert main(["--trace", str(trace), "--repeats", "1"]) == 2
    assert capsys.readouterr().out == f"error: {trace}: 2880 steps of 60 s; the benchmark needs more than 3 days\n"
    write_trace(trace, 4, level=0)
    assert main(["--trace", str(trace), "--repeats", "1"]) == 2
    assert capsys.readouterr().out == f"error: {trace}: no demand in any step; there is nothing to learn\n"


def test_a_missing_or_unreadable_trace_is_an_error_that_names_it(tmp_path: Path, capsys) -> None:
    assert main(["--trace", str(tmp_path / "missing.csv")]) == 2
    assert capsys.readouterr().out == f"error: {tmp_path / 'missing.csv'}: no such file\n"
    (tmp_path / "empty.csv").write_text("time_s,arrivals\n")
    assert main(["--trace", str(tmp_path / "empty.csv")]) == 2
    assert capsys.readouterr().out.startswith(f"error: {tmp_path / 'empty.csv'}: ")
