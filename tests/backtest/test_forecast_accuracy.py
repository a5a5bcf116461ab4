"""`accuracy.evaluate` and `foresail forecast`: scores on the forecaster's steps wherever the trace starts,
horizons past the model's steps forecast and noted, references scored without a foresail forecast, and no row
of NaN where nothing could be scored."""

import math
from dataclasses import replace

import numpy as np

from foresail.backtest.accuracy import evaluate
from foresail.backtest.traces import Trace
from foresail.cli import main

T0 = 1_700_000_040.0  # on a minute


def two_days(seed: int = 1) -> Trace:
    """Two days of per-minute arrivals: a daily cycle and a 30-min square wave."""
    rng = np.random.default_rng(seed)
    k = np.arange(2 * 1440)
    lam = 20 + 15 * np.sin(2 * np.pi * k / 1440) + 10 * (k // 30 % 2)
    return Trace("synthetic", 60.0, rng.poisson(lam * 60).astype(float), start_s=T0)


def test_the_scores_do_not_depend_on_where_in_a_step_the_trace_starts():
    """A generic CSV whose first time_s is 30 s past the minute scores as one that starts on it."""
    trace = two_days()
    on, off = (evaluate(replace(trace, start_s=start), (60.0, 600.0)) for start in (T0, T0 + 30))
    for a, b in zip(on, off, strict=True):
        assert a.n == b.n > 0
        assert a.wape == b.wape and a.coverage == b.coverage and a.window_coverage == b.window_coverage


def test_a_horizon_past_the_model_s_steps_is_scored_and_noted():
    notes: list[str] = []
    (score,) = evaluate(two_days(), (5400.0,), note=notes.append)
    assert score.n > 0 and all(math.isfinite(score.wape[m]) for m in score.wape)
    assert math.isfinite(score.coverage[0.9]) and math.isfinite(score.window_coverage[0.9])
    assert notes == ["synthetic: the forecaster's model forecasts 60 steps ahead (+60 min); at horizon(s) 90 min "
                     "its forecast is the one for +60 min"]


def test_the_references_are_scored_where_the_forecaster_forecast_none_of_the_steps():
    """Data every 30 minutes, gaps between: the forecaster needs 3 of the last 60 steps, and never has them."""
    trace = two_days()
    trace = replace(trace, gaps=np.arange(len(trace.arrivals)) % 30 != 0)
    notes: list[str] = []
    (score,) = evaluate(trace, (1800.0,), note=notes.append)
    assert score.n == 1440 // 30 - 1
    assert math.isnan(score.wape["foresail"]) and math.isnan(score.coverage[0.9])
    assert math.isfinite(score.wape["persistence"]) and math.isfinite(score.wape["seasonal-naive"])
    assert notes == [f"synthetic: at 30 min the forecaster was not ready at any of the {score.n} steps scored (it "
                     "needs a few of the last 60 steps to have data): the references are scored alone"]


def test_forecast_says_nothing_was_scored_where_every_step_to_score_is_a_gap(tmp_path, capsys):
    """Rows for the first day, one at the end: the day between is a collection gap."""
    p = tmp_path / "halfgap.csv"
    rows = [f"{T0 + 60 * i:.0f},{300 + i % 7}\n" for i in range(1440)] + [f"{T0 + 60 * 2879:.0f},300\n"]
    p.write_text("time_s,arrivals\n" + "".join(rows))
    assert main(["forecast", "--trace", str(p), "--horizon", "10", "--horizon", "30", "--no-progress"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.lstrip().startswith(("10m", "30m"))]
    assert len(lines) == 2 and all("n=0: nothing scored" in line for line in lines)
    assert "nan" not in out
