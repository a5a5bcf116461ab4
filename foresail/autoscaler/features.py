"""Features for the demand forecaster: recent level, lags, rolling statistics, seasonal shape, calendar.

Every feature is relative to the series' recent level (a log ratio), so one model serves series of any
size, and NaN (a metrics gap) is replaced by "same as the level" with flags that say data is missing. A lone
outlier, a run of at most ``LONE_STEPS`` steps more than ``e^CLIP`` times the steps before and after it,
counts as the higher of those once the step after it is known (``damp_lone_steps``): one glitching minute
would otherwise weigh on every mean over it for up to a day. Everything is vectorised over forecast
origins: row ``i`` of the matrix uses ``x[: i + 1]`` only.

Every window is a number of STEPS, not seconds: a step stands for one minute of the public traces the
prior was trained on, so the same model (and the shipped prior) applies at any ``step_s``. At 60-s steps
the windows are the wall-clock ones (a day is 1,440 steps); on an accelerated clock (the local demo, one
5-s step per trace minute) they follow the trace's own time.
"""

from __future__ import annotations

import math

import numpy as np

DAY_STEPS = 1440  # a step stands for one trace minute
WEEK_STEPS = 7 * DAY_STEPS
RECENT_STEPS = 60  # the window in which the forecaster needs a few observed steps
LOOKBACK_STEPS = WEEK_STEPS + 120  # the features look back one week and two hours at most
CLIP = 5.0  # log-ratio clip: outliers beyond e^5 (x148) of the level do not dominate a fit
LONE = math.exp(CLIP)  # a run of steps this many times the steps on either side of it is a lone outlier
LONE_STEPS = 2  # ... if it lasts at most this many steps (a 1-min rate() window spreads a glitch over two)

# all in steps
_LAGS = (0, 1, 2, 3, 5, 9)
_MEANS = (5, 30, 60, 180, DAY_STEPS)
_DAILY_OFFSETS = (0, 5, 10, 20, 30, 60)
_WEEKLY_OFFSETS = (0, 10, 30, 60)
_LEVEL, _HOUR, _HALF = 10, 60, 5  # the level is the mean of the last 10 steps; dispersion over 60

FEATURE_NAMES: list[str] = (
    [f"lag{k}" for k in _LAGS]
    + [f"mean{k}" for k in _MEANS]
    + ["level_10_steps_ago", "cv_60", "zeros_60", "gaps_60"]
    + [f"daily+{o}" for o in _DAILY_OFFSETS]
    + [f"weekly+{o}" for o in _WEEKLY_OFFSETS]
    + ["has_daily", "has_weekly", "tod_sin", "tod_cos", "tod_sin2", "tod_cos2", "weekend"]
)


def _phase(t_end_steps: np.ndarray | float) -> tuple:
    """Time of day (radians) and day of week (Monday = 0) of a step count since the epoch."""
    day = np.asarray(t_end_steps, dtype=float) / DAY_STEPS
    return 2 * np.pi * (day % 1.0), np.floor(day + 3) % 7  # the Unix epoch was a Thursday


