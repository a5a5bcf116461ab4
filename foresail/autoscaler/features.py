"""Features for the demand forecaster: recent level, lags, rolling statistics, seasonal shape, calendar.

Every feature is relative to the series' recent level (a log ratio), so one model serves series of any
size, and NaN (a metrics gap) is replaced by "same as the level" with flags that say data is missing.
Everything is vectorised over forecast origins: row ``i`` of the matrix uses ``x[: i + 1]`` only.
"""

from __future__ import annotations

import math

import numpy as np

DAY_S = 86400.0
WEEK_S = 7 * DAY_S
CLIP = 5.0  # log-ratio clip: outliers beyond e^5 (x148) of the level do not dominate a fit

_LAGS = (0, 1, 2, 3, 5, 9)  # in steps
_MEANS_S = (300.0, 1800.0, 3600.0, 3 * 3600.0, DAY_S)
_DAILY_OFFSETS_S = (0.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0)
_WEEKLY_OFFSETS_S = (0.0, 600.0, 1800.0, 3600.0)

FEATURE_NAMES: list[str] = (
    [f"lag{k}" for k in _LAGS]
    + [f"mean{int(s)}s" for s in _MEANS_S]
    + ["level_10min_ago", "cv_1h", "zeros_1h", "gaps_1h"]
    + [f"daily{int(o)}s" for o in _DAILY_OFFSETS_S]
    + [f"weekly{int(o)}s" for o in _WEEKLY_OFFSETS_S]
    + ["has_daily", "has_weekly", "tod_sin", "tod_cos", "tod_sin2", "tod_cos2", "weekend"]
)


def steps(seconds: float, step_s: float) -> int:
    """A duration in whole steps, at least one."""
    return max(1, int(round(seconds / step_s)))


def rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` steps ignoring NaN; NaN where the window holds no data."""
    valid = ~np.isnan(x)
    csum = np.concatenate(([0.0], np.cumsum(np.where(valid, x, 0.0))))
    ccnt = np.concatenate(([0], np.cumsum(valid)))
    idx = np.arange(1, len(x) + 1)
    lo = np.maximum(idx - window, 0)
    cnt = ccnt[idx] - ccnt[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, (csum[idx] - csum[lo]) / np.maximum(cnt, 1), np.nan)


def _ratio(v: np.ndarray, ref: np.ndarray, eps: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.log((v + eps) / (ref + eps))
    return np.clip(np.nan_to_num(r, nan=0.0), -CLIP, CLIP)


def _shift(a: np.ndarray, k: int) -> np.ndarray:
    """``a`` delayed by ``k`` steps (value at i is a[i-k]), NaN before the start."""
    out = np.full(len(a), np.nan)
    if k < len(a):
        out[k:] = a[: len(a) - k] if k > 0 else a
    return out


def _nanmean(seg: np.ndarray) -> float:
    seg = seg[seg == seg]  # drop NaN
    return float(seg.sum()) / len(seg) if len(seg) else math.nan


def _r(v: float, ref: float, eps: float) -> float:
    """Scalar ``_ratio``."""
    if v != v or ref != ref:
        return 0.0
    r = math.log((v + eps) / (ref + eps))
    return CLIP if r > CLIP else -CLIP if r < -CLIP else r


def last_features(x: np.ndarray, step_s: float, t0_s: float) -> tuple[np.ndarray, float, float]:
    """``make_features`` for the last origin only, computed from slices in a few hundred microseconds."""
    n = len(x)

    def mean(width: int, back: int = 0, series: np.ndarray = x) -> float:
        hi = n - back
        return _nanmean(series[max(0, hi - width) : max(0, hi)]) if hi > 0 else math.nan

    w10, w1h, w1d = steps(600, step_s), steps(3600, step_s), steps(DAY_S, step_s)
    m10, m1h, m1d = mean(w10), mean(w1h), mean(w1d)
    level = m10 if m10 == m10 else m1h if m1h == m1h else m1d
    eps = 0.05 * (m1h if m1h == m1h else 0.0) + 0.05 * (m1d if m1d == m1d else 0.0) + 1e-9
    row = [_r(mean(1, k), level, eps) for k in _LAGS]
    row += [_r(mean(steps(s, step_s)), level, eps) for s in _MEANS_S]
    row.append(_r(mean(w10, w10), level, eps))
    tail = x[max(0, n - w1h) :]
    if m1h == m1h:
        sq = _nanmean(tail * tail)
        sd = math.sqrt(max(sq - m1h * m1h, 0.0))
        row.append(min(max(sd / (m1h + eps), 0.0), CLIP))
    else:
        row.append(0.0)
    valid = tail[tail == tail]
    row.append(float(np.count_nonzero(valid == 0)) / len(valid) if len(valid) else 0.0)
    row.append(float(len(tail) - len(valid)) / len(tail) if len(tail) else math.nan)
    half = steps(300, step_s)
    has = []
    for period_s, offsets in ((DAY_S, _DAILY_OFFSETS_S), (WEEK_S, _WEEKLY_OFFSETS_S)):
        p = steps(period_s, step_s)
        base = mean(w10, p - half)
        for o in offsets:
            val = mean(w10, p - half - int(round(o / step_s)))
            row.append(_r(val, level, eps) if o == 0 else _r(val, base, eps))
        has.append(0.0 if base != base else 1.0)
    row += has
    t = t0_s + n * step_s
    tod = 2 * math.pi * (t % DAY_S) / DAY_S
    row += [math.sin(tod), math.cos(tod), math.sin(2 * tod), math.cos(2 * tod)]
    row.append(1.0 if (math.floor(t / DAY_S + 3) % 7) >= 5 else 0.0)
    return np.array([row]), level, eps


def make_features(x: np.ndarray, step_s: float, t0_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feature matrix (one row per origin; row ``i`` uses ``x[: i + 1]``), level and eps for rates ``x``.

    ``x[0]`` is the step that starts at ``t0_s``.
    """
    x = np.asarray(x, dtype=float)
    n = len(x)
    zeros = (x == 0).astype(float)
    gaps = np.isnan(x).astype(float)
    sq = x * x

    def mean(width: int, back: int = 0, series: np.ndarray = x) -> np.ndarray:
        """Mean of ``series`` over ``width`` steps ending ``back`` steps before each origin."""
        return _shift(rolling_mean(series, width), back)

    w10, w1h, w1d = steps(600, step_s), steps(3600, step_s), steps(DAY_S, step_s)
    m10, m1h, m1d = mean(w10), mean(w1h), mean(w1d)
    level = np.where(np.isnan(m10), m1h, m10)
    level = np.where(np.isnan(level), m1d, level)
    eps = 0.05 * np.nan_to_num(m1h) + 0.05 * np.nan_to_num(m1d) + 1e-9
    cols: list[np.ndarray] = [_ratio(mean(1, k), level, eps) for k in _LAGS]
    cols += [_ratio(mean(steps(s, step_s)), level, eps) for s in _MEANS_S]
    cols.append(_ratio(mean(w10, w10), level, eps))
    with np.errstate(invalid="ignore"):
        sd = np.sqrt(np.maximum(mean(w1h, 0, sq) - m1h * m1h, 0.0))
        cols.append(np.clip(np.nan_to_num(sd / (m1h + eps)), 0.0, CLIP))
    cols.append(np.nan_to_num(mean(w1h, 0, zeros)))
    cols.append(mean(w1h, 0, gaps))
    # Seasonal shape: 10-min means around the same time yesterday / last week, at offsets ahead of it.
    half = steps(300, step_s)
    has = []
    for period_s, offsets in ((DAY_S, _DAILY_OFFSETS_S), (WEEK_S, _WEEKLY_OFFSETS_S)):
        p = steps(period_s, step_s)
        base = mean(w10, p - half)  # the 10-min mean centred on (origin - period)
        for o in offsets:
            val = mean(w10, p - half - int(round(o / step_s)))
            cols.append(_ratio(val, level, eps) if o == 0 else _ratio(val, base, eps))
        has.append((~np.isnan(base)).astype(float))
    cols += has
    t = t0_s + (np.arange(n) + 1) * step_s  # end of each origin step
    tod = 2 * np.pi * (t % DAY_S) / DAY_S
    cols += [np.sin(tod), np.cos(tod), np.sin(2 * tod), np.cos(2 * tod)]
    dow = np.floor(t / DAY_S + 3) % 7  # the Unix epoch was a Thursday: Monday = 0
    cols.append((dow >= 5).astype(float))
    return np.column_stack(cols), level, eps


def make_targets(x: np.ndarray, level: np.ndarray, eps: np.ndarray, horizons: np.ndarray) -> np.ndarray:
    """Log ratio of the rate ``h`` steps ahead to the origin's level, one column per horizon (NaN past the end)."""
    n = len(x)
    out = np.full((n, len(horizons)), np.nan)
    for j, h in enumerate(horizons):
        if h < n:
            fut = x[h:]
            with np.errstate(invalid="ignore", divide="ignore"):
                out[: n - h, j] = np.clip(np.log((fut + eps[: n - h]) / (level[: n - h] + eps[: n - h])), -CLIP, CLIP)
    return out


def to_rate(z: np.ndarray, level: float, eps: float) -> np.ndarray:
    """Inverse of the target transform: log ratio to a rate (never negative)."""
    return np.maximum((level + eps) * np.exp(z) - eps, 0.0)
