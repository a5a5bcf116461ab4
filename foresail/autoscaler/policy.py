"""The Foresail scaling policy: replicas = max(reactive floor, predicted need over the cold-start window).

The operator calls ``ForesailPolicy.decide`` every decision interval with the live metrics; the backtester
calls the same class. Scale-up happens at once; scale-down only to the highest recommendation of the last
``scale_down_stabilization_s`` (one that a forecast set, at least a cold start; none made for a lone
outlier once the interval after it shows it) and never below the reactive floor. Headroom comes from the
forecast quantile and widens when recent forecasts were too low. With ``slo_target`` set, an SLO governor
multiplies the need by a factor that rises after each decision whose queue could not drain within the SLO
and falls slowly otherwise, steering the share of such decisions to ``1 - slo_target`` (it buys attainment
with replicas; off by default). With scale to zero, no replica runs to count requests, so time at zero is
recorded as unknown unless the activator counts what arrives (``Observation.counted``). Without that count
a deployment goes to zero only where the same time a day and a week earlier was watched and quiet; with
it, after ``idle_s`` with no demand and none forecast. Either way it wakes ahead of demand that arrived a
day or a week earlier in the coming cold start, and does not go to zero while such demand is due. A
schedule (``schedules``) holds its floor from a horizon before its window opens until it closes; with
``learn_schedules`` the windows in which demand recurred at the same minute of the hour or time of day
(``recurrence.py``) are held too, looked for again every hour. Every decision says why in one sentence.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import deque
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
from numpy.typing import ArrayLike

from foresail.autoscaler.features import LONE, LONE_STEPS, WEEK_STEPS
from foresail.autoscaler.forecast import MAX_RATE, DemandForecaster, Forecast
from foresail.autoscaler.prior import PriorModel
from foresail.autoscaler.recurrence import Recurring, as_schedules, find_recurring
from foresail.autoscaler.schedule import Schedule, scheduled_floor

log = logging.getLogger(__name__)

LEARN_EVERY_S = 3600.0  # learn_schedules: how often windows are looked for (from a day of history on)
RECURRENCE_LAGS_S = ((86400.0, "a day"), (7 * 86400.0, "a week"))  # where demand that recurs is looked for
MIN_CHECKS = 10  # forecasts checked against demand before their miss rate counts
NEW_HIGH = 10.0  # a run as short as a lone outlier this many times its neighbours and the week before is let go


@dataclass(frozen=True)
class PolicyConfig:
    """What the policy needs to know about the deployment (all times in seconds)."""

    min_replicas: int = 1
    max_replicas: int = 10
    capacity: float = 1.0  # demand units per second one replica serves within the SLO
    cold_start_s: float = 120.0  # measured time from asking for a replica to it serving
    interval_s: float = 15.0  # decision interval
    quantile: float = 0.9  # forecast quantile that sizes the headroom
    scale_down_stabilization_s: float = 300.0
    scale_to_zero: bool = False
    idle_s: float = 600.0  # scale_to_zero: no demand for this long (and none forecast) allows 0 replicas
    predictive: bool = True  # False: reactive only
    queue_drain_s: float = 60.0  # queued demand is planned to drain within this time of replicas being ready
    error_window: int = 60  # recent forecasts checked for misses
    max_headroom: float = 2.0  # cap of the widening factor
    widen_to_peak: float = 1.5  # widening stops at this multiple of the burst window's peak demand (0: no limit)
    burst_window_s: float = 3600.0  # while forecasts fall short, hold the highest demand seen this long (0: never)
    trend_points: int = 6  # a sustained ramp over this many decisions is extrapolated to the horizon (0: never)
    trend_t: float = 6.0  # how significant (t statistic of the slope) a ramp must be to be extrapolated
    slo_target: float = 0.0  # share of decisions whose queue drains within slo_wait_s to steer for (0: off)
    slo_wait_s: float = 2.0  # queueing delay within which demand meets the SLO (the TTFT target)
    governor_rate: float = 0.05  # per minute: how fast the SLO governor's log-multiplier moves
    max_governor: float = 3.0  # cap of the SLO governor's multiplier
    schedules: tuple[Schedule, ...] = ()  # floors held from a horizon before each window opens until it closes
    learn_schedules: bool = False  # also hold the floors of windows recurring in the demand history (looked for hourly)
    unit: str = "req/s"
    rate_window_s: float = 60.0  # demand is a rate() over this window, which spreads a counter glitch over it

    def __post_init__(self) -> None:
        if self.capacity <= 0:
            raise ValueError("capacity must be positive")
        if self.min_replicas < 0 or self.max_replicas < max(self.min_replicas, 1):
            raise ValueError("need 0 <= min_replicas <= max_replicas and max_replicas >= 1")
        if self.interval_s <= 0 or self.cold_start_s < 0 or not self.rate_window_s > 0:
            raise ValueError("interval_s and rate_window_s must be positive and cold_start_s not negative")
        if not 0.5 <= self.quantile < 1:
            raise ValueError("quantile must be in [0.5, 1)")
        if self.widen_to_peak < 0:
            raise ValueError("widen_to_peak must not be negative (0: no limit)")
        if not (self.slo_target == 0 or 0.5 <= self.slo_target < 1):
            raise ValueError("slo_target must be 0 (off) or in [0.5, 1)")
        if self.slo_wait_s < 0 or self.max_governor < 1:
            raise ValueError("slo_wait_s must not be negative and max_governor must be at least 1")

    @property
    def horizon_s(self) -> float:
        """How far ahead a decision must look: a replica asked for now serves from now + cold start."""
        return self.cold_start_s + self.interval_s


@dataclass(frozen=True)
class Observation:
    """Live metrics for one decision; ``demand=None`` means the metrics are missing."""

    time_s: float
    demand: float | None  # mean demand rate over the last interval (units/s)
    waiting: float | None = None  # queued demand across replicas (units)
    ready_replicas: int = 0
    provisioned_replicas: int = 0  # ready + starting
    counted: bool = False  # the activator counts what arrives for this deployment: demand at zero replicas is known
    arrival_size: float = 1.0  # demand units one request counts for: 1 in requests, tokens per request in tokens


@dataclass
class Decision:
    """What to do and why."""

    time_s: float
    replicas: int
    action: str  # "scale up", "scale down", "hold"
    reactive_floor: int
    predicted_replicas: int | None
    forecast_median: float | None
    forecast_upper: float | None
    horizon_s: float
    forecast_ready: bool
    headroom: float
    reason: str

    def to_dict(self) -> dict:
        """JSON-safe form (for the custom resource's status)."""
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, float) and not math.isfinite(v):
                out[k] = None
            elif isinstance(v, float):
                out[k] = round(v, 4)
        return out


