"""The simulated deployment: cold start, per-replica capacity and a fluid queue.

Per decision step ``k`` of ``interval_s`` seconds with arrivals ``A[k]`` (demand units):

1. replicas whose cold start has elapsed become ready;
2. the policy sees the demand rate of the previous step ``A[k-1]/interval`` (step 0 sees ``A[0]``), the
   backlog, and the ready/provisioned counts, and returns a replica count;
3. a replica asked for at step ``k`` is paid for from ``k`` and serves from step ``k + ceil(cold/interval)``;
   a scale-down takes effect at once and removes starting replicas (youngest first) before ready ones;
4. the backlog is a fluid queue ``B[k+1] = max(0, B[k] + A[k] - ready[k] * capacity * interval)``; nothing
   is dropped; step ``k`` meets the SLO when ``B[k+1]`` drains within ``slo_wait_s`` at the ready capacity,
   i.e. ``B[k+1] <= ready[k] * capacity * slo_wait_s``.

SLO attainment is the share of arrivals in steps that meet the SLO; cost is replica-hours of provisioned
(ready + starting) replicas. Every run starts with the replicas the oracle would hold at step 0, ready.

With scale to zero, what happens to requests at zero replicas is ``at_zero``: ``proxy``, a front door
holds and counts them (Knative's activator, KEDA's HTTP add-on; the baselines); ``activator``,
Foresail's activator holds and counts them too, and the operator reads that count from Prometheus
(``Observation.counted``: demand at zero is known); ``none``, no front door: they fail. With a front
door, a deployment at zero asks for a replica at every step at which a request arrives or it holds one (the
activator's wake), whatever the policy said.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from foresail.autoscaler.policy import Decision, Observation
from foresail.autoscaler.schedule import Schedule
from foresail.backtest.request_queue import RequestQueue, Requests

AT_ZERO = ("proxy", "activator", "none")  # what holds requests at zero replicas; see the module docstring
MAX_NEED = 1e12  # replicas for one step: more is a capacity in the wrong unit (`foresail backtest` refuses it)


@dataclass(frozen=True)
class SimConfig:
    """The simulated deployment (times in seconds, capacity in demand units per second per replica)."""

    capacity: float
    cold_start_s: float = 120.0
    slo_wait_s: float = 10.0
    interval_s: float = 60.0
    min_replicas: int = 1
    max_replicas: int = 1000
    scale_to_zero: bool = False
    unit: str = "req/s"
    activator: bool = True  # Foresail's requests at zero are held by its activator (else they fail)
    schedules: tuple[Schedule, ...] = ()  # Foresail's scheduled floors (autoscaling.schedules), in trace time
    learn_schedules: bool = False  # Foresail also holds windows it finds recurring (autoscaling.learnSchedules)
    slots: int = 8  # requests one replica runs at once, in the request-level queue (request_queue.py)

    @property
    def cold_steps(self) -> int:
        """Steps from asking for a replica to it serving."""
        return max(0, math.ceil(self.cold_start_s / self.interval_s - 1e-9))

    def need(self, arrivals: np.ndarray) -> np.ndarray:
        """Replicas that serve each step's arrivals within the step, at most ``MAX_NEED`` (a bigger count, or
        an infinite one, would not fit in an int)."""
        return np.ceil(arrivals / (self.capacity * self.interval_s) - 1e-9).clip(0, MAX_NEED).astype(int)

    def initial_replicas(self, arrivals: np.ndarray) -> int:
        """Ready replicas at the start of every run: what the oracle holds at step 0."""
        first = int(self.need(arrivals[: self.cold_steps + 1]).max())
        lo = 0 if self.scale_to_zero else self.min_replicas
        return min(max(first, lo), self.max_replicas)


class ScalingPolicy(Protocol):
    """What the simulator (and the operator) call every decision interval."""

    def decide(self, obs: Observation) -> Decision: ...


@dataclass
class SimResult:
    """Outcome of one policy on one trace."""

    policy: str
    trace: str
    slo_attainment: float
    replica_hours: float
    scale_events: int
    provisioned: np.ndarray
    ready: np.ndarray
    backlog: np.ndarray
    met: np.ndarray
    forecast_upper: np.ndarray | None = None
    forecast_median: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    def summary(self, oracle_hours: float | None = None) -> dict:
        """JSON-safe figures."""
        out = {
            "slo_attainment": round(self.slo_attainment, 6),
            "replica_hours": round(self.replica_hours, 4),
            "scale_events": self.scale_events,
        }
        if oracle_hours:
            out["cost_vs_oracle"] = round(self.replica_hours / oracle_hours, 4)
        return out


def _observation(at_zero: str, served_before: bool, time_s: float, rate: float, backlog: float, ready: int,
                 provisioned: int, size: float) -> Observation:
    """What the policy sees at a step: the previous step's demand rate and the backlog; with ``at_zero``
    "none" after a step no replica served, no demand at zero replicas and no data while replicas start."""
    if at_zero == "none" and not served_before:
        if provisioned == 0:  # nothing runs: no demand counted
            return Observation(time_s, 0.0, 0.0, 0, 0)
        return Observation(time_s, None, None, ready, provisioned)  # replicas starting: no data yet
    return Observation(time_s, rate, backlog, ready, provisioned, counted=at_zero == "activator", arrival_size=size)


def _resize(ready: int, starting: deque[list[int]], change: int, now: int, cold: int) -> int:
    """Add ``change`` replicas, ready ``cold`` steps after step ``now`` (at once without a cold start), or
    remove ``-change``, the starting ones first, the newest first; the ready count after. ``starting`` holds
    ``[step they become ready at, how many]``, oldest first."""
    if change > 0 and cold == 0:
        return ready + change
    if change > 0:
        starting.append([now + cold, change])
        return ready
    drop = -change
    while drop and starting:
        gone = min(drop, starting[-1][1])
        starting[-1][1] -= gone
        drop -= gone
        if not starting[-1][1]:
            starting.pop()
    return ready - drop


def simulate(
    policy: ScalingPolicy,
    arrivals: np.ndarray,
    cfg: SimConfig,
    name: str = "",
    trace_name: str = "",
    start_s: float = 0.0,
    record_forecast: bool = False,
    at_zero: str = "proxy",
    sizes: np.ndarray | None = None,
    requests: Requests | None = None,
) -> SimResult:
    """Replay ``arrivals`` (demand units per step) through ``policy``.

    ``sizes`` (demand units per request at each step, where demand is counted in tokens) tells the policy
    what one request counts for, as the operator's tokens per request lately.

    The policy sees the previous step's demand rate and the backlog (with ``activator``, marked as
    counted by the activator). With ``none`` it sees what Foresail's operator sees without the activator when
    no replica served the previous step: no data while replicas start (no pod exports metrics yet), and
    at zero replicas no demand (no pod counts requests) and no queue (what arrives while no replica is
    ready fails, missing the SLO, instead of queueing).

    With ``requests`` (the same demand as single requests), they queue one by one for the replicas' batching
    slots (request_queue.py) instead of in the fluid queue.
    """
    if at_zero not in AT_ZERO:
        raise ValueError(f"at_zero must be one of {', '.join(AT_ZERO)}, not {at_zero!r}")
    a = np.asarray(arrivals, dtype=float)
    n = len(a)
    dt = cfg.interval_s
    per_replica = cfg.capacity * dt
    cold = cfg.cold_steps
    ready = cfg.initial_replicas(a)
    operator = at_zero != "proxy"  # Foresail's operator
    if operator:  # it creates a deployment with at least one replica
        ready = min(max(ready, 1), cfg.max_replicas)
    starting: deque[list[int]] = deque()  # [step at which they become ready, how many], oldest first
    backlog = 0.0
    prov_out = np.zeros(n, dtype=np.int64)  # up to MAX_NEED replicas
    ready_out = np.zeros(n, dtype=np.int64)
    backlog_out = np.zeros(n)
    met = np.zeros(n, dtype=bool)
    f_up = np.full(n, np.nan) if record_forecast else None
    f_med = np.full(n, np.nan) if record_forecast else None
    events = 0
    lo = 0 if cfg.scale_to_zero else cfg.min_replicas
    prev_rate = a[0] / dt if n else 0.0
    served_before = ready > 0  # whether a replica served the previous step
    provisioned = ready  # ready + starting
    queue = RequestQueue(requests, cfg.capacity, cfg.slots, cfg.slo_wait_s) if requests is not None else None
    for k in range(n):
        while starting and starting[0][0] <= k:
            ready += starting.popleft()[1]
        size = 1.0 if sizes is None else float(sizes[max(k - 1, 0)])  # that of the step prev_rate is from
        d = policy.decide(_observation(at_zero, served_before, start_s + k * dt, prev_rate, backlog, ready,
                                       provisioned, size))
        want = min(max(int(d.replicas), lo), cfg.max_replicas)
        if want == 0 and (a[k] > 0 or backlog > 0) and at_zero != "none":  # a request at the front door wakes one
            want = min(max(cfg.min_replicas, 1), cfg.max_replicas)
        if f_up is not None and f_med is not None and d.forecast_upper is not None:
            f_up[k] = d.forecast_upper
            f_med[k] = d.forecast_median if d.forecast_median is not None else np.nan
        if want != provisioned:
            events += 1
            ready = _resize(ready, starting, want - provisioned, k, cold)
            provisioned = want
        if queue is not None:
            backlog = queue.advance(k, ready, k * dt, (k + 1) * dt)
            if at_zero == "none" and ready == 0:  # no endpoint: what arrives fails rather than waiting
                backlog = 0.0
                queue.drop(k)
        elif at_zero == "none" and ready == 0:
            backlog, met[k] = 0.0, a[k] == 0
        else:
            noise = 1e-9 * ready * per_replica  # float noise of a step that fills its replicas (need() allows it)
            backlog += a[k] - ready * per_replica
            backlog = backlog if backlog > noise else 0.0  # none left (below zero, or float noise)
            met[k] = backlog <= ready * cfg.capacity * cfg.slo_wait_s + noise
        prov_out[k] = provisioned
        ready_out[k] = ready
        backlog_out[k] = backlog
        prev_rate = a[k] / dt
        served_before = ready > 0
    if queue is not None:
        attainment, met = queue.attainment(), queue.met_steps(n)
    else:
        total = a.sum()
        attainment = float(a[met].sum() / total) if total > 0 else 1.0
    return SimResult(
        name, trace_name, attainment, float(prov_out.sum() * dt / 3600.0), events,
        prov_out, ready_out, backlog_out, met, f_up, f_med,
    )
