"""Forecast.window: the highest forecast over the steps that overlap a span; a step that ends where the span
starts, or starts where it ends, does not overlap it (the policy checks each forecast against the one step
of its last interval)."""

import numpy as np
import pytest

from foresail.autoscaler.forecast import DemandForecaster, Forecast


@pytest.mark.parametrize("start, end, want", [(60.0, 120.0, 1.0), (60.0, 121.0, 2.0), (59.0, 120.0, 9.0),
                                              (0.0, 60.0, 9.0), (500.0, 900.0, 2.0)])
def test_a_window_takes_the_steps_that_overlap_it(start, end, want):
    median = np.array([9.0, 1.0, 2.0])  # steps ending at 60, 120 and 180 s; past them the last one
    fc = Forecast(True, "", origin_s=0.0, step_s=60.0, median=median, quantiles={0.9: median + 1})
    assert fc.window(start, end) == want and fc.window(start, end, 0.9) == want + 1


def test_a_peak_over_a_span_with_a_gap_is_unknown_where_the_whole_span_is_asked_for():
    """Scale to zero trusts a quiet spell a day earlier only if it was watched throughout (``complete``)."""
    f = DemandForecaster(step_s=60.0, horizon_s=300.0, prior=None)
    f.observe(60.0, 0.0, 60.0)
    f.observe(180.0, 0.0, 60.0)  # nothing observed from 60 to 120 s
    assert f.history_peak(0.0, 180.0) == 0.0 and f.history_peak(0.0, 180.0, complete=True) is None
    assert f.history_peak(0.0, 60.0, complete=True) == 0.0 and f.history_peak(120.0, 180.0, complete=True) == 0.0


def test_a_backfilled_sample_after_a_long_silence_covers_two_spacings_not_the_silence():
    f = DemandForecaster(step_s=60.0, horizon_s=300.0, prior=None)
    f.partial_fit(np.array([60.0, 120.0, 180.0, 3600.0, 3660.0]), np.array([1.0, 1.0, 1.0, 5.0, 5.0]))
    assert f.history_peak(300.0, 3420.0) is None  # a gap: nothing was scraped
    assert f.history_peak(3480.0, 3660.0, complete=True) == 5.0 and f.history_peak(0.0, 180.0) == 1.0


def test_the_history_reaches_back_to_its_first_step():
    f = DemandForecaster(step_s=60.0, horizon_s=300.0, prior=None)
    f.observe(120.0, 1.0, 60.0)  # the step from 60 to 120 s
    assert f.history_reaches(60.0) and f.history_reaches(119.0) and not f.history_reaches(59.0)


@pytest.mark.parametrize("horizon_s, steps", [(150.0, 3), (180.0, 3), (181.0, 4)])
def test_a_horizon_between_steps_is_forecast_to_the_step_past_it(horizon_s, steps):
    f = DemandForecaster(step_s=60.0, horizon_s=horizon_s)
    for k in range(1, 6):
        f.observe(60.0 * k, 5.0, 60.0)
    fc = f.predict(300.0)
    assert fc.ready and len(fc.median) == steps and fc.horizons_s[-1] >= horizon_s