@dataclass
class _Need:
    """What one decision weighs (in replicas unless said otherwise), kept for its reason."""

    demand: float
    floor: int  # the reactive floor: current demand plus draining the backlog
    demand_floor: int  # current demand alone
    backlog_then: float  # the backlog expected when the replicas asked for now are ready (units)
    headroom: float = 1.0
    forecast: Forecast | None = None
    f_med: float | None = None  # median over the cold-start window (units/s)
    f_up: float | None = None  # upper quantile over it, widened or ramped (units/s)
    predicted: int | None = None
    widen_capped: bool = False
    ramped: bool = False
    burst: int = 0
    governor: float = 1.0
    governed: int = 0
    recurring: float = 0.0  # highest demand a day or a week ago over the coming horizon (units/s)
    recurring_lag: str = ""  # "a day" or "a week"
    woken: int = 0  # replicas a deployment at zero wakes to for that demand
    unseen: bool = False  # at zero replicas with nothing counting what arrives
    # a run judged a lone outlier now: (seconds, its peak, counted as, the week's highest before it; None where
    # it was over LONE times its neighbours)
    lone: tuple[float, float, float, float | None] | None = None


class ForesailPolicy:
    """Predictive autoscaling policy for one deployment (cheap per call; the forecaster refits rarely)."""

    def __init__(
        self,
        config: PolicyConfig,
        prior: PriorModel | str | None = "default",
        forecast_step_s: float = 60.0,
    ) -> None:
        self.config = config
        self._prior = prior
        self._step_s = forecast_step_s
        self.forecaster = self._new_forecaster()
        self._recs: deque[tuple[float, float, int]] = deque()  # (time made, expiry time, recommended replicas)
        self._recent: deque[tuple[float, float]] = deque(maxlen=max(config.trend_points, 1))
        self._peaks: deque[tuple[float, float]] = deque()  # (time, demand), decreasing: the recent peak first
        # (time, demand, peak, start of the interval the forecaster recorded at that demand or None) not judged yet
        self._fresh: deque[tuple[float, float, float, float | None]] = deque()
        self._before: float | None = None  # the demand of the interval before the oldest fresh one
        self._firsts: deque[tuple[float, float]] = deque()  # (step, peak) of first bursts let go in the last week
        self._checks: deque[tuple[float, float]] = deque()  # (target time, forecast upper) awaiting actuals
        self._asked: deque[float] = deque()  # when this policy asked for each replica still starting, oldest first
        self._misses: deque[bool] = deque(maxlen=config.error_window)
        self._last_demand_s: float | None = None
        self._last_obs_s: float | None = None
        self._log_governor = 0.0
        self.last_forecast: Forecast | None = None
        self.learned: tuple[Recurring, ...] = ()  # windows found in the history (learn_schedules)
        self._learned: tuple[Schedule, ...] = ()
        self._learned_at: float | None = None

    def _new_forecaster(self, arrival_size: float = 1.0) -> DemandForecaster:
        c = self.config
        return DemandForecaster(
            step_s=self._step_s,
            horizon_s=c.horizon_s + self._step_s,
            quantiles=tuple(sorted({0.5, c.quantile})),
            prior=self._prior,
            arrival_size=arrival_size,
        )

    # ---- history and configuration ----------------------------------------------------------
    def warm_start(self, times_s: ArrayLike, demand: ArrayLike) -> None:
        """Backfill demand history (Unix seconds, rate in units/s, any spacing, NaN = gap). Its lone outliers
        and first bursts are let go as ``decide`` would have let them go (``let_go_runs``), and the first
        bursts remembered for a week: after a restart they neither bend the forecasts nor count as seen. Its
        last steps, whose next is not known yet, are left to the decisions that follow (``_hand_over``). The last
        demand seen stays the latest of the history's and the decisions' (a backfill may come after decisions)."""
        self.forecaster.partial_fit(np.asarray(times_s, float), np.asarray(demand, float), revise=self._let_go)
        self._hand_over()
        times, d = np.asarray(times_s, float), np.asarray(demand, float)
        seen = (np.nan_to_num(d) > 0) & np.isfinite(times)
        if seen.any():  # the latest, in whatever order the samples come
            self._last_demand_s = max(float(times[seen].max()), self._last_demand_s or -math.inf)

    def _let_go(self, history: np.ndarray) -> np.ndarray:
        """The backfilled ``history`` with the runs ``decide`` lets go counted as the demand around them; the
        first bursts among them join the week's record (``_firsts``)."""
        revised, firsts = let_go_runs(history, self._lone_steps)
        start = self.forecaster.start_bucket_ or 0
        self._firsts.extend(((start + j) * self._step_s, peak) for j, peak in firsts)
        return revised

    def _hand_over(self) -> None:
        """Make the backfill's last ``_lone_steps`` steps the fresh intervals ``decide`` judges, and the step
        before them the one before those: a restart within two steps of a lone outlier or a first burst lets
        it go once the decisions after it show it, as without the restart. The steps of the burst window
        before them are burst memory's peaks, as they would be without the restart."""
        f = self.forecaster
        if f.start_bucket_ is None or f.last_seen_ is None:
            return
        hist, last = f.history_, f.last_seen_ - f.start_bucket_
        first = max(0, last - self._lone_steps + 1)
        self._before = float(hist[first - 1]) if first > 0 and not math.isnan(hist[first - 1]) else None
        self._fresh.clear()
        self._peaks.clear()
        window = math.ceil(self.config.burst_window_s / self._step_s)
        for b in range(max(0, first - window), last + 1):
            if not math.isnan(hist[b]):  # the demand over the part of the step observed, up to its end
                start, rate = (f.start_bucket_ + b) * self._step_s, float(hist[b])
                end = start + min(float(f.weights_[b]), self._step_s)
                if b >= first:
                    self._fresh.append((end, rate, rate, start))
                    continue
                while self._peaks and self._peaks[-1][1] <= rate:
                    self._peaks.pop()
                self._peaks.append((end, rate))

    def reconfigure(self, **changes: object) -> None:
        """Apply a spec change or a newly measured cold start; the demand history is kept."""
        unknown = set(changes) - {f.name for f in fields(PolicyConfig)}
        if unknown:
            raise TypeError(f"unknown PolicyConfig field(s): {', '.join(sorted(unknown))}")
        old = self.config
        self.config = replace(old, **changes)  # type: ignore[arg-type]
        if self.config.horizon_s != old.horizon_s or self.config.quantile != old.quantile:
            hist, start = self.forecaster.history_, self.forecaster.start_bucket_
            self.forecaster = self._new_forecaster(self.forecaster.arrival_size)
            if start is not None:
                ok = ~np.isnan(hist)
                t_end = (start + np.arange(len(hist)) + 1) * self._step_s
                self.forecaster.partial_fit(t_end[ok], hist[ok])
        if self.config.error_window != old.error_window:
            self._misses = deque(self._misses, maxlen=self.config.error_window)
        if (self.config.quantile, self.config.predictive) != (old.quantile, old.predictive):
            self._misses.clear()  # another quantile's record, or none to keep while reactive
            self._checks.clear()
        if self.config.learn_schedules != old.learn_schedules:
            self.learned, self._learned, self._learned_at = (), (), None  # looked for at the next decision

    def _miss_rate(self) -> float | None:
        """Share of the recent forecasts checked whose upper quantile fell short; None before ``MIN_CHECKS``."""
        return sum(self._misses) / len(self._misses) if len(self._misses) >= MIN_CHECKS else None

    def forecast_coverage(self) -> tuple[float, int] | None:
        """Share of the recent forecasts checked (the last ``error_window``) whose upper quantile at the
        horizon covered the demand that came, and how many were checked; None before ``MIN_CHECKS``."""
        miss_rate = self._miss_rate()
        return None if miss_rate is None else (1.0 - miss_rate, len(self._misses))

    def resume_coverage(self, coverage: float, checked: int, quantile: float) -> None:
        """Carry on from the record of recent forecast checks (what a restart finds in the status: the share
        ``coverage`` of the last ``checked`` whose ``quantile`` covered the demand), its misses spread evenly;
        ignored unless the quantile is this policy's, which forecasts."""
        if not (0 <= coverage <= 1 and checked >= 1 and quantile == self.config.quantile and self.config.predictive):
            return
        n = min(checked, self.config.error_window)
        misses = round((1.0 - coverage) * n)
        self._misses.clear()
        self._misses.extend((k + 1) * misses // n > k * misses // n for k in range(n))

    def _covered(self) -> str:
        """The recent coverage, for the reason of a widened headroom (which needs ``MIN_CHECKS`` checks)."""
        coverage = self.forecast_coverage()
        if coverage is None:
            return ""
        return f": p{round(self.config.quantile * 100)} covered {100 * coverage[0]:.0f} % of the last {coverage[1]}"

    # ---- the decision -----------------------------------------------------------------------
    def _headroom(self, obs: Observation, foretold: bool) -> float:
        """Widening factor from how often recent forecasts fell short of what happened (not counting
        demand a schedule foretold)."""
        c = self.config
        if obs.demand is not None:
            while self._checks and self._checks[0][0] <= obs.time_s:
                _, upper = self._checks.popleft()
                if not foretold:
                    self._misses.append(obs.demand > upper * 1.0001 + 1e-12)
        miss_rate = self._miss_rate()
        if miss_rate is None:
            return 1.0
        excess = max(0.0, miss_rate - (1.0 - c.quantile))
        return min(c.max_headroom, 1.0 + 2.0 * excess)

    def _governor(self, obs: Observation, waiting: float) -> float:
        """The SLO governor's multiplier (1 when off): adaptive in the manner of conformal inference, it rises
        after each decision whose queue cannot drain within ``slo_wait_s`` on the ready replicas and falls
        slowly otherwise, so that in the long run a share ``1 - slo_target`` of decisions miss."""
        c = self.config
        if not c.slo_target:
            return 1.0
        missed = waiting > max(int(obs.ready_replicas), 0) * c.capacity * c.slo_wait_s + 1e-9
        step = c.governor_rate * c.interval_s / 60.0 * (float(missed) - (1.0 - c.slo_target))
        self._log_governor = min(max(self._log_governor + step, 0.0), math.log(c.max_governor))
        return math.exp(self._log_governor)

    @property
    def governor(self) -> float:
        """The SLO governor's multiplier (1 when off or not raised)."""
        return math.exp(self._log_governor) if self.config.slo_target else 1.0

    def resume_governor(self, multiplier: float) -> None:
        """Carry on from the SLO governor's ``multiplier`` (what an operator restart finds in the status), up to
        ``max_governor``; ignored unless the governor is on and it is at least 1."""
        if self.config.slo_target and multiplier >= 1.0:
            self._log_governor = min(math.log(multiplier), math.log(self.config.max_governor))

    def _ramp(self) -> float | None:
        """Demand at now + horizon if the last decisions show a steady, significant ramp up, else None.

        The learned forecaster is level-free and damped; a fresh ramp that its history has never shown
        (a launch, a batch job starting) is extrapolated linearly instead, capped at 3x today's demand.
        The least-squares line is written out: ``scipy.stats.linregress`` gives the same figures but its
        per-call overhead was half of a whole decision's time.
        """
        c = self.config
        if c.trend_points < 3 or len(self._recent) < c.trend_points:
            return None
        t, y = (np.array(v, float) for v in zip(*self._recent, strict=True))
        if t[0] == t[-1]:  # no time has passed: no slope
            return None
        x = t - t[-1]  # so the intercept is the fitted demand now
        dx, dy = x - x.mean(), y - y.mean()
        sxx = float(dx @ dx)
        slope = float(dx @ dy) / sxx
        resid = dy - slope * dx
        stderr = math.sqrt(float(resid @ resid) / (len(x) - 2) / sxx)
        if slope <= 0 or (stderr > 0 and slope / stderr < c.trend_t):
            return None
        intercept = float(y.mean()) - slope * float(x.mean())
        return min(intercept + slope * c.horizon_s, 3.0 * max(float(y[-1]), 1e-9))

    def _absorb_clock_jump(self, now_s: float) -> None:
        """Count a wall-clock jump (backwards, or forward by more than 10 intervals) as one interval:
        shift the times the stabilisation window, burst memory, ramp, forecast checks, asks, idle timer and the
        hourly look for recurring windows keep.
        A jump longer than the forecaster's history (a clock read in milliseconds, or reset to 1970) leaves
        that history nowhere to stand on the new clock: the forecaster starts again, from the prior."""
        last, self._last_obs_s = self._last_obs_s, now_s
        if last is None or 0 <= now_s - last <= 10 * self.config.interval_s:
            return
        if abs(now_s - last) > self.forecaster.kept_steps * self._step_s:
            log.warning("the clock jumped by %.3g s, more than the demand history's %.3g days: the forecaster "
                        "starts again from the prior", now_s - last, self.forecaster.kept_steps * self._step_s / 86400)
            self.forecaster = self._new_forecaster(self.forecaster.arrival_size)
        shift = now_s - last - self.config.interval_s
        self._recs = deque((m + shift, t + shift, r) for m, t, r in self._recs)
        self._peaks = deque((t + shift, d) for t, d in self._peaks)
        self._fresh = deque((t + shift, d, k, None) for t, d, k, _ in self._fresh)  # the history keeps its clock
        self._checks = deque((t + shift, u) for t, u in self._checks)
        self._asked = deque(t + shift for t in self._asked)
        self._recent = deque(((t + shift, d) for t, d in self._recent), maxlen=self._recent.maxlen)
        if self._last_demand_s is not None:
            self._last_demand_s += shift
        if self._learned_at is not None:
            self._learned_at += shift

    def decide(self, obs: Observation) -> Decision:
        """One decision for the metrics in ``obs``."""
        c = self.config
        self._absorb_clock_jump(obs.time_s)
        current = max(int(obs.provisioned_replicas), 0)
        while len(self._asked) > max(current - max(int(obs.ready_replicas), 0), 0):  # the oldest became ready
            self._asked.popleft()
        if obs.demand is None or not math.isfinite(obs.demand) or obs.demand > MAX_RATE:
            return self._without_data(obs.time_s, current)
        demand = max(float(obs.demand), 0.0)
        waiting = float(obs.waiting or 0.0)
        waiting = max(waiting, 0.0) if math.isfinite(waiting) else 0.0  # an unreadable queue counts as none
        if math.isfinite(obs.arrival_size) and obs.arrival_size > 0:
            self.forecaster.arrival_size = float(obs.arrival_size)
        # at zero replicas no pod counts requests: what arrived is unknown, not zero, unless the activator counted it
        unseen = c.scale_to_zero and current == 0 and not obs.counted
        self.forecaster.observe(obs.time_s, None if unseen else demand, c.interval_s)
        self._learn(obs.time_s)
        if demand > 0 or waiting > 0 or self._last_demand_s is None:
            self._last_demand_s = obs.time_s
        need = self._reactive_need(obs, demand, waiting)
        need.unseen = unseen
        foretold = self._foretold(obs.time_s, demand)
        need.headroom = self._headroom(obs, foretold)
        peak = self._remember_peak(obs.time_s, demand, 0.0 if foretold else demand,
                                   None if unseen else obs.time_s - c.interval_s, need)
        self._recent.append((obs.time_s, demand))
        if c.predictive and not unseen:  # at zero the forecaster's recent history is a gap: it would be stale
            self._predict(obs, need, peak)
        need.burst = math.ceil(peak / c.capacity - 1e-9) if need.headroom > 1.0 and c.predictive and not unseen else 0
        target = max(need.floor, need.predicted or 0, need.burst)
        steady = max(need.demand_floor, need.predicted or 0, need.burst)  # the same without the backlog's drain
        need.governor = self._governor(obs, waiting)
        if need.governor > 1.0:
            need.governed = math.ceil(need.governor * max(need.floor, need.predicted or 0) - 1e-9)
        target = max(target, need.governed)

        idle_for = obs.time_s - self._last_demand_s
        quiet = (c.scale_to_zero and demand == 0 and waiting == 0 and idle_for >= c.idle_s
                 and (need.f_up is None or need.f_up < 0.5 * c.capacity))
        if c.scale_to_zero and (current == 0 or quiet):  # what came a day or a week earlier decides
            self._recurrence(obs.time_s, need)
        if current == 0 and need.recurring > 0:
            need.woken = max(math.ceil(need.recurring / c.capacity - 1e-9), c.min_replicas, 1)
            target, steady = max(target, need.woken), max(steady, need.woken)
        # at zero only the activator's count sees demand: without it, zero is safe only where a quiet spell was seen
        to_zero = quiet and need.recurring == 0 and (obs.counted or self._was_idle(obs.time_s))
        if to_zero:
            target = steady = 0
        elif not (c.scale_to_zero and current == 0 and target == 0):  # else stay at zero: nothing demanded
            lower = max(c.min_replicas, 1) if c.scale_to_zero else c.min_replicas
            target, steady = (min(max(r, lower), c.max_replicas) for r in (target, steady))
        from_forecast = (need.predicted is not None and need.predicted >= need.floor
                         and min(need.predicted, c.max_replicas) == target)
        replicas = self._stabilise(obs.time_s, current, target, steady, from_forecast, to_zero)

        why = self._reason(need, target, from_forecast, f"no demand for {idle_for:.0f} s" if to_zero else None)
        why += self._held_back(need, quiet and not to_zero and replicas > 0, replicas, target) + self._lone_reason(need)
        replicas, why = self._scheduled(obs.time_s, replicas, why)
        self._record_asks(obs.time_s, current, replicas)
        return Decision(
            obs.time_s, replicas, action_of(current, replicas), need.floor, need.predicted, need.f_med, need.f_up,
            c.horizon_s, bool(need.forecast is not None and need.forecast.ready), need.headroom,
            f"{_verb(current, replicas)}: {why}",
        )

    def _without_data(self, now_s: float, current: int) -> Decision:
        """Hold the replicas (within the bounds, or a schedule's floor; at zero with scale to zero, zero) while
        demand metrics are missing (or above ``MAX_RATE``, a metrics fault). What is held counts as a recommendation
        of the scale-down stabilisation window, and demand not seen is not quiet: once the metrics are back, a
        scale-down waits the window, and a scale to zero the idle time, from the last decision without them."""
        c = self.config
        self.forecaster.observe(now_s, None, c.interval_s)
        self._last_demand_s = now_s
        hold = min(max(current, 0 if c.scale_to_zero and current == 0 else c.min_replicas), c.max_replicas)
        why = "demand metrics are missing or unusable, so capacity is held (no scale-down without data)"
        if hold != current:
            why += f" within minReplicas {c.min_replicas} and maxReplicas {c.max_replicas}"
        replicas, why = self._scheduled(now_s, hold, why)
        self._recs.append((now_s, now_s + c.scale_down_stabilization_s, replicas))  # held as if recommended
        self._record_asks(now_s, current, replicas)
        return Decision(now_s, replicas, action_of(current, replicas), hold, None, None, None, c.horizon_s,
                        False, 1.0, f"{_verb(current, replicas)}: {why}")

    def _held_back(self, need: _Need, not_to_zero: bool, replicas: int, target: int) -> str:
        """What the reason adds where the replicas stay above ``target``: why not to zero while quiet, and the
        scale-down stabilisation window's limit."""
        c = self.config
        why = ""
        if not_to_zero:
            why += ("; not scaling to zero: " + (
                f"{need.recurring:.3g} {c.unit} arrived {need.recurring_lag} ago within the next {c.horizon_s:.0f} s"
                if need.recurring > 0 else
                "this time a day and a week earlier was not watched and quiet"))
        if replicas > target:
            why += (f"; scale-down limited to {replicas} by the highest recommendation still in its "
                    f"stabilisation window ({c.scale_down_stabilization_s:.0f} s; a forecast's lasts a cold start, "
                    f"{c.cold_start_s:.0f} s)")
        return why

    def _lone_reason(self, need: _Need) -> str:
        """What the reason adds where this decision judged the intervals before it a lone outlier."""
        if need.lone is None:
            return ""
        span, peak, ref, high = need.lone
        u = self.config.unit
        why = (f"more than {LONE:.0f}x the demand before and after them" if high is None else
               f"more than {NEW_HIGH:.0f}x the demand before and after them and the week's highest before them, "
               f"{high:.3g} {u}")
        return (f"; the {span:.0f} s of demand before the last {self.config.interval_s:.0f} s, up to {peak:.3g} {u}, "
                f"were a lone outlier ({why}): counted as {ref:.3g} {u} in the forecaster's history and burst "
                f"memory, and the scale-down window forgets the replicas asked for them")

    def _record_asks(self, now_s: float, current: int, replicas: int) -> None:
        """Remember when replicas were asked for, and forget the youngest ones a scale-down removes first."""
        if replicas > current:
            self._asked.extend([now_s] * (replicas - current))
        for _ in range(min(current - replicas, len(self._asked))):
            self._asked.pop()

    def _learn(self, now_s: float) -> None:
        """With ``learn_schedules``, every hour from a day of history on: the windows that recur in the
        demand history, whose floors are then held like the spec's schedules."""
        c = self.config
        if not c.learn_schedules or (self._learned_at is not None and now_s - self._learned_at < LEARN_EVERY_S):
            return
        hist, start = self.forecaster.history_, self.forecaster.start_bucket_
        seen = np.flatnonzero(~np.isnan(hist))  # the buffer runs past the last observation
        if start is None or not len(seen) or (seen[-1] + 1 - seen[0]) * self._step_s < 86400.0:
            return
        self._learned_at = now_s
        self.learned = tuple(find_recurring(hist[seen[0]:seen[-1] + 1], self._step_s, (start + seen[0]) * self._step_s,
                                            c.capacity))
        self._learned = as_schedules(self.learned)

    def _scheduled(self, now_s: float, replicas: int, why: str) -> tuple[int, str]:
        """``replicas`` raised to the floor of a schedule open now or opening within the horizon, and why; from
        zero, to ``min_replicas`` at least (with scale to zero, never between zero and it)."""
        c = self.config
        floor = scheduled_floor(c.schedules + self._learned, now_s, c.horizon_s)
        if floor is None or floor.replicas <= 0:
            return replicas, why
        held = min(max(floor.replicas, c.min_replicas), c.max_replicas)
        if held <= replicas:
            return replicas, why
        above = f", minReplicas {c.min_replicas} above zero" if held > floor.replicas else ""
        return held, f"{floor.reason}{above} (demand and forecast: {replicas}; {why})"

    def _foretold(self, now_s: float, demand: float) -> bool:
        """True when the last interval's demand came in a scheduled window whose floor serves it: the schedule
        foretold it, so it is neither a forecast miss nor a burst to hold until the next one."""
        c = self.config
        floor = scheduled_floor(c.schedules + self._learned, now_s - c.interval_s, c.interval_s)
        return floor is not None and demand <= min(floor.replicas, c.max_replicas) * c.capacity

    def _reactive_need(self, obs: Observation, demand: float, waiting: float) -> _Need:
        """The reactive floor: current demand alone without a queue; with one, the fewest replicas in all
        (starting ones included) whose queue at today's demand drains within ``queue_drain_s`` of the last
        of them serving (``_queue``). With none starting, that is current demand plus draining the queue now
        and the excess over the ready replicas' capacity for one cold start; replicas still starting count
        from when they will serve, so the decisions after a jump do not ask again for what they drain."""
        c = self.config
        ready = max(int(obs.ready_replicas), 0)
        demand_floor = math.ceil(demand / c.capacity - 1e-9)
        if waiting <= 0:
            return _Need(demand=demand, floor=demand_floor, demand_floor=demand_floor, backlog_then=0.0)
        starting = self._serve_times(obs.time_s, max(int(obs.provisioned_replicas), 0) - ready)
        # asking for this many new replicas drains it whatever the starting ones do: the upper end of the search
        low, high = demand_floor, max(demand_floor, math.ceil(
            (demand + (waiting + max(0.0, demand - ready * c.capacity) * c.cold_start_s) / c.queue_drain_s)
            / c.capacity - 1e-9))
        while low < high:  # the fewest replicas in all that drain it (more never drain it later)
            mid = (low + high) // 2
            if self._queue(obs.time_s, demand, waiting, ready, starting, mid)[1] <= 1e-9:
                high = mid
            else:
                low = mid + 1
        return _Need(demand=demand, floor=low, demand_floor=demand_floor,
                     backlog_then=self._queue(obs.time_s, demand, waiting, ready, starting, low)[0])

    def _serve_times(self, now_s: float, starting: int) -> list[float]:
        """When each of the ``starting`` replicas is expected to serve, soonest first: a cold start after this
        policy asked for it (one that is late, an interval from now), or a cold start from now for one it did
        not ask for (a restarted policy, another writer)."""
        c = self.config
        known = [max(t + c.cold_start_s, now_s + min(c.interval_s, c.cold_start_s)) for t in self._asked]
        return sorted(known) + [now_s + c.cold_start_s] * (max(starting, 0) - len(known))

    def _queue(self, now_s: float, demand: float, waiting: float, ready: int, starting: list[float],
               replicas: int) -> tuple[float, float]:
        """The fluid queue at constant ``demand`` with ``replicas`` in all (the ready ones, the starting ones
        soonest first, as a scale-down removes the youngest, new ones a cold start on): when the last of them
        serves, and ``queue_drain_s`` later."""
        c = self.config
        kept = starting[:max(0, replicas - ready)]
        # replicas that start serving at the same time, as (time, count): the new ones all start now, so the
        # queue costs the distinct start times, not the replicas (a need can run to millions)
        serve = [(at, len(list(same))) for at, same in itertools.groupby(kept)]
        new = replicas - ready - len(kept)
        if new > 0:
            serve.append((now_s + c.cold_start_s, new))
        last = serve[-1][0] if serve else now_s
        queued, t, serving, then = waiting, now_s, min(ready, replicas), waiting
        for at, count in [*serve, (last + c.queue_drain_s, 0)]:
            queued = max(0.0, queued + (demand - serving * c.capacity) * (at - t))
            t, serving = at, serving + count
            if at == last:
                then = queued
        return then, queued

    def _remember_peak(self, now_s: float, demand: float, keep: float, since: float | None, need: _Need) -> float:
        """Burst memory: the highest demand of the last ``burst_window_s`` (a decreasing deque of peaks), this
        interval's ``keep`` included. An interval joins the deque once ``_lone_steps`` forecast steps have
        passed, time for the intervals after it to show whether it was part of a lone outlier: a run of
        intervals that short, each ``LONE`` times the demand before and after it (as the forecaster's features
        judge steps), or ``NEW_HIGH`` times that and the week's highest before it (demand never seen). Such a
        run is kept as the higher of the two (``_forget_lone_run``), so one glitching minute, which a rate()
        window spreads over several intervals, or a first burst, is not held for the window; a burst that
        recurs is held from its second time."""
        fresh = self._fresh
        if fresh and fresh[-1][1] > NEW_HIGH * demand:  # a run just before now may stand out
            for m in range(len(fresh), 0, -1):  # the longest that does
                before = fresh[-m - 1][1] if m < len(fresh) else self._before
                ref = max(before, demand) if before is not None else 0.0
                low = min(fresh[-j][1] for j in range(1, m + 1))
                if ref <= 0 or low <= NEW_HIGH * ref:
                    continue
                high = None if low > LONE * ref else self._week_high(self._step_of(fresh[-m]))
                if high is None or low > NEW_HIGH * high:
                    self._forget_lone_run(m, ref, need, high)
                    break
        fresh.append((now_s, demand, keep, since))
        while fresh[0][0] <= now_s - self._lone_steps * self._step_s:
            t, self._before, k, _ = fresh.popleft()
            while self._peaks and self._peaks[-1][1] <= k:
                self._peaks.pop()
            self._peaks.append((t, k))
        while self._peaks and self._peaks[0][0] <= now_s - self.config.burst_window_s:
            self._peaks.popleft()
        recent = [k for t, _, k, _ in fresh if t > now_s - self.config.burst_window_s]
        return max(([self._peaks[0][1]] if self._peaks else []) + recent + [keep])

    @property
    def _lone_steps(self) -> int:
        """The longest run of forecast steps that can be a lone outlier: ``LONE_STEPS``, or as many steps as the
        rate() window, which spreads one glitching minute over that long (and a backfill over as many points)."""
        return max(LONE_STEPS, math.ceil(self.config.rate_window_s / self._step_s - 1e-9))

    def _step_of(self, fresh: tuple[float, float, float, float | None]) -> float:
        """The start of the forecast step a fresh interval began in."""
        t, _, _, since = fresh
        return (since if since is not None else t) // self._step_s * self._step_s

    def _week_high(self, step: float) -> float:
        """The highest demand of the week before ``step``: in the forecaster's history, and of the first bursts
        let go (which the history counts as the demand around them)."""
        week = WEEK_STEPS * self._step_s
        while self._firsts and self._firsts[0][0] < step - week:
            self._firsts.popleft()
        firsts = [peak for at, peak in self._firsts if at < step]
        return max([self.forecaster.history_peak(step - week, step) or 0.0, *firsts])

    def _forget_lone_run(self, m: int, ref: float, need: _Need, high: float | None) -> None:
        """The last ``m`` fresh intervals were a lone outlier: count each as ``ref`` in burst memory and in the
        forecaster's history, and cap what the stabilisation window recommended since the first of them at
        what ``ref`` needs, as those replicas were asked for the outlier. A first burst (``high``, the week's
        highest before it, not None) is remembered for a week, as the history no longer shows it: its next
        time is not new."""
        start = len(self._fresh) - m
        run = list(itertools.islice(self._fresh, start, None))
        for j, (t, d, k, since) in enumerate(run, start):
            self._fresh[j] = (t, d, min(k, ref), since)
            if since is not None:
                self.forecaster.revise(since, t, d, ref)
        first = run[0][0]
        cap = math.ceil(ref / self.config.capacity - 1e-9)
        self._recs = deque((made, expiry, min(r, cap) if made >= first else r) for made, expiry, r in self._recs)
        peak = max(d for _, d, _, _ in run)
        if high is not None:
            self._firsts.append((self._step_of(run[0]), peak))
        need.lone = (run[-1][0] - first + self.config.interval_s, peak, ref, high)

    def _recurrence(self, now_s: float, need: _Need) -> None:
        """The highest demand recorded a day and a week before the coming horizon, into ``need``.

        At zero replicas no pod counts requests, and the activator counts them only once they arrive, a
        cold start before a replica can serve them; this is what brings one back before demand that recurs.
        """
        for lag_s, lag in RECURRENCE_LAGS_S:
            peak = self.forecaster.history_peak(now_s - lag_s, now_s - lag_s + self.config.horizon_s)
            if peak is not None and peak > need.recurring:
                need.recurring, need.recurring_lag = peak, lag

    def _was_idle(self, now_s: float) -> bool:
        """True when a day and a week before (where the history reaches back that far), the coming
        ``idle_s`` were watched throughout and had no demand: zero replicas see nothing, so only a quiet
        spell seen before is safe for them. A spell spent at zero is a gap, which is not quiet, unless the
        activator counted what arrived."""
        window = max(self.config.idle_s, self.config.horizon_s)
        known = [lag_s for lag_s, _ in RECURRENCE_LAGS_S if self.forecaster.history_reaches(now_s - lag_s)]
        return bool(known) and all(
            self.forecaster.history_peak(now_s - lag_s, now_s - lag_s + window, complete=True) == 0
            for lag_s in known)

    def _predict(self, obs: Observation, need: _Need, peak: float) -> None:
        """Fill in the forecast over the cold-start window and the replicas its upper quantile needs."""
        c = self.config
        fc = self.forecaster.predict(obs.time_s)
        self.last_forecast = need.forecast = fc
        if not fc.ready:
            return
        end = obs.time_s + c.horizon_s
        need.f_med = fc.window(obs.time_s, end)
        raw_up = fc.window(obs.time_s, end, c.quantile)
        need.f_up = raw_up * need.headroom
        limit = max(raw_up, c.widen_to_peak * peak)  # the misses widen towards the bursts, not past them
        if c.widen_to_peak > 0 and need.f_up > limit:
            need.f_up, need.widen_capped = limit, True
        ramp = self._ramp()
        if ramp is not None and ramp > need.f_up:
            need.f_up, need.ramped = ramp, True
        need.predicted = math.ceil(need.f_up / c.capacity - 1e-9)
        self._checks.append((end, fc.window(end - c.interval_s, end, c.quantile)))

    def _stabilise(self, now_s: float, current: int, target: int, steady: int, from_forecast: bool,
                   to_zero: bool) -> int:
        """Scale-down stabilisation: the highest recommendation not yet expired, never below the target.

        One expires after the window or, when a forecast set it, a cold start at the earliest (replicas
        asked for a forecast are not dropped while they still start). A (re)started policy counts the
        replicas it found as a recommendation, so it does not drop them at once. What the window keeps
        leaves out the replicas asked only to drain a backlog (``steady``): once it has drained they go,
        as they were asked for a queue that is gone, not for a level of demand that may come back.
        """
        c = self.config
        window_s = c.scale_down_stabilization_s
        if from_forecast:
            window_s = max(window_s, c.cold_start_s)
        if not self._recs:
            self._recs.append((now_s, now_s + c.scale_down_stabilization_s, min(current, c.max_replicas)))
        self._recs.append((now_s, now_s + window_s, steady))
        self._recs = deque(rec for rec in self._recs if rec[1] >= now_s)
        replicas = target
        if target < current and not to_zero:
            replicas = min(current, max(max((r for _, _, r in self._recs), default=target), target))
        return min(max(replicas, 0), c.max_replicas)

    def _reason(self, need: _Need, target: int, from_forecast: bool, idle: str | None) -> str:
        """One sentence on what set ``target`` (``idle``: why it is zero, when it is)."""
        c = self.config
        u = c.unit
        base = max(need.floor, need.predicted or 0)
        if need.woken and min(need.woken, c.max_replicas) == target and need.woken > base:
            why = (f"{need.recurring:.3g} {u} arrived {need.recurring_lag} ago within the next {c.horizon_s:.0f} s "
                   f"and needs {_replicas(need.woken)} at {c.capacity:.3g} {u} each")
            if need.unseen:
                why += " (at zero replicas no demand is seen, so recurring demand wakes the deployment)"
        elif need.governed > max(base, need.burst) and min(need.governed, c.max_replicas) == target:
            why = (f"SLO governor x{need.governor:.2f} on the {_replicas(base)} the "
                   f"{'forecast' if (need.predicted or 0) > need.floor else 'current demand'} needs: recent "
                   f"decisions found queues that could not drain within {c.slo_wait_s:g} s more often than the "
                   f"{100 * c.slo_target:g} % target allows")
        elif idle is not None:  # before the forecast's reason, which may say zero too
            why = f"{idle} and none forecast: scale to zero"
        elif from_forecast:
            why = self._forecast_reason(need)
        elif need.burst > base and target == min(need.burst, c.max_replicas):
            why = (f"holding the peak demand of the last {c.burst_window_s:.0f} s ({_replicas(need.burst)}) because "
                   f"recent forecasts fell short of demand more often than p{round(c.quantile * 100)} allows "
                   f"(headroom x{need.headroom:.2f}{self._covered()})")
        elif target == min(need.floor, c.max_replicas) and need.floor > 0:
            why = self._floor_reason(need)
        elif target == 1 > c.min_replicas and c.scale_to_zero:  # the fewest above zero, where nothing needs one
            why = (f"nothing needs a replica now; 1 is kept until scale to zero (after {c.idle_s:.0f} s with no "
                   "demand and none forecast)")
        elif target == 0 and c.scale_to_zero and need.unseen:
            why = ("at zero replicas no demand is seen; a replica is asked for a cold start ahead of demand that "
                   "came a day or a week earlier")
        elif target == 0 and c.scale_to_zero:
            why = "no demand arrives at the activator and none is forecast or came a day or a week earlier"
        else:
            why = f"bounds min {c.min_replicas}, max {c.max_replicas}"
        if target == c.max_replicas and base > c.max_replicas:
            why += f", capped at max {c.max_replicas}"
        return why

    def _floor_reason(self, need: _Need) -> str:
        """What the current demand (and the backlog left when new replicas are ready) needs, and why the
        forecast does not decide, when it does not."""
        c = self.config
        u = c.unit
        drain = (f" plus draining within {c.queue_drain_s:.0f} s the backlog it will have left by the time new "
                 f"replicas are ready ({need.backlog_then:.3g} {u.split('/')[0]})"
                 if need.floor > need.demand_floor else "")
        why = f"current demand {need.demand:.3g} {u}{drain} needs {_replicas(need.floor)} at {c.capacity:.3g} {u} each"
        if need.forecast is not None and not need.forecast.ready:
            why += f"; reactive only: {need.forecast.reason}"
        elif not c.predictive:
            why += " (reactive mode)"
        return why

    def _forecast_reason(self, need: _Need) -> str:
        """What the forecast needs, and why its headroom was widened, when it was."""
        c = self.config
        u = c.unit
        each = f"{_replicas(need.predicted or 0)} at {c.capacity:.3g} {u} each"
        if need.ramped:
            return (f"forecast from the ramp of the last {c.trend_points} decisions, {need.f_up:.3g} {u} at "
                    f"+{c.horizon_s:.0f} s, needs {each}")
        why = f"forecast p{round(c.quantile * 100)} {need.f_up:.3g} {u} within +{c.horizon_s:.0f} s needs {each}"
        if need.widen_capped:
            why += (f" (headroom widened after recent forecast misses{self._covered()}, up to the larger of "
                    f"the forecast and {c.widen_to_peak:g}x the peak demand of the last {c.burst_window_s:.0f} s)")
        elif need.headroom > 1.0:
            why += f" (headroom widened x{need.headroom:.2f} after recent forecast misses{self._covered()})"
        return why


def let_go_runs(x: np.ndarray, lone_steps: int = LONE_STEPS) -> tuple[np.ndarray, list[tuple[int, float]]]:
    """``x`` (demand per forecast step, NaN = gap) with each run ``decide`` lets go set to the higher of the
    steps just before and after it: a run of at most ``lone_steps`` steps each more than ``LONE`` times those
    (a lone outlier), or ``NEW_HIGH`` times those and the highest demand of the week before it (a first burst;
    the first bursts found before it count at their peak). Also the (index, peak) of each first burst, oldest
    first. The longest run from a step wins; a run that reaches the last step, whose next is unknown, is kept."""
    out = np.array(x, dtype=float)
    firsts: list[tuple[int, float]] = []
    with np.errstate(invalid="ignore"):
        starts = np.flatnonzero(out[1:] > NEW_HIGH * out[:-1]) + 1
    for j in starts.tolist():
        for k in range(min(lone_steps, len(out) - 1 - j), 0, -1):
            ref, low = float(np.maximum(out[j - 1], out[j + k])), float(out[j : j + k].min())
            if not (ref > 0 and low > NEW_HIGH * ref):  # NaN (a gap beside or inside the run) is not judged
                continue
            if low <= LONE * ref:
                week = out[max(0, j - WEEK_STEPS) : j]
                seen = [float(np.nanmax(week))] if np.isfinite(week).any() else []
                if low <= NEW_HIGH * max([*seen, *(p for i, p in firsts if i >= j - WEEK_STEPS), 0.0]):
                    continue
                firsts.append((j, float(out[j : j + k].max())))
            out[j : j + k] = ref
            break
    return out, firsts


def _replicas(n: int) -> str:
    """"1 replica", "3 replicas"."""
    return f"{n} replica{'s' if n != 1 else ''}"


def action_of(current: int, replicas: int) -> str:
    """"scale up", "scale down" or "hold": a Decision's action from ``current`` to ``replicas``."""
    return "scale up" if replicas > current else "scale down" if replicas < current else "hold"


def _verb(current: int, replicas: int) -> str:
    """"scale up 2→4", "scale down 4→2" or "hold 2"."""
    if replicas == current:
        return f"hold {replicas}"
    return f"scale {'up' if replicas > current else 'down'} {current}\u2192{replicas}"
