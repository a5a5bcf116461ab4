"""The request-level queue (``foresail backtest --queue requests``): single requests and batching slots.

The default fluid queue (simulate.py) treats demand as a liquid that ready replicas drain at
``capacity`` per second. This model replays single requests instead, so that the time one request
takes and the variance of arrivals within a step count, as they do for a request's time to first token:

- A per-request trace (Azure, Mooncake) replays its own requests: each at its arrival time, of its input +
  output tokens (or 1 where demand is in requests).
- Any other trace's steps as recorded (10 min for ServeGen's) are cut into requests: ``demand / size`` of
  them (``size``: demand units per request, the step's tokens per request where demand is in tokens, else
  1), rounded up or down at random in proportion to the fraction (so the demand is kept on average), each
  of ``size`` units and arriving at a uniformly random moment of the step.
- Each ready replica runs up to ``slots`` requests at once (continuous batching), each slot at ``capacity /
  slots`` per second, so a request of ``size`` units holds its slot ``size * slots / capacity`` seconds; a
  replica's throughput at full batch is ``capacity``, as in the fluid model.
- Requests wait in one first-come, first-served queue for a free slot of any ready replica. A replica
  that is removed takes no new request and finishes those it runs (it drains); the slots that free
  first go first.
- A request meets the SLO when it starts within ``slo_wait_s`` of its arrival (its wait for a slot, the
  queueing part of its time to first token). SLO attainment is the share of requests that meet it; a
  request still waiting when the trace ends misses it. The backlog the policies see is the demand of the
  requests still waiting.

Every policy replays the same requests (for a trace cut into requests, one seeded draw).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from foresail.backtest.traces import TraceError

MAX_REQUESTS = 20_000_000  # beyond this the fluid queue is the model to use (and this one too slow)
SEED = 0


@dataclass(frozen=True)
class Requests:
    """Single requests drawn from a per-step demand series, in arrival order."""

    times_s: np.ndarray  # arrival, seconds from the trace's first step
    sizes: np.ndarray  # demand units each
    steps: np.ndarray  # the step each arrives in (non-decreasing)
    bounds: np.ndarray  # requests of step k are [bounds[k], bounds[k+1])


def draw_requests(name: str, demand: np.ndarray, sizes: np.ndarray | None, step_s: float, interval_s: float,
                  steps: int) -> Requests:
    """Requests for ``demand`` per trace step of ``step_s`` (units; ``sizes``: units per request at each step, None
    for 1), placed on ``steps`` decision steps of ``interval_s``; TraceError beyond MAX_REQUESTS of them."""
    demand = np.asarray(demand, dtype=float)
    per = np.ones(len(demand)) if sizes is None else np.maximum(np.asarray(sizes, dtype=float), 1e-12)
    expected = demand / per
    total = float(expected.sum())
    if total > MAX_REQUESTS:
        raise TraceError(f"{name}: {total:,.0f} requests, more than --queue requests replays "
                         f"({MAX_REQUESTS:,}); at this volume the fluid queue (--queue fluid) is the model to use")
    rng = np.random.default_rng(SEED)
    counts = np.floor(expected).astype(np.int64)
    counts += rng.random(len(counts)) < expected - counts
    at_step = np.repeat(np.arange(len(counts)), counts)
    times = (at_step + rng.random(len(at_step))) * step_s
    order = np.argsort(times, kind="stable")
    return on_grid(times[order], per[at_step[order]], interval_s, steps)


def on_grid(times_s: np.ndarray, sizes: np.ndarray, interval_s: float, steps: int) -> Requests:
    """Requests arriving at ``times_s`` (sorted, seconds from the trace's start) of ``sizes`` units, on ``steps``
    decision steps of ``interval_s``; those after the last whole step are left out, as the grid leaves it out."""
    keep = times_s < steps * interval_s
    decision = np.minimum((times_s[keep] // interval_s).astype(np.int64), steps - 1)
    return Requests(times_s[keep], sizes[keep], decision, np.searchsorted(decision, np.arange(steps + 1)))


class RequestQueue:
    """First-come, first-served requests over the batching slots of the ready replicas; see the module docstring."""

    def __init__(self, requests: Requests, capacity: float, slots: int, slo_wait_s: float) -> None:
        self.req, self.slots, self.slo_wait_s = requests, slots, slo_wait_s
        self.hold_s = requests.sizes * slots / capacity  # how long each request holds its slot
        self.free: list[float] = []  # when each busy slot of the ready replicas is next free (a heap)
        self.idle = 0  # and how many are free now: a count, so that slots past the requests cost nothing
        self.head = 0  # the first request not started
        self.met = np.zeros(len(requests.sizes), dtype=bool)
        self._waiting = np.concatenate(([0.0], np.cumsum(requests.sizes)))  # for the backlog in O(1)

    def advance(self, k: int, ready: int, t0: float, t1: float) -> float:
        """Serve what the ``ready`` replicas can start in step ``k`` (from ``t0`` to ``t1`` s); the demand left
        waiting. With no replica the requests wait for one."""
        free = self.free
        while free and free[0] <= t0:  # free by now: a slot free since earlier serves from t0 as well
            heapq.heappop(free)
            self.idle += 1
        self._resize(ready * self.slots)
        tail = int(self.req.bounds[k + 1])
        times = self.req.times_s
        while self.head < tail and (self.idle or free):
            # a request waiting from an earlier step arrived before t0, when no slot was free
            start = max(times[self.head], t0) if self.idle else max(times[self.head], free[0])
            if start >= t1:
                break
            if self.idle:
                self.idle -= 1
                heapq.heappush(free, start + self.hold_s[self.head])
            else:
                heapq.heapreplace(free, start + self.hold_s[self.head])
            self.met[self.head] = start - times[self.head] <= self.slo_wait_s + 1e-9
            self.head += 1
        return float(self._waiting[tail] - self._waiting[self.head])

    def drop(self, k: int) -> None:
        """Fail every request waiting at the end of step ``k`` (no endpoint to wait at)."""
        self.head = max(self.head, int(self.req.bounds[k + 1]))

    def attainment(self) -> float:
        """The share of requests that met the SLO (1 with none)."""
        return float(self.met.mean()) if len(self.met) else 1.0

    def met_steps(self, n: int) -> np.ndarray:
        """Per step: whether every request that arrived in it met the SLO."""
        return np.bincount(self.req.steps[~self.met], minlength=n) == 0

    def _resize(self, want: int) -> None:
        """Keep ``want`` slots: new ones free now; fewer, those that free first leave (the free ones first)."""
        drop = self.idle + len(self.free) - want
        if drop <= 0:
            self.idle -= drop
            return
        gone = min(drop, self.idle)
        self.idle -= gone
        for _ in range(drop - gone):
            heapq.heappop(self.free)
