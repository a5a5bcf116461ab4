"""The quantiles never cross the median the forecaster reports, on either side of it."""

import numpy as np

from foresail.autoscaler.forecast import DemandForecaster

T0 = 1_700_000_040.0


def test_a_quantile_below_the_median_stays_below_it_when_persistence_moves_the_median():
    """Five hours at a constant 10/s, then a step at 1/s: persistence never erred, so the reported median is
    the last step's rate, below the model's own p10; the p10 is held at the median."""
    fc = DemandForecaster(quantiles=(0.1, 0.5, 0.9))
    t = T0 + 60 * np.arange(1, 301)
    fc.fit(t, np.full(300, 10.0))
    fc.observe(t[-1] + 60, 1.0)
    f = fc.predict(t[-1] + 60)
    assert f.ready and np.allclose(f.median, 1.0)
    assert np.all(f.quantiles[0.1] <= f.median) and np.all(f.median <= f.quantiles[0.9])
