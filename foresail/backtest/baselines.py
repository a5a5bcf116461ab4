"""The autoscalers people use today, as policies with the same ``decide`` protocol as Foresail's.

Algorithms and defaults follow ../shared/research/autoscalers.md. Every baseline scales on the same
signal Foresail sees, the demand rate of the last interval, against a per-replica target of
``target_utilization x capacity`` (the knob ``--match-slo`` tunes). They are evaluated once per simulator
interval; windows shorter than the interval cover the last interval. Their rate limits hold per run of the
real controller (HPA every 15 s, KPA every 2 s, APA every 10 s): within an interval the controller runs on its
own clock, each run on the interval's metric and the count the run before left (``_over_ticks``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from foresail.autoscaler.policy import Decision, ForesailPolicy, Observation, PolicyConfig, action_of
from foresail.backtest.holtwinters import HoltWinters
from foresail.backtest.simulate import ScalingPolicy, SimConfig


def _decision(obs: Observation, replicas: int, reason: str) -> Decision:
    return Decision(obs.time_s, replicas, action_of(obs.provisioned_replicas, replicas), replicas, None, None, None,
                    0.0, False, 1.0, reason)


def _clamp(r: int, sim: SimConfig) -> int:
    lo = 0 if sim.scale_to_zero else sim.min_replicas
    return min(max(r, lo), sim.max_replicas)


def _over_ticks(n: int, obs: Observation, sim: SimConfig, period_s: float, tick: Callable[[int, float], int],
                timed: bool = False) -> int:
    """The count ``n`` after a controller that runs every ``period_s`` (on its own clock) has run ``tick(count,
    run_time)`` at each of its runs within the decision interval from ``obs.time_s``, all on that interval's metric
    (it does not change within a step); an interval shorter than the period holds a run only where one falls in it.
    Unless ``timed`` (a run's outcome depends on its time), the first run that changes nothing ends them."""
    first = math.ceil(obs.time_s / period_s - 1e-6)
    for i in range(first, math.ceil((obs.time_s + sim.interval_s) / period_s - 1e-6)):
        after = tick(n, i * period_s)
        if after == n and not timed:
            break
        n = after
    return n


class HPA:
    """Kubernetes HPA (autoscaling/v2; KEDA's 1..N scaling) on an External AverageValue metric.

    ``desired = ceil(total / target)`` unless ``|total / (current x target) - 1| <= tolerance`` (0.1);
    scale-up limited per 15-s sync to max(+4 pods, +100 %), compounded over the syncs in an interval;
    scale-down to the highest recommendation of the last 300 s (downscale stabilisation), then -100 % per 15 s.
    """

    knob = "target_utilization"

    def __init__(self, sim: SimConfig, target_utilization: float = 0.8, tolerance: float = 0.1,
                 downscale_stabilization_s: float = 300.0, sync_period_s: float = 15.0) -> None:
        self.sim = sim
        self.target = target_utilization * sim.capacity
        self.tolerance = tolerance
        self.window_s = downscale_stabilization_s
        self.sync_period_s = sync_period_s
        self._recs: deque[tuple[float, int]] = deque()

    def recommend(self, obs: Observation) -> int:
        """The HPA's raw recommendation (before stabilisation and rate limits)."""
        total = obs.demand or 0.0
        current = obs.provisioned_replicas
        if current > 0 and abs(total / (current * self.target) - 1.0) <= self.tolerance:
            return current
        return math.ceil(total / self.target - 1e-9)

    def stabilise(self, obs: Observation, raw: int) -> int:
        """Downscale stabilisation window and scale-up rate limits."""
        current = obs.provisioned_replicas
        self._recs.append((obs.time_s, raw))
        while self._recs[0][0] <= obs.time_s - self.window_s:
            self._recs.popleft()
        if raw < current:
            raw = min(current, max(r for _, r in self._recs))
        r = _over_ticks(current, obs, self.sim, self.sync_period_s, lambda n, _: min(raw, max(n + 4, 2 * n)))
        return _clamp(r, self.sim)

    def decide(self, obs: Observation) -> Decision:
        if obs.demand is None:  # HPA: no metric, no change
            return _decision(obs, obs.provisioned_replicas, "metrics missing")
        r = self.stabilise(obs, self.recommend(obs))
        return _decision(obs, r, f"hpa: {obs.demand:.3g} / target {self.target:.3g}")


class KPA:
    """Knative Pod Autoscaler: stable (60 s) and panic (6 s) windows, panic at 200 %, no scale-down in panic.

    ``dspc = ceil(stable/target)``, ``dppc = ceil(panic/target)``, both clamped at every 2-s tick to
    ``[floor(ready/2), ceil(1000 x ready)]`` (``_limit``); panic starts when ``dppc / ready >= 2`` and ends after
    a full stable window after the last tick over it.
    Target = 70 % (container-concurrency-target-percentage). The metric is concurrency: requests waiting (held
    by the activator, or queued) count as well as those served (``load``).
    """

    knob = "target_utilization"

    def __init__(self, sim: SimConfig, target_utilization: float = 0.7, stable_window_s: float = 60.0,
                 panic_window_pct: float = 10.0, panic_threshold: float = 2.0,
                 max_scale_up_rate: float = 1000.0, max_scale_down_rate: float = 2.0, tick_s: float = 2.0) -> None:
        self.sim = sim
        self.target = target_utilization * sim.capacity
        self.n_stable = max(1, math.ceil(stable_window_s / sim.interval_s - 1e-9))
        self.n_panic = max(1, math.ceil(stable_window_s * panic_window_pct / 100 / sim.interval_s - 1e-9))
        self.stable_window_s = stable_window_s
        self.threshold = panic_threshold
        self.up_rate, self.down_rate = max_scale_up_rate, max_scale_down_rate
        self.tick_s = tick_s
        self._hist: deque[float] = deque(maxlen=self.n_stable)
        self._panic_since: float | None = None
        self._panic_max = 0

    def load(self, obs: Observation) -> float:
        """The demand rate plus the requests waiting, each counted as concurrency as Knative counts it: a request
        holds a batching slot ``slots x size / capacity`` seconds, so ``w`` units waiting count as ``w`` over that
        time (the rate that keeps them in slots)."""
        held_s = self.sim.slots * obs.arrival_size / self.sim.capacity
        return (obs.demand or 0.0) + (obs.waiting or 0.0) / held_s

    def decide(self, obs: Observation) -> Decision:
        if obs.demand is None:
            return _decision(obs, obs.provisioned_replicas, "metrics missing")
        self._hist.append(self.load(obs))
        stable = sum(self._hist) / len(self._hist)
        recent = list(self._hist)[-self.n_panic:]
        panic = sum(recent) / len(recent)
        ready = max(obs.ready_replicas, 1)
        dspc = math.ceil(stable / self.target - 1e-9)
        dppc = math.ceil(panic / self.target - 1e-9)
        if dppc / ready >= self.threshold:  # panic starts, or is extended, to the interval's last tick
            self._panic_since = obs.time_s + max(self.sim.interval_s - self.tick_s, 0.0)
        elif self._panic_since is not None and obs.time_s - self._panic_since > self.stable_window_s:
            self._panic_since = None
            self._panic_max = 0
        if self._panic_since is not None:
            self._panic_max = max(self._limit(obs, max(dspc, dppc)), self._panic_max)  # no scale-down in panic
            want, reason = self._panic_max, "kpa panic"
        else:
            want, reason = self._limit(obs, dspc), "kpa stable"
        return _decision(obs, _clamp(want, self.sim), reason)

    def _limit(self, obs: Observation, want: int) -> int:
        """``want`` within each tick's bounds in the interval: at least half the ready count, which falls with
        each scale-down, and at most 1000 x the ready count, which does not rise (replicas asked for still start)."""
        ready = obs.ready_replicas
        hi = math.ceil(self.up_rate * max(ready, 1))
        return _over_ticks(obs.provisioned_replicas, obs, self.sim, self.tick_s,
                           lambda n, _: min(max(want, math.floor(max(min(ready, n), 1) / self.down_rate)), hi))


class APA:
    """AIBrix APA: HPA ratio with a +-10 % band, scale rates x2 up / /2 down per 10-s resync (each resync on the
    count the one before left), no scale-down within 300 s of the last scale event."""

    knob = "target_utilization"

    def __init__(self, sim: SimConfig, target_utilization: float = 0.8, up_tolerance: float = 0.1,
                 down_tolerance: float = 0.1, max_scale_up_rate: float = 2.0, max_scale_down_rate: float = 2.0,
                 scale_down_cooldown_s: float = 300.0, resync_s: float = 10.0) -> None:
        self.sim = sim
        self.target = target_utilization * sim.capacity
        self.up_tol, self.down_tol = up_tolerance, down_tolerance
        self.up_rate, self.down_rate = max_scale_up_rate, max_scale_down_rate
        self.cooldown_s = scale_down_cooldown_s
        self.resync_s = resync_s
        self._last_scale_s = -math.inf

    def decide(self, obs: Observation) -> Decision:
        if obs.demand is None:
            return _decision(obs, obs.provisioned_replicas, "metrics missing")
        demand = obs.demand
        n = _over_ticks(obs.provisioned_replicas, obs, self.sim, self.resync_s, lambda n, t: self.resync(n, demand, t),
                        timed=True)
        return _decision(obs, n, "apa")

    def resync(self, n: int, demand: float, time_s: float) -> int:
        """One resync at ``time_s`` from ``n`` replicas: the count it asks for."""
        want = n
        if n == 0:
            want = math.ceil(demand / self.target - 1e-9)
        else:
            r = demand / (n * self.target)
            if r > 1 + self.up_tol:
                want = min(math.ceil(n * r - 1e-9), math.ceil(self.up_rate * n))
            elif r < 1 - self.down_tol and time_s - self._last_scale_s >= self.cooldown_s:
                want = max(math.ceil(n * r - 1e-9), math.floor(n / self.down_rate))
        want = _clamp(want, self.sim)
        if want != n:
            self._last_scale_s = time_s
        return want


class HoltWintersHPA(HPA):
    """A predictive HPA after PHPA: Holt-Winters on the HPA's replica recommendation, decision = maximum.

    alpha = beta = gamma = 0.9, additive trend and season of one day, look-ahead = cold start + interval;
    the prediction is used once two seasons of history exist (before that it is the plain HPA).
    """

    def __init__(self, sim: SimConfig, target_utilization: float = 0.8, alpha: float = 0.9,
                 beta: float = 0.9, gamma: float = 0.9, season_s: float = 86400.0) -> None:
        super().__init__(sim, target_utilization)
        self.m = max(2, round(season_s / sim.interval_s))
        self.hw = HoltWinters(alpha, beta, gamma, self.m)
        self.lookahead = max(1, math.ceil((sim.cold_start_s + sim.interval_s) / sim.interval_s - 1e-9))

    def decide(self, obs: Observation) -> Decision:
        if obs.demand is None:
            self.hw.update(math.nan)
            return _decision(obs, obs.provisioned_replicas, "metrics missing")
        raw = self.recommend(obs)
        self.hw.update(obs.demand / self.target)
        if self.hw.n >= 2 * self.m:
            raw = max(raw, math.ceil(self.hw.forecast(self.lookahead) - 1e-9))
        return _decision(obs, self.stabilise(obs, raw), "holt-winters")


class Static:
    """Provisioned for the peak: a constant count, the ``quantile`` (1.0 = peak) of per-step need."""

    knob = "quantile"

    def __init__(self, sim: SimConfig, arrivals: np.ndarray, quantile: float = 1.0) -> None:
        need = sim.need(np.asarray(arrivals, float))
        self.replicas = _clamp(int(math.ceil(np.quantile(need, quantile) - 1e-9)) if len(need) else 0, sim)
        if not sim.scale_to_zero:
            self.replicas = max(self.replicas, 1) if sim.min_replicas >= 1 else self.replicas

    def decide(self, obs: Observation) -> Decision:
        return _decision(obs, self.replicas, "static")


class Oracle:
    """Perfect foresight: at every step the most replicas needed over the next cold-start window."""

    knob = None

    def __init__(self, sim: SimConfig, arrivals: np.ndarray, start_s: float = 0.0) -> None:
        need = sim.need(np.asarray(arrivals, float))
        c = sim.cold_steps
        n = len(need)
        plan = np.array([need[k: k + c + 1].max() for k in range(n)]) if n else need
        self.plan = np.clip(plan, 0 if sim.scale_to_zero else sim.min_replicas, sim.max_replicas)
        self.start_s, self.dt = start_s, sim.interval_s

    def decide(self, obs: Observation) -> Decision:
        k = min(int(round((obs.time_s - self.start_s) / self.dt)), len(self.plan) - 1)
        return _decision(obs, int(self.plan[k]), "oracle")


@dataclass(frozen=True)
class PolicySpec:
    """How to build a policy by name, and its tunable knob."""

    name: str
    knob: str | None
    default: float | None
    grid: tuple[float, ...]  # knob values, cheapest first
    # a proxy holds and counts requests at zero replicas (as Knative's activator); so does Foresail's activator
    # (SimConfig.activator), whose count the operator reads from Prometheus
    proxy: bool = True


UTIL_GRID = tuple(round(x, 2) for x in np.arange(1.0, 0.04, -0.05))
POLICIES: dict[str, PolicySpec] = {
    "foresail": PolicySpec("foresail", "slo_target", None, (), proxy=False),  # untuned; the knob: SLO governor
    "hpa": PolicySpec("hpa", "target_utilization", 0.8, UTIL_GRID),
    "kpa": PolicySpec("kpa", "target_utilization", 0.7, UTIL_GRID),
    "apa": PolicySpec("apa", "target_utilization", 0.8, UTIL_GRID),
    "holt-winters": PolicySpec("holt-winters", "target_utilization", 0.8, UTIL_GRID),
    "static": PolicySpec("static", "quantile", 1.0, tuple(round(x, 3) for x in np.linspace(0.5, 1.0, 21))),
    "oracle": PolicySpec("oracle", None, None, ()),
}


def foresail_config(sim: SimConfig, slo_target: float = 0.0) -> PolicyConfig:
    """Foresail's shipped defaults for the simulated deployment (``slo_target``: its SLO governor, 0 = off)."""
    return PolicyConfig(
        min_replicas=0 if sim.scale_to_zero else sim.min_replicas,
        max_replicas=sim.max_replicas,
        capacity=sim.capacity,
        cold_start_s=sim.cold_start_s,
        interval_s=sim.interval_s,
        scale_to_zero=sim.scale_to_zero,
        slo_target=slo_target,
        slo_wait_s=sim.slo_wait_s,
        schedules=sim.schedules,
        learn_schedules=sim.learn_schedules,
        unit=sim.unit,
    )


def make_policy(name: str, sim: SimConfig, arrivals: np.ndarray, start_s: float = 0.0,
                knob: float | None = None, prior: object = "default") -> ScalingPolicy:
    """A fresh policy instance by name (``knob`` overrides the baseline's default setting)."""
    spec = POLICIES[name]
    value = spec.default if knob is None else knob
    if name == "foresail":
        return ForesailPolicy(foresail_config(sim, value or 0.0), prior=prior)  # type: ignore[arg-type]
    if name == "hpa":
        return HPA(sim, target_utilization=value)  # type: ignore[arg-type]
    if name == "kpa":
        return KPA(sim, target_utilization=value)  # type: ignore[arg-type]
    if name == "apa":
        return APA(sim, target_utilization=value)  # type: ignore[arg-type]
    if name == "holt-winters":
        return HoltWintersHPA(sim, target_utilization=value)  # type: ignore[arg-type]
    if name == "static":
        return Static(sim, arrivals, quantile=value)  # type: ignore[arg-type]
    if name == "oracle":
        return Oracle(sim, arrivals, start_s)
    raise KeyError(f"unknown policy {name!r}; choose from {', '.join(POLICIES)}")
