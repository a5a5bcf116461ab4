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
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from foresail.autoscaler.policy import Decision, Observation


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

    @property
    def cold_steps(self) -> int:
        """Steps from asking for a replica to it serving."""
        return max(0, math.ceil(self.cold_start_s / self.interval_s - 1e-9))

    def need(self, arrivals: np.ndarray) -> np.ndarray:
        """Replicas that serve each step's arrivals within the step."""
        return np.ceil(arrivals / (self.capacity * self.interval_s) - 1e-9).astype(int).clip(min=0)

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


def simulate(
    policy: ScalingPolicy,
    arrivals: np.ndarray,
    cfg: SimConfig,
    name: str = "",
    trace_name: str = "",
    start_s: float = 0.0,
    record_forecast: bool = False,
    blind_at_zero: bool = False,
) -> SimResult:
    """Replay ``arrivals`` (demand units per step) through ``policy``.

    The policy sees the previous step's demand rate and the backlog. With ``blind_at_zero``, the
    deployment has no request-holding proxy, as Foresail's operator: while no replica is ready, what
    arrives fails (missing the SLO) instead of queueing, and the policy sees what the operator sees when
    no replica served the previous step: no demand and no queue at zero replicas (no pod counts requests),
    and no data while replicas start (no pod exports metrics yet).
    """
    a = np.asarray(arrivals, dtype=float)
    n = len(a)
    dt = cfg.interval_s
    per_replica = cfg.capacity * dt
    cold = cfg.cold_steps
    ready = cfg.initial_replicas(a)
    if blind_at_zero:  # its operator creates a deployment with at least one replica
        ready = min(max(ready, 1), cfg.max_replicas)
    starting: deque[int] = deque()  # step at which each starting replica becomes ready, oldest first
    backlog = 0.0
    prov_out = np.zeros(n, dtype=np.int32)
    ready_out = np.zeros(n, dtype=np.int32)
    backlog_out = np.zeros(n)
    met = np.zeros(n, dtype=bool)
    f_up = np.full(n, np.nan) if record_forecast else None
    f_med = np.full(n, np.nan) if record_forecast else None
    events = 0
    lo = 0 if cfg.scale_to_zero else cfg.min_replicas
    prev_rate = a[0] / dt if n else 0.0
    served_before = ready > 0  # whether a replica served the previous step
    for k in range(n):
        while starting and starting[0] <= k:
            starting.popleft()
            ready += 1
        provisioned = ready + len(starting)
        if blind_at_zero and not served_before:
            unseen = 0.0 if provisioned == 0 else None  # nothing runs: zero; replicas starting: no data yet
            obs = Observation(start_s + k * dt, unseen, unseen, ready, provisioned)
        else:
            obs = Observation(start_s + k * dt, prev_rate, backlog, ready, provisioned)
        d = policy.decide(obs)
        want = min(max(int(d.replicas), lo), cfg.max_replicas)
        if record_forecast and d.forecast_upper is not None:
            f_up[k] = d.forecast_upper  # type: ignore[index]
            f_med[k] = d.forecast_median if d.forecast_median is not None else np.nan  # type: ignore[index]
        if want != provisioned:
            events += 1
            if want > provisioned:
                if cold == 0:
                    ready += want - provisioned
                else:
                    starting.extend([k + cold] * (want - provisioned))
            else:
                drop = provisioned - want
                while drop and starting:
                    starting.pop()
                    drop -= 1
                ready -= drop
            provisioned = want
        served = ready * per_replica
        if blind_at_zero and ready == 0:  # no endpoint: what arrives fails rather than waiting
            backlog, met[k] = 0.0, a[k] == 0
        else:
            backlog = max(0.0, backlog + a[k] - served)
            met[k] = backlog <= ready * cfg.capacity * cfg.slo_wait_s + 1e-9
        prov_out[k] = provisioned
        ready_out[k] = ready
        backlog_out[k] = backlog
        prev_rate = a[k] / dt
        served_before = ready > 0
    total = a.sum()
    attainment = float(a[met].sum() / total) if total > 0 else 1.0
    return SimResult(
        name, trace_name, attainment, float(prov_out.sum() * dt / 3600.0), events,
        prov_out, ready_out, backlog_out, met, f_up, f_med,
    )
