"""The demand forecaster: median and quantile forecasts of a demand rate up to a horizon.

A ridge regression (scikit-learn) on level-free log-ratio features (``features.py``) predicts the log
ratio of the rate ``h`` steps ahead to the recent level, for every ``h`` at once. It starts from a prior
model trained on public traces (``prior.py``) and, once the deployment has ``own_min_history_steps``
of its own history, refits every ``refit_every_steps`` with a ridge penalty that pulls it towards the
prior rather than towards zero. Quantiles are conformal: the empirical quantiles, per horizon, of the
errors this forecaster made on this series (or would have made on a history it is handed, as after a
restart; the prior's errors until enough have been seen),
so the p90 stays calibrated where the series is harder or easier than the public traces, but never
narrower than the noise of counting arrivals at the median rate over one step (Poisson, each arrival
worth ``arrival_size`` demand units: tokens per request where demand is counted in tokens): on a series
with no noise of its own, all errors alike would give a p90 equal to the median. A new series that is
calmer than the public traces gets its own, narrower p90 sooner (from ``calib_early`` scored forecasts,
while the prior's is wider); a burstier one keeps the prior's until ``calib_min``. The median it
reports combines the model's with persistence (the last step's rate), each weighted by the other's recent
absolute error at that horizon, so it is no worse than persistence where the past explains little of the
future; the quantiles above it are the model's.

Every history requirement is a number of steps, like the features: the prior applies at any ``step_s``
(one step stands for one minute of the traces it was trained on), so a forecaster at 5-s steps forecasts
after its first few steps just as one at 60-s steps does. The model forecasts as many steps ahead as the
prior was trained for (``model_steps_``, 60); a longer horizon holds the last of them (median and quantiles)
for the steps past it, so the forecast always reaches the horizon asked for.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np
from sklearn.linear_model import Ridge

from foresail.autoscaler import features
from foresail.autoscaler import prior as prior_file
from foresail.autoscaler.prior import PriorModel, load_prior

MAX_RATE = 1e12  # demand units per second: a larger sample is a metrics fault (no deployment serves that much)


@dataclass
class Forecast:
    """A forecast made at ``origin_s`` (the end of the last complete step) for the steps after it."""

    ready: bool
    reason: str
    origin_s: float = math.nan
    step_s: float = 60.0
    median: np.ndarray = field(default_factory=lambda: np.zeros(0))  # rate at origin + (k+1) * step
    quantiles: dict[float, np.ndarray] = field(default_factory=dict)
    source: str = "none"  # "prior" or "own"

    @property
    def horizons_s(self) -> np.ndarray:
        """Seconds after the origin at which each forecast step ends."""
        return (np.arange(len(self.median)) + 1) * self.step_s

    def window(self, start_s: float, end_s: float, q: float | None = None) -> float:
        """Highest forecast (median, or quantile ``q``) over steps that overlap ``[start_s, end_s]``."""
        values = self.median if q is None else self.quantiles[q]
        ends = self.origin_s + self.horizons_s
        mask = (ends > start_s) & (ends - self.step_s < end_s)
        if not mask.any():
            mask = np.zeros(len(ends), bool)
            mask[-1] = True
        return float(values[mask].max())


def _hold_last(values: np.ndarray, steps: int) -> np.ndarray:
    """``values`` lengthened to ``steps`` by repeating its last one."""
    return np.concatenate((values, np.full(steps - len(values), values[-1]))) if steps > len(values) else values


class DemandForecaster:
    """Median + quantile forecaster of a demand rate sampled at any spacing.

    Parameters follow scikit-learn's convention: hyper-parameters here, learned state in attributes
    ending in ``_``. Feed it with ``fit``/``partial_fit`` (arrays) or ``observe`` (one sample), ask with
    ``predict(now_s)``.
    """

    def __init__(
        self,
        step_s: float = 60.0,
        horizon_s: float = 3600.0,
        quantiles: tuple[float, ...] = (0.5, 0.9),
        alpha: float = 300.0,
        prior: PriorModel | str | None = "default",
        min_history_steps: int = 3,
        own_min_history_steps: int = 2 * features.DAY_STEPS,
        max_history_steps: int = 15 * features.DAY_STEPS,
        refit_every_steps: int = 360,
        calib_size: int = 1440,
        calib_min: int = 60,
        calib_early: int = 20,
        combine_halflife_steps: float = 360.0,
        arrival_size: float = 1.0,
    ) -> None:
        self.step_s = step_s
        self.horizon_s = horizon_s
        self.quantiles = quantiles
        self.alpha = alpha
        self.prior = prior
        self.min_history_steps = min_history_steps
        self.own_min_history_steps = own_min_history_steps
        self.max_history_steps = max_history_steps
        self.refit_every_steps = refit_every_steps
        self.calib_size = calib_size
        self.calib_min = calib_min
        self.calib_early = calib_early
        self.combine_halflife_steps = combine_halflife_steps
        self.arrival_size = arrival_size  # demand units per arrival; may be updated between predictions
        self._reset()

    # ---- state -------------------------------------------------------------------------------
    def _reset(self) -> None:
        self.prior_: PriorModel | None = load_prior() if self.prior == "default" else self.prior  # type: ignore[assignment]
        self.horizon_steps_ = max(1, math.ceil(self.horizon_s / self.step_s - 1e-9))  # the steps forecast
        self._lookback = features.LOOKBACK_STEPS
        # the steps the model forecasts (and scores): those the prior was trained for; the rest hold the last
        self.model_steps_ = self.horizon_steps_
        if self.prior_ is not None:
            self.model_steps_ = min(self.horizon_steps_, self.prior_.horizon_steps)
        self.start_bucket_: int | None = None  # absolute bucket index of history_[0]
        self.last_seen_: int | None = None  # absolute bucket index of the last step with data (the arrays grow ahead)
        self.newest_: int | None = None  # the newest bucket covered: the history keeps kept_steps up to it
        self.sums_ = np.zeros(0)
        self.weights_ = np.zeros(0)
        self.coef_: np.ndarray | None = None  # (horizons, features) of the own model
        self.intercept_: np.ndarray | None = None
        self.fitted_at_bucket_: int | None = None
        self.n_fits_ = 0
        # conformal errors: ring buffer per horizon, and the forecasts awaiting their actuals
        self.errors_ = np.full((self.model_steps_, self.calib_size), np.nan)
        self.n_errors_ = np.zeros(self.model_steps_, dtype=int)
        self._pending: dict[int, tuple[np.ndarray, float, float, np.ndarray, float]] = {}
        # recent absolute errors per horizon (exponentially weighted) of the model's median and of persistence
        self.model_abs_error_ = [0.0] * self.model_steps_
        self.persistence_abs_error_ = [0.0] * self.model_steps_
        self._qcache: dict[float, np.ndarray] = {}
        self._qcache_at = -1
        self._cache: tuple[int, Forecast] | None = None
        self._scored: int | None = None  # the last bucket the pending forecasts were scored on

    @property
    def history_(self) -> np.ndarray:
        """Mean rate per step (NaN where nothing was observed)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.weights_ > 0, self.sums_ / np.maximum(self.weights_, 1e-12), np.nan)

    def history_reaches(self, time_s: float) -> bool:
        """True when the history (gaps included) goes back to ``time_s``."""
        return self.start_bucket_ is not None and math.floor(time_s / self.step_s) >= self.start_bucket_

    def history_peak(self, start_s: float, end_s: float, complete: bool = False) -> float | None:
        """Highest rate recorded over the steps that overlap ``[start_s, end_s)``; None if none was (with
        ``complete``, unless every one was)."""
        if self.start_bucket_ is None or end_s <= start_s:
            return None
        first = max(math.floor(start_s / self.step_s) - self.start_bucket_, 0)
        last = min(math.ceil(end_s / self.step_s) - self.start_bucket_, len(self.sums_))
        if last <= first:
            return None
        seen = self.weights_[first:last] > 0
        whole = math.ceil(end_s / self.step_s) - math.floor(start_s / self.step_s)
        if not seen.any() or (complete and (int(seen.sum()) < whole)):
            return None
        return float((self.sums_[first:last][seen] / self.weights_[first:last][seen]).max())

    @property
    def kept_steps(self) -> int:
        """How many steps the history keeps."""
        return max(self.max_history_steps, self._lookback)

    def _ensure(self, first: int, last: int) -> int | None:
        """Grow the history arrays to cover absolute buckets ``first..last`` and drop what is too old: the
        history keeps the ``kept_steps`` buckets up to the newest it has covered. Its first bucket; None, changing
        nothing, where all of them are older than that: no sample, however far off the clock, allocates more."""
        newest = last if self.newest_ is None else max(last, self.newest_)
        first = max(first, newest - self.kept_steps + 1)
        if first > last:
            return None
        self.newest_ = newest
        if self.start_bucket_ is None:
            self.start_bucket_ = first
        if first < self.start_bucket_:
            pad = self.start_bucket_ - first
            self.sums_ = np.concatenate((np.zeros(pad), self.sums_))
            self.weights_ = np.concatenate((np.zeros(pad), self.weights_))
            self.start_bucket_ = first
        drop = newest - self.start_bucket_ + 1 - self.kept_steps
        if drop > 0:
            self.sums_ = self.sums_[drop:]
            self.weights_ = self.weights_[drop:]
            self.start_bucket_ += drop
        need = last - self.start_bucket_ + 1
        if need > len(self.sums_):
            grow = max(need - len(self.sums_), 256)
            self.sums_ = np.concatenate((self.sums_, np.zeros(grow)))
            self.weights_ = np.concatenate((self.weights_, np.zeros(grow)))
        return self.start_bucket_

    def _add(self, start_s: float, end_s: float, rate: float, weigh: bool = True) -> None:
        """Record that the rate was ``rate`` over ``[start_s, end_s)`` (spread over the buckets it covers);
        without ``weigh``, add ``rate`` to what was recorded there instead."""
        if not math.isfinite(rate) or end_s <= start_s:
            return
        b0 = math.floor(start_s / self.step_s)
        b1 = math.floor((end_s - 1e-9) / self.step_s)
        start = self._ensure(b0, b1)
        if start is None:
            return
        for b in range(max(b0, start), b1 + 1):
            lo = max(start_s, b * self.step_s)
            hi = min(end_s, (b + 1) * self.step_s)
            if hi > lo:
                # a revision subtracts: where the outlier dwarfed the rest, rounding must not leave it below zero
                self.sums_[b - start] = max(self.sums_[b - start] + rate * (hi - lo), 0.0)
                if weigh:
                    self.weights_[b - start] += hi - lo
                self.last_seen_ = b if self.last_seen_ is None else max(self.last_seen_, b)

    def observe(self, time_s: float, rate: float | None, duration_s: float | None = None) -> None:
        """Add one sample: the mean rate over the ``duration_s`` (default one step) ending at ``time_s``.

        ``None``, NaN, infinity or a rate above ``MAX_RATE`` (a metrics fault, whose square would overflow
        the features) records nothing, which the forecaster treats as a gap.
        """
        if not math.isfinite(time_s):
            raise ValueError(f"time_s must be finite (Unix seconds), not {time_s}")
        duration = self.step_s if duration_s is None else duration_s
        if rate is None or not math.isfinite(rate) or rate > MAX_RATE:
            self._ensure(math.floor((time_s - 1e-9) / self.step_s), math.floor((time_s - 1e-9) / self.step_s))
            return
        self._add(time_s - duration, time_s, max(float(rate), 0.0))

    def revise(self, start_s: float, end_s: float, rate: float, new_rate: float) -> None:
        """Count the ``rate`` observed over ``[start_s, end_s)`` as ``new_rate`` (an outlier judged once the
        samples after it came); the next forecast is made again from the revised history."""
        if math.isfinite(new_rate) and 0 <= new_rate <= MAX_RATE:
            self._add(start_s, end_s, new_rate - rate, weigh=False)
            self._cache = None

    def partial_fit(self, times_s: np.ndarray, rates: np.ndarray,
                    revise: Callable[[np.ndarray], np.ndarray] | None = None) -> "DemandForecaster":
        """Append samples (rate over the interval ending at each time; any spacing, NaN = gap). ``revise``
        maps the history (``history_``) to the one to learn from before the model is fitted (the policy's
        judgement of outliers in a backfill); it changes only steps with data."""
        times = np.asarray(times_s, dtype=float)
        values = np.asarray(rates, dtype=float)
        if times.shape != values.shape or times.ndim != 1:
            raise ValueError("times_s and rates must be 1-D arrays of the same length")
        bad = np.flatnonzero(~np.isfinite(times))
        if len(bad):
            raise ValueError(f"times_s must be finite (Unix seconds); sample {int(bad[0])} is {times[bad[0]]}")
        if len(times) == 0:
            return self
        order = np.argsort(times, kind="stable")
        times, values = times[order], values[order]
        gaps = np.diff(times)
        typical = float(np.median(gaps)) if len(gaps) else self.step_s
        typical = typical if typical > 0 else self.step_s
        for k in range(len(times)):
            span = gaps[k - 1] if k > 0 else typical
            span = min(span, 2 * typical) if span > 0 else typical  # a long silence is a gap, not one sample
            self.observe(float(times[k]), float(values[k]), span)
        if revise is not None and self.start_bucket_ is not None:
            revised = revise(self.history_)
            ok = (self.weights_ > 0) & np.isfinite(revised)
            self.sums_ = np.where(ok, np.clip(revised, 0.0, MAX_RATE) * self.weights_, self.sums_)
            self._cache = None
        self._maybe_refit(force=True)
        self._calibrate_from_history()
        return self

    def fit(self, times_s: np.ndarray, rates: np.ndarray) -> "DemandForecaster":
        """Forget everything, learn from these samples (own model if there is enough history)."""
        self._reset()
        return self.partial_fit(times_s, rates)

    # ---- model -------------------------------------------------------------------------------
    def _n_observed(self) -> int:
        return int(np.count_nonzero(self.weights_ > 0))

    def _maybe_refit(self, force: bool = False) -> None:
        if self.start_bucket_ is None or self.last_seen_ is None:
            return
        last = self.last_seen_
        due = self.fitted_at_bucket_ is None or last - self.fitted_at_bucket_ >= self.refit_every_steps
        if not (due or force):
            return
        if self._n_observed() < self.own_min_history_steps:
            return
        x = self.history_[: last - self.start_bucket_ + 1]
        X, level, eps = features.make_features(x, self.step_s, self.start_bucket_ * self.step_s)
        H = self.model_steps_
        Y = features.make_targets(x, level, eps, np.arange(1, H + 1))
        rows = ~np.isnan(level) & ~np.isnan(Y).any(axis=1)
        if rows.sum() < 100:
            return
        X, Y = X[rows], Y[rows]
        base = np.zeros_like(Y) if self.prior_ is None else self.prior_.predict_z(X)[:, :H]
        model = Ridge(alpha=self.alpha).fit(X, Y - base)
        coef = np.atleast_2d(model.coef_)
        icpt = np.atleast_1d(model.intercept_)
        if self.prior_ is not None:
            coef = coef + self.prior_.coef[:H]
            icpt = icpt + self.prior_.intercept[:H]
        self.coef_, self.intercept_ = coef, icpt
        self.fitted_at_bucket_ = last
        self.n_fits_ += 1
        self._cache = None

    def _predict_z(self, X: np.ndarray) -> tuple[np.ndarray, str]:
        H = self.model_steps_
        if self.coef_ is not None:
            return X @ self.coef_.T + self.intercept_, "own"
        assert self.prior_ is not None
        return self.prior_.predict_z(X)[:, :H], "prior"

    def _record_errors(self, bucket: int, x_last: float) -> None:
        """Score the pending forecasts whose target is the bucket that just completed."""
        if not math.isfinite(x_last):
            return
        for origin in [o for o in self._pending if o < bucket - self.model_steps_]:
            del self._pending[origin]
        decay = 0.5 ** (1.0 / self.combine_halflife_steps)
        for origin, (z, level, eps, median, persisted) in self._pending.items():
            h = bucket - origin
            if 1 <= h <= self.model_steps_:
                actual = features.CLIP if level + eps <= 0 else math.log((x_last + eps) / (level + eps))
                actual = min(max(actual, -features.CLIP), features.CLIP)
                j = h - 1
                self.errors_[j, self.n_errors_[j] % self.calib_size] = actual - z[j]
                self.n_errors_[j] += 1
                self.model_abs_error_[j] = decay * self.model_abs_error_[j] + abs(float(median[j]) - x_last)
                self.persistence_abs_error_[j] = decay * self.persistence_abs_error_[j] + abs(persisted - x_last)

    def _calibrate_from_history(self) -> None:
        """Where none of its own forecasts were scored yet (a restart's backfill, a new horizon), score the
        model on the history it holds as if it had forecast each of its last ``calib_size`` steps: the
        quantiles and the median's weighting against persistence are this series' from the first forecast."""
        if self.start_bucket_ is None or self.n_errors_.any() or (self.coef_ is None and self.prior_ is None):
            return
        seen = np.nonzero(self.weights_ > 0)[0]
        if len(seen) == 0:
            return
        x = self.history_[: seen[-1] + 1]
        H = self.model_steps_
        X, level, eps = features.make_features(x, self.step_s, self.start_bucket_ * self.step_s)
        first = max(0, len(x) - self.calib_size - H)
        x, level, eps = x[first:], level[first:], eps[first:]
        z, _ = self._predict_z(X[first:])
        err = features.make_targets(x, level, eps, np.arange(1, H + 1)) - z  # NaN: level or target not known
        scored = [np.nonzero(~np.isnan(err[:, j]))[0][-self.calib_size :] for j in range(H)]
        for j, rows in enumerate(scored):
            self.errors_[j, : len(rows)] = err[rows, j]
            self.n_errors_[j] = len(rows)
        self._qcache, self._cache = {}, None
        offset = self._quantile_offsets(self.start_bucket_ + seen[-1])[0.5]
        decay = 0.5 ** (1.0 / self.combine_halflife_steps)
        persisted = np.where(np.isnan(x), level, x)
        for j, rows in enumerate(scored):
            actual = x[rows + j + 1]
            median = features.to_rate(z[rows, j] + offset[j], level[rows], eps[rows])
            weight = decay ** np.arange(len(rows) - 1, -1, -1)
            self.model_abs_error_[j] = float(np.sum(weight * np.abs(median - actual)))
            self.persistence_abs_error_[j] = float(np.sum(weight * np.abs(persisted[rows] - actual)))

    def _quantile_offsets(self, bucket: int) -> dict[float, np.ndarray]:
        """Per-horizon log-scale offsets for each quantile: own errors where enough, else the prior's (or the
        own ones above the median, where ``calib_early`` were scored and they are the narrower)."""
        if self._qcache and 0 <= bucket - self._qcache_at < 30:  # not from a later bucket: the clock went back
            return self._qcache
        H = self.model_steps_
        out: dict[float, np.ndarray] = {}
        levels = sorted(set(self.quantiles) | {0.5})
        own = self.n_errors_ >= self.calib_min
        early = (self.n_errors_ >= self.calib_early) & ~own
        mine = np.full((len(levels), H), np.nan)  # the own errors' quantiles, where any were scored
        if (own | early).any():
            mine[:, own | early] = np.nanquantile(self.errors_[own | early], levels, axis=1)
        for k, q in enumerate(levels):
            base = self.prior_.residual_quantile(q)[:H] if self.prior_ is not None else np.zeros(H)
            vals = base.copy()
            vals[own] = mine[k, own]
            if q > 0.5:
                vals[early] = np.minimum(base[early], np.maximum(mine[k, early], out[0.5][early]))
            out[q] = vals
        self._qcache, self._qcache_at = out, bucket
        return out

    def _combine(self, median: np.ndarray, persisted: float, above: list[np.ndarray]) -> np.ndarray:
        """The model's median and persistence weighted by each other's recent absolute error, per horizon
        (the model's alone until ``calib_min`` of its forecasts were scored), kept below the quantiles above."""
        persist_err = np.array(self.persistence_abs_error_)
        total = np.array(self.model_abs_error_) + persist_err
        scored = (self.n_errors_ >= self.calib_min) & (total > 0)
        w = np.divide(persist_err, total, out=np.ones_like(total), where=scored)
        combined = w * median + (1.0 - w) * persisted
        for upper in above:
            combined = np.minimum(combined, upper)
        return combined

    def _ready_reason(self, source: str) -> str:
        """What a ready forecast comes from, and where it holds the last step the model forecasts."""
        if self.horizon_steps_ <= self.model_steps_:
            return f"{source} model"
        reach = self.model_steps_ * self.step_s
        return (f"{source} model (it forecasts {self.model_steps_} steps, +{reach:g} s; the steps up to "
                f"+{self.horizon_steps_ * self.step_s:g} s hold its +{reach:g} s forecast)")

    def predict(self, now_s: float) -> Forecast:
        """Forecast from the last step completed at ``now_s``; ``ready`` is False (with a reason) if it cannot."""
        if self.start_bucket_ is None:
            return Forecast(False, "no demand history yet", step_s=self.step_s)
        last_bucket = math.floor(now_s / self.step_s) - 1
        if self._cache is not None and self._cache[0] == last_bucket:
            return self._cache[1]
        self._maybe_refit()
        hi = last_bucket - self.start_bucket_ + 1
        if hi <= 0:
            return Forecast(False, "no complete step of demand history yet", step_s=self.step_s)
        lo = max(0, hi - self._lookback)  # the features look back one week and an hour at most
        w = self.weights_[lo:hi]
        with np.errstate(invalid="ignore", divide="ignore"):
            x = np.where(w > 0, self.sums_[lo:hi] / np.maximum(w, 1e-12), np.nan)
        if len(x) < hi - lo:
            x = np.concatenate((x, np.full(hi - lo - len(x), np.nan)))
        recent = x[-features.RECENT_STEPS :]
        n_recent = int(np.count_nonzero(~np.isnan(recent)))
        if self.coef_ is None and self.prior_ is None:
            missing = f" ({prior_file.PRIOR_PATH} is missing: reinstall foresail)" if self.prior == "default" else ""
            fc = Forecast(
                False,
                f"no prior model{missing} and only {self._n_observed()} steps of {self.step_s:g} s of history; "
                f"without a prior the forecaster needs {self.own_min_history_steps} steps of its own",
                step_s=self.step_s,
            )
        elif n_recent < self.min_history_steps:
            fc = Forecast(
                False,
                f"only {n_recent} of the last {features.RECENT_STEPS} steps of {self.step_s:g} s have demand data; "
                f"the forecaster needs {self.min_history_steps}",
                step_s=self.step_s,
            )
        else:
            if last_bucket != self._scored:  # not again for a forecast made again (``revise``)
                self._record_errors(last_bucket, float(x[-1]))
                self._scored = last_bucket
            X, lv, ep = features.last_features(x, self.step_s, (self.start_bucket_ + lo) * self.step_s)
            z, source = self._predict_z(X)
            z = z[0]
            offs = self._quantile_offsets(last_bucket)
            median = features.to_rate(z + offs[0.5], lv, ep)
            qs = {q: np.maximum(features.to_rate(z + offs[q], lv, ep), median if q >= 0.5 else 0) for q in offs}
            persisted = float(x[-1]) if math.isfinite(x[-1]) else lv
            self._pending[last_bucket] = (z, lv, ep, median, persisted)
            qs[0.5] = self._combine(median, persisted, [qs[q] for q in qs if q > 0.5])
            median = qs[0.5]
            noise = np.sqrt(self.arrival_size * median / self.step_s)  # of counting arrivals at the median
            for q in [q for q in qs if q > 0.5]:  # never narrower than that
                qs[q] = np.maximum(qs[q], median + NormalDist().inv_cdf(q) * noise)
            for q in [q for q in qs if q < 0.5]:  # the combination may have moved the median below them
                qs[q] = np.minimum(qs[q], median)
            qs = {q: _hold_last(v, self.horizon_steps_) for q, v in qs.items()}
            fc = Forecast(True, self._ready_reason(source), (last_bucket + 1) * self.step_s, self.step_s, qs[0.5],
                          qs, source)
        self._cache = (last_bucket, fc)
        return fc
