"""The operator's configuration, from flags and environment (the Helm chart sets the environment)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from foresail.checks import check_url
from foresail_operator.metrics import duration_seconds, parse_headers
from foresail_operator.plan import FETCH_IMAGE
from foresail_operator.runtimes import RUNTIMES

# The inference pods' preStop sleep: `sleep`, the kubelet's own action (Kubernetes 1.30 and later); `exec`,
# the `sleep` binary of the runtime's image (any version); `auto`, `sleep` where the API server and every
# node's kubelet are 1.30 or later (reconciler.kubelet_sleeps).
PRE_STOP_HOOKS = ("auto", "sleep", "exec")
# The seconds each period may take. Prometheus is read at least once per longest decision interval (the CRD's
# intervalSeconds maximum), a read counting stale after three periods; a forecast step stands for one minute of
# the traces the forecaster was trained on (autoscaler/features.py), so a day is 1,440 of them; a rate() window
# holds two samples of a 1-s scrape at least and spans an hour at most, else demand is an average over hours.
COLLECT_PERIODS_S = (1.0, 600.0)
FORECAST_STEPS_S = (1.0, 3600.0)
RATE_WINDOWS_S = (2.0, 3600.0)


@dataclass(frozen=True)
class OperatorConfig:
    """Settings shared by every handler (kept in kopf's memo)."""

    namespaces: tuple[str, ...] = ()  # empty: every namespace
    prometheus_url: str | None = None
    prometheus_token: str | None = None
    prometheus_token_file: str | None = None  # read before each query, so a rotated token is picked up
    prometheus_ca_file: str | None = None  # PEM bundle that signs an https Prometheus's certificate
    prometheus_headers: dict[str, str] = field(default_factory=dict)  # sent with every query (a tenant id)
    images: dict[str, str] = field(default_factory=dict)  # runtime name -> default image
    fetch_image: str = FETCH_IMAGE  # the init container that downloads an http(s) model
    peering: str = "foresail"
    standalone: bool = False
    metrics_port: int = 0  # the operator's own /metrics (0: off)
    collect_period_s: float = 15.0  # how often Prometheus is read
    forecast_step_s: float = 60.0  # the forecaster's time step
    rate_window: str = "2m"  # PromQL rate() window: at least two scrape intervals (one sample gives no rate)
    pre_stop: str = "auto"  # the preStop hook: one of PRE_STOP_HOOKS

    @classmethod
    def from_env(cls, **overrides: object) -> "OperatorConfig":
        """Read FORESAIL_* variables; explicit overrides (flags) win."""
        env = os.environ
        flags = {k: v for k, v in overrides.items() if v not in (None, ())}
        images = {name: env[f"FORESAIL_IMAGE_{name.upper()}"] for name in RUNTIMES
                  if env.get(f"FORESAIL_IMAGE_{name.upper()}")}
        values: dict[str, object] = {
            "namespaces": tuple(n for n in env.get("FORESAIL_NAMESPACES", "").split(",") if n),
            "prometheus_url": env.get("FORESAIL_PROMETHEUS_URL") or None,
            "prometheus_token": env.get("FORESAIL_PROMETHEUS_TOKEN") or None,
            "prometheus_token_file": env.get("FORESAIL_PROMETHEUS_TOKEN_FILE") or None,
            "prometheus_ca_file": env.get("FORESAIL_PROMETHEUS_CA_FILE") or None,
            "prometheus_headers": _headers(env.get("FORESAIL_PROMETHEUS_HEADERS", "")),
            "images": images,
            "fetch_image": env.get("FORESAIL_IMAGE_FETCH") or FETCH_IMAGE,
            "peering": env.get("FORESAIL_PEERING", "foresail"),
            # a flag's port was checked (flags.port_setting): the variable it replaces is not read
            "metrics_port": 0 if "metrics_port" in flags else int(_number("FORESAIL_METRICS_PORT", "0")),
            "collect_period_s": _number("FORESAIL_COLLECT_PERIOD", "15", within=COLLECT_PERIODS_S),
            "forecast_step_s": _number("FORESAIL_FORECAST_STEP", "60", within=FORECAST_STEPS_S),
            "rate_window": _duration("FORESAIL_RATE_WINDOW", "2m", RATE_WINDOWS_S),
            "pre_stop": _choice("FORESAIL_PRE_STOP", "auto", PRE_STOP_HOOKS),
        }
        values.update(flags)
        if values["prometheus_url"]:
            check_url("--prometheus-url" if "prometheus_url" in flags else "FORESAIL_PROMETHEUS_URL",
                      str(values["prometheus_url"]))
        if not values["peering"]:  # kopf would write to the peering collection, and exit with tracebacks
            raise ValueError("FORESAIL_PEERING (--peering) must name the peering object, not ''")
        return cls(**values)  # type: ignore[arg-type]


def _number(name: str, default: str, within: tuple[float, float] | None = None) -> float:
    """A numeric FORESAIL_* variable: a whole number, or with ``within`` (lowest, highest) a number of seconds in that
    range; ValueError names it and says what it must be."""
    text = os.environ.get(name, default)
    kind = f"a number of seconds from {within[0]:g} to {within[1]:g}" if within else "a whole number"
    try:
        value = float(text) if within else int(text)
    except ValueError:
        raise ValueError(f"{name} must be {kind}, not {text!r}") from None
    if not math.isfinite(value) or (within is not None and not within[0] <= value <= within[1]):
        raise ValueError(f"{name} must be {kind}, not {text!r}")
    return value


def _duration(name: str, default: str, within: tuple[float, float]) -> str:
    """A PromQL duration FORESAIL_* variable (``30s``, ``1m``, ``1h30m``) ``within`` (lowest, highest seconds);
    ValueError names it."""
    text = os.environ.get(name, default)
    try:
        seconds = duration_seconds(text)
    except ValueError:
        seconds = 0.0
    if not within[0] <= seconds <= within[1]:
        raise ValueError(f"{name} must be a Prometheus duration from {within[0]:g}s to {within[1]:g}s such "
                         f"as 30s, 2m or 1h30m (each unit once, the largest first), not {text!r}")
    return text


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    """A FORESAIL_* variable that takes one of ``choices``; ValueError names it and them."""
    text = os.environ.get(name, default)
    if text not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {text!r}")
    return text


def _headers(text: str) -> dict[str, str]:
    """FORESAIL_PROMETHEUS_HEADERS; ValueError says which variable is wrong."""
    try:
        return parse_headers(text)
    except ValueError as exc:
        raise ValueError(f"FORESAIL_PROMETHEUS_HEADERS: {exc}") from None