def _rolling_sum(v: np.ndarray, window: int) -> np.ndarray:
    """Trailing sum over ``window`` steps (fewer at the start), from prefix and suffix sums within blocks of
    ``window`` steps: each sum adds up only the steps in its own window, so one huge value does not leave a
    rounding error in every sum after it, as a difference of two running totals would."""
    n = len(v)
    padded = np.zeros(-(-n // window) * window)
    padded[:n] = v
    blocks = padded.reshape(-1, window)
    pre = np.cumsum(blocks, axis=1).ravel()[:n]  # from the start of each step's block to the step
    suf = np.cumsum(blocks[:, ::-1], axis=1)[:, ::-1].ravel()[:n]  # from the step to the end of its block
    end = np.arange(window, n)
    split = end[end % window != window - 1]  # windows across two blocks: the first's tail, the second's head
    out = pre.copy()
    out[split] = suf[split - window + 1] + pre[split]
    return out


def rolling_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` steps ignoring NaN; NaN where the window holds no data."""
    valid = ~np.isnan(x)
    total = _rolling_sum(np.where(valid, x, 0.0), window)
    count = _rolling_sum(valid.astype(float), window)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


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
    seg = seg[~np.isnan(seg)]
    return float(seg.sum()) / len(seg) if len(seg) else math.nan


def _r(v: float, ref: float, eps: float) -> float:
    """Scalar ``_ratio``."""
    if math.isnan(v) or math.isnan(ref):
        return 0.0
    r = math.log((v + eps) / (ref + eps))
    return CLIP if r > CLIP else -CLIP if r < -CLIP else r


def damp_lone_steps(x: np.ndarray) -> np.ndarray:
    """``x`` with each lone outlier, a run of at most ``LONE_STEPS`` steps each more than ``LONE`` times the
    steps just before and after it (known, and not both zero), set to the higher of those two; a run that
    reaches the last step, whose next is not known yet, is kept. The longest such run from a step wins."""
    out = np.array(x, dtype=float)
    with np.errstate(invalid="ignore"):
        starts = np.flatnonzero(out[1:] > LONE * out[:-1]) + 1  # a run's first step stands above the one before
    for j in starts.tolist():
        for k in range(LONE_STEPS, 0, -1):
            if j + k < len(out):
                ref = np.maximum(out[j - 1], out[j + k])  # NaN where a neighbour is a gap: nothing to compare with
                if ref > 0 and out[j : j + k].min() > LONE * ref:
                    out[j : j + k] = ref
                    break
    return out


def last_features(x: np.ndarray, step_s: float, t0_s: float) -> tuple[np.ndarray, float, float]:
    """``make_features`` for the last origin only, computed from slices in a few hundred microseconds."""
    return _last_row(damp_lone_steps(x), step_s, t0_s)


def _last_row(x: np.ndarray, step_s: float, t0_s: float) -> tuple[np.ndarray, float, float]:
    """The features of the last origin of a history whose lone outliers were damped."""
    n = len(x)

    def mean(width: int, back: int = 0, series: np.ndarray = x) -> float:
        hi = n - back
        return _nanmean(series[max(0, hi - width) : max(0, hi)]) if hi > 0 else math.nan

    w10, w1h, w1d = _LEVEL, _HOUR, DAY_STEPS
    m10, m1h, m1d = mean(w10), mean(w1h), mean(w1d)
    level = m10 if not math.isnan(m10) else m1h if not math.isnan(m1h) else m1d
    eps = 0.05 * (0.0 if math.isnan(m1h) else m1h) + 0.05 * (0.0 if math.isnan(m1d) else m1d) + 1e-9
    row = [_r(mean(1, k), level, eps) for k in _LAGS]
    row += [_r(mean(k), level, eps) for k in _MEANS]
    row.append(_r(mean(w10, w10), level, eps))
    tail = x[max(0, n - w1h) :]
    if not math.isnan(m1h):
        sq = _nanmean(tail * tail)
        sd = math.sqrt(max(sq - m1h * m1h, 0.0))
        row.append(min(max(sd / (m1h + eps), 0.0), CLIP))
    else:
        row.append(0.0)
    row.append(float(np.count_nonzero(tail == 0)) / len(tail) if len(tail) else 0.0)  # of all steps, as ``_matrix``
    row.append(float(np.count_nonzero(np.isnan(tail))) / len(tail) if len(tail) else math.nan)
    has = []
    for p, offsets in ((DAY_STEPS, _DAILY_OFFSETS), (WEEK_STEPS, _WEEKLY_OFFSETS)):
        base = mean(w10, p - _HALF)
        for o in offsets:
            val = mean(w10, p - _HALF - o)
            row.append(_r(val, level, eps) if o == 0 else _r(val, base, eps))
        has.append(0.0 if math.isnan(base) else 1.0)
    row += has
    tod, dow = _phase(t0_s / step_s + n)
    row += [math.sin(tod), math.cos(tod), math.sin(2 * tod), math.cos(2 * tod)]
    row.append(1.0 if dow >= 5 else 0.0)
    return np.array([row]), level, eps


def make_features(x: np.ndarray, step_s: float, t0_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feature matrix (one row per origin; row ``i`` uses ``x[: i + 1]``), level and eps for rates ``x``.

    ``x[0]`` is the step that starts at ``t0_s``. Row ``i`` sees the outliers damped that ended before
    step ``i``, and a run that reaches step ``i`` as it was (the step after it is not known at that origin).
    """
    raw = np.asarray(x, dtype=float)
    x = damp_lone_steps(raw)
    X, level, eps = _matrix(x, step_s, t0_s)
    for i in np.flatnonzero((x != raw) & ~np.isnan(raw)).tolist():  # the damped steps' own rows
        lo = max(0, i + 1 - LOOKBACK_STEPS)
        X[i], level[i], eps[i] = last_features(raw[lo : i + 1], step_s, t0_s + lo * step_s)
    return X, level, eps


def _matrix(x: np.ndarray, step_s: float, t0_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The feature matrix of a history whose lone outliers were damped."""
    n = len(x)
    zeros = (x == 0).astype(float)
    gaps = np.isnan(x).astype(float)
    sq = x * x

    means: dict[tuple[int, int], np.ndarray] = {}  # each rolling mean once: (id of the series, width)

    def mean(width: int, back: int = 0, series: np.ndarray = x) -> np.ndarray:
        """Mean of ``series`` over ``width`` steps ending ``back`` steps before each origin."""
        key = (id(series), width)
        if key not in means:
            means[key] = rolling_mean(series, width)
        return _shift(means[key], back)

    w10, w1h, w1d = _LEVEL, _HOUR, DAY_STEPS
    m10, m1h, m1d = mean(w10), mean(w1h), mean(w1d)
    level = np.where(np.isnan(m10), m1h, m10)
    level = np.where(np.isnan(level), m1d, level)
    eps = 0.05 * np.nan_to_num(m1h) + 0.05 * np.nan_to_num(m1d) + 1e-9
    cols: list[np.ndarray] = [_ratio(mean(1, k), level, eps) for k in _LAGS]
    cols += [_ratio(mean(k), level, eps) for k in _MEANS]
    cols.append(_ratio(mean(w10, w10), level, eps))
    with np.errstate(invalid="ignore"):
        sd = np.sqrt(np.maximum(mean(w1h, 0, sq) - m1h * m1h, 0.0))
        cols.append(np.clip(np.nan_to_num(sd / (m1h + eps)), 0.0, CLIP))
    cols.append(np.nan_to_num(mean(w1h, 0, zeros)))
    cols.append(mean(w1h, 0, gaps))
    # Seasonal shape: 10-min means around the same time yesterday / last week, at offsets ahead of it.
    has = []
    for p, offsets in ((DAY_STEPS, _DAILY_OFFSETS), (WEEK_STEPS, _WEEKLY_OFFSETS)):
        base = mean(w10, p - _HALF)  # the 10-step mean centred on (origin - period)
        for o in offsets:
            val = mean(w10, p - _HALF - o)
            cols.append(_ratio(val, level, eps) if o == 0 else _ratio(val, base, eps))
        has.append((~np.isnan(base)).astype(float))
    cols += has
    tod, dow = _phase(t0_s / step_s + np.arange(n) + 1)  # end of each origin step, in steps
    cols += [np.sin(tod), np.cos(tod), np.sin(2 * tod), np.cos(2 * tod)]
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


def to_rate(z: np.ndarray, level: np.ndarray | float, eps: np.ndarray | float) -> np.ndarray:
    """Inverse of the target transform: log ratio to a rate (never negative)."""
    return np.maximum((level + eps) * np.exp(z) - eps, 0.0)
