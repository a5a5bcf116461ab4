"""Runs of several policies over several traces: preparing a trace for the simulator and running them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from foresail.autoscaler.schedule import Schedule
from foresail.backtest.baselines import POLICIES, make_policy
from foresail.backtest.request_queue import Requests, draw_requests, on_grid
from foresail.backtest.simulate import ScalingPolicy, SimConfig, SimResult, simulate
from foresail.backtest.traces import Trace, TraceError

AUTO_CAPACITY_REPLICAS = 8.0  # --capacity auto: the 99th-percentile demand needs this many replicas
QUEUES = ("fluid", "requests")  # simulate.py's fluid queue, or request_queue.py's single requests


@dataclass
class Prepared:
    """A trace on the decision grid with its simulated deployment."""

    name: str
    group: str
    arrivals: np.ndarray  # demand units per step
    sim: SimConfig
    start_s: float
    gaps: np.ndarray | None
    sizes: np.ndarray | None = None  # demand units per request at each step (tokens per request), None in requests
    requests: Requests | None = None  # single requests, for the request-level queue (None: the fluid queue)


def prepare(
    trace: Trace,
    interval_s: float = 60.0,
    cold_start_s: float = 120.0,
    capacity: float | None = None,
    slo_wait_s: float = 10.0,
    unit: str = "auto",
    fill_gaps: bool = False,
    min_replicas: int = 1,
    max_replicas: int = 1000,
    scale_to_zero: bool = False,
    activator: bool = True,
    schedules: tuple[Schedule, ...] = (),
    learn_schedules: bool = False,
    queue: str = "fluid",
    slots: int = 8,
) -> Prepared:
    """Resample, pick the demand unit, bridge gaps if asked, and size capacity (``None`` = auto); with ``queue``
    "requests", the single requests that queue for ``slots`` per replica (request_queue.py)."""
    if queue not in QUEUES:
        raise ValueError(f"queue must be one of {', '.join(QUEUES)}, not {queue!r}")
    tr = trace.fill_gaps() if fill_gaps else trace
    if tr.duration_s < interval_s:
        raise TraceError(f"{trace.name}: the trace lasts {tr.duration_s:g} s, less than one decision step "
                         f"of {interval_s:g} s")
    recorded = tr
    tr = tr.resample(interval_s)
    if unit == "auto":
        unit = tr.default_unit
    demand = tr.demand(unit)
    if capacity is None:
        p99 = float(np.quantile(demand / interval_s, 0.99))
        if p99 <= 0:
            p99 = float(demand.max() / interval_s)
        if p99 <= 0:
            raise TraceError(f"{trace.name}: no demand at all, nothing to scale")
        capacity = p99 / AUTO_CAPACITY_REPLICAS
    label = "tok/s" if unit == "tokens" else "req/s"
    sim = SimConfig(capacity, cold_start_s, slo_wait_s, interval_s, min_replicas, max_replicas, scale_to_zero, label,
                    activator, schedules, learn_schedules, slots)
    return Prepared(tr.name, tr.group, demand, sim, tr.start_s, tr.gaps,
                    _tokens_per_request(tr) if unit == "tokens" else None,
                    _requests(recorded, unit, interval_s, len(demand)) if queue == "requests" else None)


def _requests(tr: Trace, unit: str, interval_s: float, steps: int) -> Requests:
    """The single requests of a trace on the decision grid: its own where it recorded them, else drawn from its
    steps (request_queue.py)."""
    if tr.request_times_s is None:
        sizes = _tokens_per_request(tr) if unit == "tokens" else None
        return draw_requests(tr.name, tr.demand(unit), sizes, tr.step_s, interval_s, steps)
    sizes = tr.request_tokens if unit == "tokens" else None
    if sizes is None:
        sizes = np.ones(len(tr.request_times_s))
    return on_grid(tr.request_times_s, sizes, interval_s, steps)


def _tokens_per_request(tr: Trace) -> np.ndarray:
    """Tokens per request at each step, carried over steps without requests (as the operator's "lately")."""
    assert tr.tokens is not None
    seen = np.nonzero(tr.arrivals > 0)[0]
    if not len(seen):
        return np.ones(len(tr.arrivals))
    last = np.maximum.accumulate(np.where(tr.arrivals > 0, np.arange(len(tr.arrivals)), seen[0]))
    return tr.tokens[last] / tr.arrivals[last]


def run_policy(p: Prepared, name: str, knob: float | None = None, record_forecast: bool = False) -> SimResult:
    """One policy (fresh instance) over one prepared trace."""
    if name not in POLICIES:
        raise KeyError(f"unknown policy {name!r}; choose from {', '.join(POLICIES)}")
    policy = make_policy(name, p.sim, p.arrivals, p.start_s, knob)
    res = run_instance(p, policy, name, record_forecast)
    res.extra["knob"] = knob if knob is not None else POLICIES[name].default
    learned = getattr(policy, "learned", ())  # Foresail's windows found in the history (learn_schedules)
    if learned:
        res.extra["learned"] = [w.describe(p.sim.unit) for w in learned]
    return res


def run_instance(p: Prepared, policy: ScalingPolicy, name: str, record_forecast: bool = False) -> SimResult:
    """A policy instance (of the kind ``name`` in ``POLICIES``) over one prepared trace."""
    at_zero = "proxy" if POLICIES[name].proxy else "activator" if p.sim.activator else "none"
    return simulate(policy, p.arrivals, p.sim, name, p.name, p.start_s, record_forecast=record_forecast,
                    at_zero=at_zero, sizes=p.sizes, requests=p.requests)
