"""Every metric the operator exports about itself, declared in one place.

Served on --metrics-port by prometheus_client. Labels are namespace and llmdeployment so that a
dashboard can put the operator's view (forecast, decision) next to the pods' own metrics.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from foresail_operator.spec import DEMAND_UNITS

LABELS = ("namespace", "llmdeployment")

DECISIONS = Counter(
    "foresail_decisions_total",
    "Scaling decisions made, by what they did (up, down, hold).",
    LABELS + ("action",),
)
DESIRED = Gauge("foresail_desired_replicas", "Replicas the operator asked for.", LABELS)
RECOMMENDED = Gauge("foresail_recommended_replicas", "Replicas the policy recommended.", LABELS)
REACTIVE_FLOOR = Gauge("foresail_reactive_floor_replicas", "The reactive floor of the last decision.", LABELS)
# demand, forecast and capacity in each deployment's autoscaling.demandUnit (one gauge name per unit)
DEMAND = {u: Gauge(f"foresail_demand_{u}_per_second", f"Observed demand ({u}/s) at the last decision.", LABELS)
          for u in DEMAND_UNITS}
FORECAST = {u: Gauge(f"foresail_forecast_{u}_per_second",
                     f"Forecast demand ({u}/s) at now + horizon, by quantile (0.5 and the spec's quantile).",
                     LABELS + ("quantile",)) for u in DEMAND_UNITS}
HORIZON = Gauge("foresail_forecast_horizon_seconds", "The forecast horizon in use.", LABELS)
COVERAGE = Gauge("foresail_forecast_coverage",
                 "Share of the recent forecasts checked whose upper quantile covered the demand that came.", LABELS)
QUANTILE = Gauge("foresail_forecast_quantile",
                 "The forecast quantile capacity is sized for (spec.autoscaling.quantile): "
                 "what foresail_forecast_coverage should be near.", LABELS)
CAPACITY = {u: Gauge(f"foresail_capacity_{u}_per_second",
                     f"{u.capitalize()}/s one replica serves within the SLO, as the policy uses it (spec or learned).",
                     LABELS) for u in DEMAND_UNITS}
COLD_START = Gauge("foresail_cold_start_seconds", "Measured pod cold start (median of recent pods).", LABELS)
METRICS_ERRORS = Counter(
    "foresail_metrics_errors_total", "Failed or unusable Prometheus reads, by reason.", ("reason",))
API_ERRORS = Counter("foresail_api_errors_total", "Failed Kubernetes API writes, by HTTP status.", ("status",))
LOOP_SECONDS = Histogram(
    "foresail_decision_seconds",
    "Time of one decision for one LLMDeployment (metrics lookup, forecast, policy, writes).",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
COLLECT_SECONDS = Histogram(
    "foresail_metrics_collect_seconds",
    "Time of one Prometheus collection for all LLMDeployments.",
    # beyond the default 15-s period: a Prometheus that does not answer holds one for about a minute (retries)
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0),
)


def forget_figures(namespace: str, name: str, unit: str) -> None:
    """Stop exporting one LLMDeployment's demand, forecast and capacity in ``unit``: the spec now counts in
    the other unit."""
    labels = {"namespace": namespace, "llmdeployment": name}
    for metric in (DEMAND[unit], FORECAST[unit], CAPACITY[unit]):
        metric.remove_by_labels(labels)


def forget(namespace: str, name: str) -> None:
    """Stop exporting one LLMDeployment's series once its decision loop ends (deleted, autoscaling off,
    or this replica stood down), so that dashboards and alerts do not keep its last values for ever."""
    labels = {"namespace": namespace, "llmdeployment": name}
    for metric in (DECISIONS, DESIRED, RECOMMENDED, REACTIVE_FLOOR, HORIZON, COVERAGE, QUANTILE, COLD_START,
                   *DEMAND.values(), *FORECAST.values(), *CAPACITY.values()):
        metric.remove_by_labels(labels)
