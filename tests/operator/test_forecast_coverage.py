"""The decision loop reports how often its recent forecasts covered demand: in the status and as a gauge.

The operator's own path (`PrometheusSource` over HTTP against `FakePrometheus`, `Collector`, `step` in
advisory mode); the policy's record of checked forecasts is filled as the policy tests fill it.
"""

from __future__ import annotations

import time

import numpy as np
from prometheus_client import REGISTRY

from foresail_operator import telemetry
from foresail_operator.autoscaler import Loop
from foresail_operator.spec import LLMDeploymentSpec, parse_spec
from tests.operator.advisory import KEY, decisions

SPEC = parse_spec({"model": {"source": "builtin:tiny"},
                   "autoscaling": {"mode": "advisory", "intervalSeconds": 5, "slo": {"capacityPerReplica": 1}}})
LABELS = {"namespace": KEY[0], "llmdeployment": KEY[1]}


async def test_the_status_and_a_gauge_show_the_share_of_recent_forecasts_that_covered_demand() -> None:
    loop = Loop(KEY, forecast_step_s=60.0)
    loop.configure(SPEC, None)
    assert loop.policy is not None
    await decisions(SPEC, loop=loop)
    assert loop.view["fields"]["forecast"]["coverage"] is None  # nothing checked yet (null: not in the status)
    loop.policy._misses.extend([False] * 17 + [True] * 3)  # 20 forecasts checked, 3 fell short
    await decisions(SPEC, loop=loop)
    forecast = loop.view["fields"]["forecast"]
    assert forecast["coverage"] == 0.85 and forecast["checked"] == 20, forecast
    assert REGISTRY.get_sample_value("foresail_forecast_coverage", LABELS) == 0.85
    assert REGISTRY.get_sample_value("foresail_forecast_quantile", LABELS) == 0.9  # what it should be near
    telemetry.forget(*KEY)  # the loop ended: its series go
    assert REGISTRY.get_sample_value("foresail_forecast_coverage", LABELS) is None
    assert REGISTRY.get_sample_value("foresail_forecast_quantile", LABELS) is None


async def test_figures_the_loop_no_longer_has_leave_the_gauges() -> None:
    """Switched to reactive mode, the forecast, its coverage and quantile series go (not their last values),
    as they go from the status; with no demand reported, the demand series goes."""
    loop = Loop(KEY, forecast_step_s=60.0)
    loop.configure(SPEC, None)
    assert loop.policy is not None
    times = np.arange(time.time() - 6 * 3600, time.time(), 60.0)  # six hours of history: a forecast at once
    loop.policy.warm_start(times, np.full(len(times), 1.0))
    loop.policy._misses.extend([False] * 20)
    await decisions(SPEC, loop=loop)
    forecast = {**LABELS, "quantile": "0.9"}
    assert REGISTRY.get_sample_value("foresail_forecast_coverage", LABELS) == 1.0
    assert REGISTRY.get_sample_value("foresail_forecast_requests_per_second", forecast) is not None
    assert REGISTRY.get_sample_value("foresail_demand_requests_per_second", LABELS) is not None
    reactive = parse_spec({"model": {"source": "builtin:tiny"}, "autoscaling": {
        "mode": "reactive", "intervalSeconds": 5, "slo": {"capacityPerReplica": 1}}})
    loop.configure(reactive, None)
    await decisions(reactive, loop=loop, series=False)  # and the pods report nothing
    assert loop.view["fields"]["forecast"]["coverage"] is None and loop.view["fields"]["forecast"]["upper"] is None
    for name, labels in (("foresail_forecast_coverage", LABELS), ("foresail_forecast_quantile", LABELS),
                         ("foresail_forecast_requests_per_second", forecast),
                         ("foresail_demand_requests_per_second", LABELS)):
        assert REGISTRY.get_sample_value(name, labels) is None, name
    telemetry.forget(*KEY)


async def test_another_quantile_or_unit_leaves_no_series_of_the_old_one() -> None:
    """The forecast's series are labelled by quantile and named by unit: a spec that changes either leaves
    only the new ones."""
    def spec(**autoscaling: object) -> LLMDeploymentSpec:
        return parse_spec({"model": {"source": "builtin:tiny"}, "autoscaling": {
            "mode": "advisory", "intervalSeconds": 5, "slo": {"capacityPerReplica": 1}, **autoscaling}})

    loop = Loop(KEY, forecast_step_s=60.0)
    loop.configure(spec(), None)
    assert loop.policy is not None
    times = np.arange(time.time() - 6 * 3600, time.time(), 60.0)
    loop.policy.warm_start(times, np.full(len(times), 1.0))
    await decisions(spec(), loop=loop)
    upper = "foresail_forecast_requests_per_second"
    assert REGISTRY.get_sample_value(upper, {**LABELS, "quantile": "0.9"}) is not None
    loop.configure(spec(forecast={"quantile": 0.95}), None)
    await decisions(spec(forecast={"quantile": 0.95}), loop=loop)
    assert REGISTRY.get_sample_value(upper, {**LABELS, "quantile": "0.9"}) is None
    assert REGISTRY.get_sample_value(upper, {**LABELS, "quantile": "0.95"}) is not None
    loop.configure(spec(demandUnit="tokens"), None)
    for name in (upper, "foresail_demand_requests_per_second", "foresail_capacity_requests_per_second"):
        labels = {**LABELS, "quantile": "0.95"} if name == upper else LABELS
        assert REGISTRY.get_sample_value(name, labels) is None, name
    telemetry.forget(*KEY)
