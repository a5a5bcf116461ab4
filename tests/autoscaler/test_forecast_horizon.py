"""A horizon past the steps the model forecasts (the prior's 60) is forecast to its end: the steps past the
model's last hold its forecast, and the forecast's reason says so."""

import numpy as np
import pytest

from foresail.autoscaler.policy import ForesailPolicy, Observation, PolicyConfig

T0 = 1_700_000_040.0


@pytest.mark.parametrize(("step_s", "cold_start_s"), [(60.0, 7200.0), (5.0, 600.0)])
def test_the_forecast_reaches_the_whole_horizon_the_policy_sizes_for(step_s, cold_start_s):
    """A 2-h cold start at 60-s steps, a 10-min one at 5-s steps: both past 60 steps."""
    p = ForesailPolicy(PolicyConfig(cold_start_s=cold_start_s, interval_s=step_s, max_replicas=1000),
                       forecast_step_s=step_s)
    k = np.arange(1, 1441)
    x = 10 + 5 * np.sin(2 * np.pi * k / 1440)
    p.warm_start(T0 + step_s * k, x)
    p.decide(Observation(time_s=T0 + step_s * 1441, demand=float(x[-1]), ready_replicas=5, provisioned_replicas=5))
    fc, model_steps = p.last_forecast, p.forecaster.model_steps_
    assert fc is not None and fc.ready and model_steps == 60
    assert fc.horizons_s[-1] >= p.config.horizon_s > model_steps * step_s
    for values in (fc.median, *fc.quantiles.values()):
        assert len(values) == len(fc.horizons_s) and np.all(values[model_steps:] == values[model_steps - 1])
    assert f"the steps up to +{fc.horizons_s[-1]:g} s hold its +{model_steps * step_s:g} s forecast" in fc.reason
