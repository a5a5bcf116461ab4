"""Scale-down: what the pods a scale-down removes are still serving, by how they are picked.

A removed pod keeps its GPU until its last request ends (or the drain timeout cuts it), so a scale-down
that picks busy pods pays for the drain and makes their requests wait on a stopping server. The requests
of the Azure 2023 conversation trace (arrival times, output lengths at ``--token-ms`` per output token,
no queueing: continuous batching) are spread over ``--pods`` pods, at random (a Service) or to the pod
with the fewest requests in flight (the activator). Every ``--every`` seconds after the first
``--warmup``, a scale-down of ``--remove`` pods is evaluated (and not carried out, so each is a sample of
the same fleet) under each way of picking the pods:

- Kubernetes' own order: the most recently ready first (the pods were made ready one after another);
- Foresail: the fewest requests in flight, read from the pods' own /metrics at that moment, as its
  deletion cost; ties in Kubernetes' order;
- the same from Prometheus: each pod's count at its last scrape (every ``--scrape`` seconds, each pod at
  its own phase), the design Foresail does not use;
- hindsight: the pods whose requests end first (the lower bound).

    PYTHONPATH=. python -m bench.scale_down [--pods 8] [--remove 2] [--token-ms 25] [--every 60]
        [--warmup 300] [--scrape 15] [--drain 110] [--trace FILE] [--json out.json]
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from bench.balance import TRACE
from bench.table import output_file, print_table
from foresail.backtest.traces import TraceError


@dataclass(frozen=True)
class Fleet:
    """Every request's start and end (seconds) and the pod that serves it."""

    starts: np.ndarray
    ends: np.ndarray
    pod: np.ndarray
    pods: int

    def live(self, t: float) -> np.ndarray:
        """Which requests are in flight at ``t``."""
        return (self.starts <= t) & (self.ends > t)

    def in_flight(self, t: float) -> np.ndarray:
        """Requests each pod serves at ``t``."""
        return np.bincount(self.pod[self.live(t)], minlength=self.pods)


Pick = Callable[[Fleet, float], list[int]]  # the pods in the order a scale-down removes them


def load_requests(path: Path, token_ms: float) -> tuple[np.ndarray, np.ndarray]:
    """Arrival seconds from the first request, and each request's duration (its output tokens); TraceError
    where the trace is missing or unreadable, or lacks TIMESTAMP or GeneratedTokens."""
    if not path.is_file():
        raise TraceError(f"{path}: no such file")
    try:
        df = pd.read_csv(path, usecols=["TIMESTAMP", "GeneratedTokens"])
        stamps = pd.to_datetime(df["TIMESTAMP"])
        tokens = df["GeneratedTokens"].to_numpy(float)
    except (OSError, ValueError) as exc:
        raise TraceError(f"{path}: not an Azure trace with TIMESTAMP and GeneratedTokens ({exc})") from None
    times = (stamps - stamps.min()).dt.total_seconds().to_numpy()
    order = np.argsort(times, kind="stable")
    return times[order], tokens[order] * token_ms / 1e3


def spread(arrivals: np.ndarray, durations: np.ndarray, pods: int, least_loaded: bool,
           seed: int = 0) -> np.ndarray:
    """The pod each request goes to: at random, or the one with the fewest requests in flight."""
    rng = random.Random(seed)
    ends: list[list[float]] = [[] for _ in range(pods)]  # a heap of end times per pod
    out = np.empty(len(arrivals), dtype=int)
    for i, (t, d) in enumerate(zip(arrivals, durations, strict=True)):
        for heap in ends:
            while heap and heap[0] <= t:
                heapq.heappop(heap)
        if least_loaded:
            fewest = min(len(h) for h in ends)
            pod = rng.choice([p for p in range(pods) if len(ends[p]) == fewest])
        else:
            pod = rng.randrange(pods)
        heapq.heappush(ends[pod], t + d)
        out[i] = pod
    return out


def kubernetes_order(fleet: Fleet, t: float) -> list[int]:
    """Pods ranked for removal as the ReplicaSet controller ranks ready pods without a deletion cost: the
    most recently ready first (the last pod was the last to become ready)."""
    return list(range(fleet.pods))[::-1]


def fewest_in_flight(fleet: Fleet, t: float) -> list[int]:
    """Foresail: the fewest requests in flight at ``t``, then Kubernetes' order (a stable sort keeps it)."""
    counts = fleet.in_flight(t)
    return sorted(kubernetes_order(fleet, t), key=lambda p: counts[p])


def from_prometheus(scrape_s: float, seed: int = 0) -> Pick:
    """The fewest requests in flight at each pod's last scrape (every ``scrape_s``, at a phase of its own)."""
    phase = np.random.default_rng(seed).uniform(0, scrape_s, 1 << 12)

    def pick(fleet: Fleet, t: float) -> list[int]:
        counts = [fleet.in_flight(t - (t - phase[p]) % scrape_s)[p] for p in range(fleet.pods)]
        return sorted(kubernetes_order(fleet, t), key=lambda p: counts[p])
    return pick


