"""The predictability benchmark's measurements on series whose answer is known."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bench.predictability import (
    change_autocorrelation,
    change_model,
    foretold,
    learned_lag_recurrence,
    main,
    switch_on_recurrence,
)


def test_alternating_changes_correlate_negatively_and_a_gap_is_left_out() -> None:
    y = np.tile([0.0, 1.0], 50)
    assert change_autocorrelation(y) == pytest.approx(-1.0)
    spiked, gaps = y.copy(), np.zeros(len(y), bool)
    spiked[40], gaps[40] = 1e6, True
    assert change_autocorrelation(spiked, gaps) == pytest.approx(-1.0)


def test_a_random_walk_has_uncorrelated_changes_that_no_model_explains() -> None:
    rng = np.random.default_rng(0)
    walk = 1000.0 + np.cumsum(rng.normal(0.0, 1.0, 14 * 144))
    assert abs(change_autocorrelation(walk)) < 0.1
    r2, wape, persistence = change_model(walk, 3)
    assert r2 < 0.05
    assert wape == pytest.approx(persistence, rel=0.05)


def test_a_daily_pattern_is_explained_and_beats_persistence() -> None:
    t = np.arange(14 * 144)
    rng = np.random.default_rng(1)
    y = 100.0 + 50.0 * np.sin(2 * np.pi * t / 144) + rng.normal(0.0, 0.5, len(t))
    r2, wape, persistence = change_model(y, 6)
    assert r2 > 0.9
    assert wape < 0.5 * persistence
    gaps = np.zeros(len(y), bool)
    y[1500], gaps[1500] = 1e6, True  # a gap in the scored half, holding garbage
    assert change_model(y, 6, gaps)[0] > 0.9


def test_change_model_needs_a_day_and_two_halves() -> None:
    with pytest.raises(ValueError, match="too short"):
        change_model(np.ones(144), 1)


def test_recurrence_counts_the_switch_on_demand_a_lag_earlier_foretold() -> None:
    # Switch-ons at steps 2, 6 and 11 (5 each); the one at 2 has no step 4 earlier and is left out.
    # Step 6: step 2 had 5 >= 0.8 x 5. Step 11: step 7 had 0, but step 6, within one of it, had 5.
    d = np.array([0, 0, 5, 0, 0, 0, 5, 0, 0, 0, 0, 5], float)
    assert switch_on_recurrence(d, lag=4, k=0, frac=0.8) == pytest.approx(0.5)
    assert switch_on_recurrence(d, lag=4, k=1, frac=0.8) == pytest.approx(1.0)
    assert math.isnan(switch_on_recurrence(np.full(12, 3.0), lag=4, k=1, frac=0.8))  # no switch-on to judge


def test_recurrence_scores_only_the_switch_ons_in_range() -> None:
    d = np.array([0, 0, 5, 0, 0, 0, 5, 0, 0, 0, 0, 5], float)
    assert switch_on_recurrence(d, lag=4, k=0, frac=0.8, start=8) == 0.0  # only step 11, which step 7 did not foretell
    assert switch_on_recurrence(d, lag=4, k=0, frac=0.8, stop=8) == 1.0  # only step 6


def test_the_learned_lag_is_the_period_of_a_periodic_series_and_foretells_its_second_half() -> None:
    d = np.zeros(600)
    d[10::30] = 5.0  # switch-ons every 30 steps
    assert learned_lag_recurrence(d, k=0, frac=0.8, max_lag=100) == (30, pytest.approx(1.0))
    lag, share = learned_lag_recurrence(d, k=1, frac=0.8, max_lag=100)
    assert lag in (29, 30, 31) and share == pytest.approx(1.0)  # a window of +-1 step around the lag
    rng = np.random.default_rng(2)
    noise = np.where(rng.random(600) < 0.05, 5.0, 0.0)  # switch-ons at random
    assert learned_lag_recurrence(noise, k=0, frac=0.8, max_lag=100)[1] < 0.5


def test_bottom_up_picks_a_day_earlier_for_a_daily_series_and_beats_persistence_on_the_sum() -> None:
    """A customer switching on at the same time every day and one on a random walk: the first is
    forecast by a seasonal rule, the second as now, and the sum's WAPE is below persistence's; two random
    walks alone gain nothing."""
    from bench.predictability import DAY, bottom_up

    rng = np.random.default_rng(1)
    days = 16
    daily = np.tile(np.r_[np.zeros(DAY // 2), np.full(DAY // 2, 500.0)], days)
    walks = 1000.0 + np.cumsum(rng.normal(0.0, 5.0, (2, days * DAY)), axis=1)
    wape, persistence, picks = bottom_up(np.vstack([daily, walks[0]]), 3)
    assert picks["as now"] == 1 and sum(picks.values()) == 2  # the daily one by a seasonal rule
    assert wape < 0.8 * persistence
    wape, persistence, picks = bottom_up(walks, 3)
    assert picks["as now"] >= 1 and wape == pytest.approx(persistence, rel=0.1)
    with pytest.raises(ValueError, match="too short"):
        bottom_up(walks[:, : 2 * 7 * DAY // 2], 3)


def test_a_series_no_longer_than_the_lag_is_not_judged_rather_than_foretold_nothing() -> None:
    d = np.array([0, 0, 5, 0, 0, 5, 0, 0], float)  # switch-ons at steps 2 and 5, none a lag of 8 after the start
    assert math.isnan(switch_on_recurrence(d, lag=8, k=0, frac=0.8))
    assert switch_on_recurrence(d, lag=3, k=0, frac=0.8) == 1.0
    assert math.isnan(switch_on_recurrence(d, lag=3, k=0, frac=0.8, start=6))  # none in the range scored


def test_a_series_with_no_switch_on_in_its_first_half_learns_no_lag() -> None:
    d = np.zeros(200)
    d[150::20] = 5.0
    lag, share = learned_lag_recurrence(d, k=0, frac=0.8, max_lag=50)
    assert lag is None and math.isnan(share)


def test_the_figures_leave_out_the_series_not_judged_and_count_them() -> None:
    assert foretold([0.2, math.nan, 0.6, 0.7, math.nan]) == {
        "median": "60 %", "mean": "50 %", "p90": f"{100 * np.percentile([0.2, 0.6, 0.7], 90):.0f} %", "half": 2,
        "left": 2}
    assert foretold([math.nan]) == {"median": "-", "mean": "-", "p90": "-", "half": 0, "left": 1}


def test_missing_traces_are_an_error_not_a_crash(tmp_path: Path, capsys) -> None:
    assert main(["--traces", str(tmp_path)]) == 2
    assert capsys.readouterr().out == f"error: {tmp_path / 'servegen' / 'servegen-clients.tar.gz'}: no such file\n"
