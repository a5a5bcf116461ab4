"""The operator's configuration, from flags and environment (the Helm chart sets the environment)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from foresail_operator.metrics import parse_headers
from foresail_operator.runtimes import RUNTIMES


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
    peering: str = "foresail"
    standalone: bool = False
    metrics_port: int = 0  # the operator's own /metrics (0: off)
    collect_period_s: float = 15.0  # how often Prometheus is read
    forecast_step_s: float = 60.0  # the forecaster's time step
    rate_window: str = "1m"  # PromQL rate() window

    @classmethod
    def from_env(cls, **overrides: object) -> "OperatorConfig":
        """Read FORESAIL_* variables; explicit overrides (flags) win."""
        env = os.environ
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
            "peering": env.get("FORESAIL_PEERING", "foresail"),
            "metrics_port": int(env.get("FORESAIL_METRICS_PORT", "0")),
            "collect_period_s": float(env.get("FORESAIL_COLLECT_PERIOD", "15")),
            "forecast_step_s": float(env.get("FORESAIL_FORECAST_STEP", "60")),
            "rate_window": env.get("FORESAIL_RATE_WINDOW", "1m"),
        }
        values.update({k: v for k, v in overrides.items() if v not in (None, ())})
        return cls(**values)  # type: ignore[arg-type]


def _headers(text: str) -> dict[str, str]:
    """FORESAIL_PROMETHEUS_HEADERS; ValueError says which variable is wrong."""
    try:
        return parse_headers(text)
    except ValueError as exc:
        raise ValueError(f"FORESAIL_PROMETHEUS_HEADERS: {exc}") from None
