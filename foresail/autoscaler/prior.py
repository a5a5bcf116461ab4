"""The prior forecaster shipped with the package, trained on public LLM traces (see data/NOTICE.md).

It is a pooled ridge regression on level-free features, so it forecasts any deployment from its first
steps; ``DemandForecaster`` then refits towards the deployment's own history. Its features count steps,
not seconds, so it applies at any forecast step (``step_s`` records the step of the traces it learnt
from: one step stands for one minute of them). The artifact is plain
JSON (coefficients and residual quantiles), small, and safe to load (no pickle).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from sklearn.linear_model import Ridge

from foresail.autoscaler import features

PRIOR_PATH = Path(__file__).parent / "data" / "prior.json"
RESIDUAL_LEVELS = (0.05, 0.1, 0.2, 0.5, 0.8, 0.9, 0.95, 0.99)
log = logging.getLogger(__name__)


@dataclass
class PriorModel:
    """Ridge coefficients per horizon step and the quantiles of its residuals."""

    step_s: float
    coef: np.ndarray  # (horizon_steps, n_features)
    intercept: np.ndarray  # (horizon_steps,)
    residual_levels: tuple[float, ...]
    residuals: np.ndarray  # (len(residual_levels), horizon_steps), log scale
    feature_names: list[str]
    meta: dict = field(default_factory=dict)

    @property
    def horizon_steps(self) -> int:
        """How many steps ahead the prior forecasts."""
        return int(self.coef.shape[0])

    def predict_z(self, X: np.ndarray) -> np.ndarray:
        """Log ratio to the level, one column per horizon step."""
        return X @ self.coef.T + self.intercept

    def residual_quantile(self, q: float) -> np.ndarray:
        """Quantile ``q`` of the log-scale residual per horizon (interpolated between stored levels)."""
        lv = np.asarray(self.residual_levels)
        return np.array([np.interp(q, lv, self.residuals[:, j]) for j in range(self.residuals.shape[1])])

    def to_json(self) -> dict:
        """JSON-safe form."""
        return {
            "step_s": self.step_s,
            "feature_names": self.feature_names,
            "coef": np.round(self.coef, 6).tolist(),
            "intercept": np.round(self.intercept, 6).tolist(),
            "residual_levels": list(self.residual_levels),
            "residuals": np.round(self.residuals, 6).tolist(),
            "meta": self.meta,
        }

    @classmethod
    def from_json(cls, data: dict) -> "PriorModel":
        """Inverse of ``to_json``; refuses a prior built for other features, or whose arrays do not fit together."""
        if not isinstance(data, dict):
            raise ValueError("it is not a JSON object")
        if data["feature_names"] != features.FEATURE_NAMES:
            raise ValueError("the prior model was trained on other features; retrain it (bench/train_prior.py)")
        model = cls(
            step_s=float(data["step_s"]),
            coef=np.asarray(data["coef"], dtype=float),
            intercept=np.asarray(data["intercept"], dtype=float),
            residual_levels=tuple(float(q) for q in data["residual_levels"]),
            residuals=np.asarray(data["residuals"], dtype=float),
            feature_names=list(data["feature_names"]),
            meta=dict(data.get("meta", {})),
        )
        model.check()
        return model

    def check(self) -> None:
        """Raise ``ValueError`` unless the arrays have the shapes of one model: ``(horizons, features)``
        coefficients, one intercept and one residual per horizon at each level, all finite."""
        n_features = len(self.feature_names)
        if self.coef.ndim != 2 or self.coef.shape[0] < 1 or self.coef.shape[1] != n_features:
            raise ValueError(f"coef has shape {self.coef.shape}, not (horizons, {n_features})")
        horizons = self.coef.shape[0]
        if self.intercept.shape != (horizons,):
            raise ValueError(f"intercept has shape {self.intercept.shape}, not ({horizons},) as coef's horizons")
        if self.residuals.shape != (len(self.residual_levels), horizons):
            raise ValueError(f"residuals has shape {self.residuals.shape}, not "
                             f"({len(self.residual_levels)}, {horizons}): one row per residual level, one column "
                             "per horizon")
        levels = np.asarray(self.residual_levels)
        if not (np.all(np.diff(levels) > 0) and np.all((levels > 0) & (levels < 1))):
            raise ValueError(f"residual_levels {list(self.residual_levels)} are not increasing levels in (0, 1)")
        if not all(np.isfinite(a).all() for a in (self.coef, self.intercept, self.residuals)):
            raise ValueError("its coefficients or residuals are not all finite numbers")


@lru_cache(maxsize=4)
def load_prior(path: str | None = None) -> PriorModel | None:
    """The shipped prior (or one at ``path``); None, logged as a warning, if the file is absent. A file that
    is not a prior model raises ``ValueError`` naming it."""
    p = Path(path) if path else PRIOR_PATH
    if not p.exists():
        log.warning("the forecaster's prior model %s is missing: forecasts wait for each deployment's own demand "
                    "history (two days at 60-s steps), scaling is reactive until then; reinstall foresail", p)
        return None
    try:
        return PriorModel.from_json(json.loads(p.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        why = f"it has no {exc.args[0]!r} entry" if isinstance(exc, KeyError) else str(exc)
        raise ValueError(f"cannot load the forecaster's prior model {p}: {why}; reinstall foresail") from exc


def train_prior(
    series: list[tuple[str, np.ndarray, float]],
    step_s: float = 60.0,
    horizon_steps: int = 60,
    rows_per_series: int = 4000,
    alpha: float = 30.0,
    seed: int = 0,
) -> PriorModel:
    """Fit the pooled prior on ``(name, rates per step, start seconds)`` series, each weighted alike."""
    rng = np.random.default_rng(seed)
    Xs, Ys = [], []
    for _name, x, t0 in series:
        X, level, eps = features.make_features(x, step_s, t0)
        Y = features.make_targets(x, level, eps, np.arange(1, horizon_steps + 1))
        ok = np.nonzero(~np.isnan(level) & ~np.isnan(Y).any(axis=1) & (level > 0))[0]
        if len(ok) == 0:
            continue
        pick = rng.choice(ok, size=min(rows_per_series, len(ok)), replace=False)
        Xs.append(X[pick])
        Ys.append(Y[pick])
    if not Xs:
        raise ValueError("no usable training rows")
    X, Y = np.concatenate(Xs), np.concatenate(Ys)
    model = Ridge(alpha=alpha).fit(X, Y)
    resid = Y - model.predict(X)
    return PriorModel(
        step_s=step_s,
        coef=np.atleast_2d(model.coef_),
        intercept=np.atleast_1d(model.intercept_),
        residual_levels=RESIDUAL_LEVELS,
        residuals=np.quantile(resid, RESIDUAL_LEVELS, axis=0),
        feature_names=list(features.FEATURE_NAMES),
        meta={"rows": int(len(X)), "series": len(Xs), "alpha": alpha},
    )