def hindsight(fleet: Fleet, t: float) -> list[int]:
    """The pods whose requests in flight end first."""
    live = fleet.live(t)
    last = np.full(fleet.pods, t)
    np.maximum.at(last, fleet.pod[live], fleet.ends[live])
    return sorted(kubernetes_order(fleet, t), key=lambda p: last[p])


def evaluate(fleet: Fleet, pick: Pick, remove: int, instants: np.ndarray, drain_s: float) -> dict[str, float]:
    """Mean requests the removed pods hold, mean seconds until the last of them ends (capped at the drain
    timeout), the requests the timeout cuts, and the share of scale-downs whose pods were all idle."""
    held, drains, cut, idle = [], [], 0, 0
    for t in instants:
        live = fleet.live(t) & np.isin(fleet.pod, pick(fleet, t)[:remove])
        left = fleet.ends[live] - t
        held.append(int(live.sum()))
        drains.append(min(drain_s, float(left.max())) if live.any() else 0.0)
        cut += int((left > drain_s).sum())
        idle += not live.any()
    return {"held": float(np.mean(held)), "drain_s": float(np.mean(drains)), "cut": cut,
            "all_idle": idle / len(instants)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trace", type=Path, default=TRACE, help="Azure 2023 trace CSV (TIMESTAMP, GeneratedTokens)")
    ap.add_argument("--pods", type=int, default=8)
    ap.add_argument("--remove", type=int, default=2, help="pods each scale-down removes (default 2)")
    ap.add_argument("--token-ms", type=float, default=25.0, help="milliseconds per output token (default 25)")
    ap.add_argument("--every", type=float, default=60.0, help="seconds between scale-downs evaluated")
    ap.add_argument("--warmup", type=float, default=300.0, help="seconds before the first (default 300)")
    ap.add_argument("--scrape", type=float, default=15.0, help="Prometheus's scrape interval (default 15 s)")
    ap.add_argument("--drain", type=float, default=110.0, help="drain timeout, runtime.drainSeconds (110)")
    ap.add_argument("--json", type=output_file, help="write the figures here")
    args = ap.parse_args(argv)
    if not 0 < args.remove < args.pods:
        ap.error("--remove must be at least 1 and fewer than --pods")
    try:
        arrivals, durations = load_requests(args.trace, args.token_ms)
    except TraceError as exc:
        print(f"error: {exc}")
        return 2
    instants = np.arange(args.warmup, arrivals[-1], args.every)
    if not len(instants):
        ap.error(f"the trace is shorter than --warmup {args.warmup:g} s")
    ways: dict[str, Pick] = {
        "Kubernetes' order (newest ready)": kubernetes_order,
        "Foresail (the pods' /metrics)": fewest_in_flight,
        f"counts from Prometheus ({args.scrape:g}-s scrape)": from_prometheus(args.scrape),
        "hindsight (first to finish)": hindsight,
    }
    figures: dict[str, list[dict[str, Any]]] = {}
    rows = []
    for routing, least in (("random pod (Service)", False), ("least in flight (activator)", True)):
        fleet = Fleet(arrivals, arrivals + durations, spread(arrivals, durations, args.pods, least), args.pods)
        runs = figures[routing] = []
        for way, pick in ways.items():
            run = {"way": way, **evaluate(fleet, pick, args.remove, instants, args.drain)}
            runs.append(run)
            base = runs[0]
            rows.append({"routing": routing, "way": way, "held": f"{run['held']:.2f}",
                         "held_ratio": f"x{run['held'] / base['held']:.2f}" if base["held"] else "-",
                         "drain": f"{run['drain_s']:.1f} s",
                         "drain_ratio": f"x{run['drain_s'] / base['drain_s']:.2f}" if base["drain_s"] else "-",
                         "idle": f"{run['all_idle']:.0%}", "cut": run["cut"]})
    print(f"{len(arrivals):,} requests over {arrivals[-1] / 60:.0f} min on {args.pods} pods; {len(instants)} "
          f"scale-downs of {args.remove} pods evaluated, {args.token_ms:g} ms per output token")
    print_table(rows, {"routing": "routing", "way": "pods removed by", "held": "requests held",
                       "held_ratio": "vs Kubernetes", "drain": "mean drain", "drain_ratio": "vs Kubernetes",
                       "idle": "removed at once", "cut": f"cut at {args.drain:g} s"})
    if args.json:
        args.json.write_text(json.dumps({"pods": args.pods, "remove": args.remove, "scale_downs": len(instants),
                                         "requests": len(arrivals), **figures}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
