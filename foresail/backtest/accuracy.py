"""Forecast accuracy per horizon: WAPE and MASE against persistence, seasonal-naive and Holt-Winters,
and pinball loss and coverage of the forecaster's quantiles, at each horizon and over the window up to it.

The forecaster runs online exactly as in the policy: it learns from the first ``train_fraction`` of the
series (its own model when that is long enough, the shipped prior otherwise), then for every later step
it observes the step and forecasts ahead, scored against what happened. Gap steps are not scored.

Window coverage scores the quantile the way the policy uses it: the highest forecast over the next ``h``
steps against the highest demand over them, the replicas the oracle holds for a cold start of ``h``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from foresail.autoscaler.forecast import DemandForecaster
from foresail.backtest.holtwinters import HoltWinters
from foresail.backtest.traces import Trace

DAY_S = 86400.0
HW_PARAMS = (0.2, 0.01, 0.1)  # alpha, beta, gamma of the Holt-Winters reference (daily season)


@dataclass
class HorizonScore:
    """Scores at one horizon."""

    horizon_s: float
    n: int
    wape: dict[str, float] = field(default_factory=dict)  # method -> WAPE
    mase: dict[str, float] = field(default_factory=dict)
    pinball: dict[float, float] = field(default_factory=dict)  # quantile -> mean pinball loss / mean demand
    coverage: dict[float, float] = field(default_factory=dict)  # quantile -> share of actuals at or below it
    window_coverage: dict[float, float] = field(default_factory=dict)  # the same for the window's highest
    mase_scale: float = math.nan  # MASE's divisor: the mean change per step of the trace in the part learned from


def _wape(err: np.ndarray, actual: np.ndarray) -> float:
    denom = float(np.abs(actual).sum())
    return float(np.abs(err).sum() / denom) if denom > 0 else math.nan


def window_max(x: np.ndarray, origins: np.ndarray, h: int) -> np.ndarray:
    """The highest of ``x[i + 1 : i + h + 1]`` for each origin ``i``; NaN where any of them is NaN (a gap)."""
    return x[origins[:, None] + np.arange(1, h + 1)].max(axis=1)  # NaN propagates: a gap is not scored


def _online(fc: DemandForecaster, hw: HoltWinters, x: np.ndarray, times_end: np.ndarray, origins: np.ndarray,
            hs: list[int], quantiles: tuple[float, ...], step_s: float, progress: str | None = None
            ) -> tuple[np.ndarray, dict[float, np.ndarray], dict[float, np.ndarray], np.ndarray]:
    """Step the forecaster and Holt-Winters through ``origins`` (observe, then forecast), with a progress bar
    labelled ``progress`` if given: per origin and horizon in steps, the median, each quantile, each
    quantile's highest over steps 1..h, and Holt-Winters' forecast; NaN where the forecaster was not ready."""
    shape = (len(origins), len(hs))
    med, hwf = np.full(shape, np.nan), np.full(shape, np.nan)
    qv = {q: np.full(shape, np.nan) for q in quantiles}
    qw = {q: np.full(shape, np.nan) for q in quantiles}
    rows: Iterable[tuple[int, int]] = enumerate(origins)
    if progress:
        from tqdm import tqdm

        rows = tqdm(rows, total=len(origins), desc=progress, leave=False)
    for k, i in rows:
        t = float(times_end[i])
        fc.observe(t, None if math.isnan(x[i]) else float(x[i]), step_s)
        hw.update(float(x[i]))
        f = fc.predict(t)
        for j, h in enumerate(hs):
            hwf[k, j] = max(hw.forecast(h), 0.0)
            if f.ready and h <= len(f.median):
                med[k, j] = f.median[h - 1]
                for q in quantiles:
                    qv[q][k, j] = f.quantiles[q][h - 1]
                    qw[q][k, j] = f.window(t, t + h * step_s, q)
    return med, qv, qw, hwf


def evaluate(
    trace: Trace,
    horizons_s: tuple[float, ...] = (600.0, 1800.0, 3600.0),
    quantiles: tuple[float, ...] = (0.5, 0.9),
    step_s: float = 60.0,
    train_fraction: float = 0.5,
    forecaster: DemandForecaster | None = None,
    progress: bool = False,
    note: Callable[[str], None] | None = None,
) -> list[HorizonScore]:
    """Score the forecaster and the references on ``trace`` (rates per ``step_s``); ``note`` is told of the
    horizons left out, those the trace is too short to score, of those past the steps the forecaster's model
    forecasts, and of those where it forecast none of the steps scored. The trace's steps are moved onto the
    forecaster's (whole multiples of ``step_s``), so the scores do not depend on where in a step it starts."""
    tr = trace.resample(step_s)
    x = tr.arrivals / step_s
    if tr.gaps is not None:
        x = np.where(tr.gaps, np.nan, x)
    n = len(x)
    split = max(1, int(n * train_fraction))
    # horizons that leave at least as many scored origins as the horizon is long
    steps = [max(1, int(round(h / step_s))) for h in horizons_s]
    hs = [k for k in steps if 2 * k <= n - split]
    if not hs:
        raise ValueError(f"{trace.name}: too short to score any of the horizons after the first {split} steps")
    if note and len(hs) < len(steps):
        left_out = ", ".join(f"{k * step_s / 60:g} min" for k in steps if 2 * k > n - split)
        note(f"{trace.name}: left out horizon(s) {left_out}: after the {split} steps of {step_s:g} s it learns from, "
             f"the trace has {n - split} to score, and a horizon needs twice its length")
    H = max(hs)
    fc = forecaster or DemandForecaster(step_s=step_s, horizon_s=H * step_s, quantiles=quantiles)
    times_end = tr.start_s - tr.start_s % step_s + (np.arange(n) + 1) * step_s  # on the forecaster's steps
    fc.fit(times_end[:split], x[:split])
    if note and forecaster is None and H > fc.model_steps_:
        held = ", ".join(f"{k * step_s / 60:g} min" for k in hs if k > fc.model_steps_)
        reach = fc.model_steps_ * step_s / 60
        note(f"{trace.name}: the forecaster's model forecasts {fc.model_steps_} steps ahead (+{reach:g} min); at "
             f"horizon(s) {held} its forecast is the one for +{reach:g} min")
    season = int(round(DAY_S / step_s))
    hw = HoltWinters(*HW_PARAMS, season_length=season if n > 2 * season else 0)
    for v in x[:split]:
        hw.update(float(v))
    origins = np.arange(split, n - H)
    med, qv, qw, hwf = _online(fc, hw, x, times_end, origins, hs, quantiles, step_s,
                               f"forecast {trace.name}" if progress else None)
    # MASE's scale: the in-sample error of the naive forecast one step of the trace's own interval ahead
    # (a 10-minute trace replayed per minute repeats each value ten times, so one-minute differences would
    # shrink the scale tenfold)
    lag = max(1, int(round(trace.step_s / step_s)))
    train = x[:split]
    d = np.abs(train[lag:] - train[:-lag])
    scale = float(np.nanmean(d)) if np.isfinite(d).any() else math.nan
    out = []
    for j, h in enumerate(hs):
        actual = x[origins + h]
        refs = {
            "foresail": med[:, j],
            "persistence": x[origins],
            "seasonal-naive": (x[origins + h - season] if origins[0] + h - season >= 0
                               else np.full(len(origins), np.nan)),
            "holt-winters": hwf[:, j],
        }
        scored = ~np.isnan(actual) & ~np.isnan(refs["persistence"])
        forecast = scored & ~np.isnan(med[:, j])
        ok = forecast if forecast.any() else scored  # where foresail forecast none of them, the references alone
        if note and scored.any() and not forecast.any():
            note(f"{trace.name}: at {h * step_s / 60:g} min the forecaster was not ready at any of the {scored.sum()} "
                 "steps scored (it needs a few of the last 60 steps to have data): the references are scored alone")
        score = HorizonScore(h * step_s, int(ok.sum()), mase_scale=scale)
        for name, pred in refs.items():
            valid = ok & ~np.isnan(pred)
            if valid.sum() < ok.sum() or ok.sum() == 0:
                score.wape[name] = score.mase[name] = math.nan
                continue
            err = pred[valid] - actual[valid]
            score.wape[name] = _wape(err, actual[valid])
            score.mase[name] = float(np.mean(np.abs(err)) / scale) if scale and scale > 0 else math.nan
        mean_demand = float(np.mean(actual[forecast])) if forecast.any() else math.nan
        peak = window_max(x, origins, h)
        ok_w = forecast & ~np.isnan(peak)
        for q in quantiles:
            e = actual[forecast] - qv[q][forecast, j]
            loss = np.maximum(q * e, (q - 1) * e)
            score.pinball[q] = float(loss.mean() / mean_demand) if mean_demand > 0 else math.nan
            score.coverage[q] = float(np.mean(e <= 1e-12)) if forecast.any() else math.nan
            score.window_coverage[q] = (float(np.mean(peak[ok_w] - qw[q][ok_w, j] <= 1e-12)) if ok_w.any()
                                        else math.nan)
        out.append(score)
    return out
