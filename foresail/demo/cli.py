"""`foresail demo`: the whole system on one machine, replaying a real trace on an accelerated clock."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from foresail.demo.stack import LocalStack

DEFAULT_TRACE = Path(__file__).parent / "data" / "azure-conv-2023-per-minute.csv"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `foresail demo` (all optional)."""
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE,
                        help="trace to replay (any format `foresail backtest` reads; default: an hour of the "
                             "Azure 2023 conversation trace, per minute, shipped with the package)")
    parser.add_argument("--minutes", type=int, default=45, help="trace minutes to replay (default 45)")
    parser.add_argument("--step", type=float, default=5.0,
                        help="wall seconds per trace minute (default 5: a 12x accelerated clock)")
    parser.add_argument("--peak-rps", type=float, default=6.0, help="request rate of the busiest minute")
    parser.add_argument("--capacity", type=float, default=1.0, help="requests/s one replica serves (the SLO)")
    parser.add_argument("--cold-start", type=float, default=15.0,
                        help="seconds a new replica waits before its server starts (stands in for a GPU "
                             "node's image pull and weight load)")
    parser.add_argument("--mode", choices=["predictive", "reactive"], default="predictive")
    parser.add_argument("--max-replicas", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("foresail-demo"),
                        help="folder for the plot, the timeline and the logs (default ./foresail-demo)")


def _manifest(args: argparse.Namespace) -> dict:
    return {
        "apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "demo"},
        "spec": {
            "model": {"source": "builtin:tiny"},
            "minReplicas": 1, "maxReplicas": args.max_replicas,
            "autoscaling": {
                "mode": args.mode, "intervalSeconds": 5,
                "slo": {"capacityPerReplica": args.capacity},
                "forecast": {"horizon": "auto", "coldStartSeconds": int(args.cold_start) + 5, "quantile": 0.9},
                "scaleDown": {"stabilizationSeconds": int(12 * args.step)},
            },
        },
    }


class Sampler:
    """Samples what the operator shows (status) once per second, in a thread."""

    def __init__(self, stack: LocalStack, name: str) -> None:
        self.stack, self.name = stack, name
        self.rows: list[dict] = []
        self.offered = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.t0 = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                obj = self.stack.llmd(self.name)
            except Exception:  # the API server is stopping
                continue
            st = obj.get("status") or {}
            fc = st.get("forecast") or {}
            self.rows.append({
                "t": round(time.monotonic() - self.t0, 1), "offered": self.offered,
                "demand": fc.get("demand"), "forecast": fc.get("upper"),
                "desired": st.get("desiredReplicas"), "recommended": st.get("recommendedReplicas"),
                "ready": self.stack.runner.ready_count("default", self.name),
                "reason": st.get("lastScaleReason", ""),
            })

    def start(self) -> "Sampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _plot(rows: list[dict], capacity: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t"] for r in rows]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(t, [r["offered"] for r in rows], color="0.6", lw=1, label="offered load (req/s)")
    ax.plot(t, [r["demand"] for r in rows], color="tab:blue", lw=1.5, label="demand the operator sees (req/s)")
    ax.plot(t, [r["forecast"] for r in rows], color="tab:orange", lw=1.5, ls="--", label="forecast p90 at +horizon")
    ax.step(t, [(r["ready"] or 0) * capacity for r in rows], color="tab:green", where="post", lw=2,
            label="ready replicas x capacity")
    ax.step(t, [(r["desired"] or 0) * capacity for r in rows], color="tab:red", where="post", lw=1, ls=":",
            label="desired replicas x capacity")
    ax.set_xlabel("seconds (1 trace minute = one step of the accelerated clock)")
    ax.set_ylabel("requests/s")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bad_flag(args: argparse.Namespace) -> str | None:
    """What is wrong with the flags, if anything (before anything starts)."""
    if args.minutes < 1:
        return "--minutes must be at least 1"
    if not (0 < args.step < math.inf and 0 < args.peak_rps < math.inf and 0 < args.capacity < math.inf):
        return "--step, --peak-rps and --capacity must be positive numbers"
    if not 0 <= args.cold_start < math.inf:
        return "--cold-start must be a number of seconds >= 0"
    if args.max_replicas < 1:
        return "--max-replicas must be at least 1"
    return None


def run(args: argparse.Namespace) -> int:
    """Start everything, replay, summarise, stop everything."""
    import requests

    from foresail.backtest.traces import TraceError, load_trace
    from foresail.demo.load import rates, replay
    from foresail.demo.prometheus import find_binary
    from foresail.demo.stack import LocalStack

    problem = _bad_flag(args)
    if problem:
        print(f"foresail demo: {problem}")
        return 2
    try:
        find_binary()
        trace = load_trace(args.trace).resample(60.0)
        args.out.mkdir(parents=True, exist_ok=True)
    except (RuntimeError, TraceError) as exc:
        print(f"foresail demo: {exc}")
        return 2
    except OSError as exc:
        print(f"foresail demo: cannot make --out {args.out}: {exc.strerror or exc}")
        return 2
    counts = list(trace.arrivals[: args.minutes])
    if not max(counts) > 0:
        print(f"foresail demo: {trace.name} has no requests in its first {args.minutes} minutes")
        return 2
    step_rates = rates(counts, args.peak_rps)
    print(f"Replaying {len(counts)} minutes of {trace.name} at {args.step:g} s per minute "
          f"(peak {args.peak_rps:g} req/s, {args.capacity:g} req/s per replica, cold start {args.cold_start:g} s)")
    with tempfile.TemporaryDirectory(prefix="foresail-demo-") as tmp:
        print("Starting the Kubernetes API test server, Prometheus, the pod runner, the operator and the activator ...")
        with LocalStack(Path(tmp), cold_start_s=args.cold_start, activator=True) as stack:
            try:
                stack.apply(_manifest(args))
            except requests.HTTPError as exc:  # the CRD's schema: a Status whose message names each field
                try:
                    message = str(exc.response.json()["message"]) if exc.response is not None else str(exc)
                except (KeyError, TypeError, ValueError):  # not a Status
                    message = str(exc)
                print(f"foresail demo: the flags make an LLMDeployment the API server rejects: {message}")
                return 2
            print("Applied LLMDeployment 'demo'; waiting for the first replica ...")
            stack.wait_ready("demo", 1, timeout_s=60 + 2 * args.cold_start)
            sampler = Sampler(stack, "demo").start()

            def on_step(i: int, rate: float) -> None:
                sampler.offered = rate
                row = sampler.rows[-1] if sampler.rows else {}
                if i % 3 == 0:
                    fc = row.get("forecast")
                    print(f"  minute {i:3d}  offered {rate:5.2f} req/s | seen {row.get('demand') or 0:5.2f} | "
                          f"forecast p90 {fc if fc is not None else '-':>5} | desired {row.get('desired')} "
                          f"ready {row.get('ready')} | {row.get('reason', '')[:70]}", flush=True)

            # as clients of a chart install: to the activator, which spreads them over the ready pods
            outcomes = asyncio.run(replay(step_rates, args.step, lambda: [stack.activator_url], model="demo",
                                          on_step=on_step))
            sampler.stop()
            final = stack.llmd("demo")
            for log in ("operator.log", "activator.log"):
                (args.out / log).write_bytes((Path(tmp) / log).read_bytes())
    ok = [o for o in outcomes if o.ok]
    lat = sorted(o.latency_s for o in ok)
    rows = sampler.rows
    replica_s = sum((r["ready"] or 0) for r in rows)
    status = final.get("status") or {}
    print("\nSummary")
    print(f"  requests sent {len(outcomes)}, answered {len(ok)} ({100 * len(ok) / max(1, len(outcomes)):.1f} %)")
    if lat:
        print(f"  latency p50 {lat[len(lat) // 2]:.2f} s, p90 {lat[int(len(lat) * 0.9)]:.2f} s")
    print(f"  replica-seconds {replica_s}, measured cold start {status.get('coldStartSeconds')} s")
    print(f"  scale events: {len(status.get('history') or [])} (last: {status.get('lastScaleReason')})")
    _plot(rows, args.capacity, args.out / "demo.png", f"foresail demo ({args.mode}): {trace.name}")
    (args.out / "timeline.json").write_text(json.dumps(rows))
    print(f"  plot: {args.out / 'demo.png'}; timeline: {args.out / 'timeline.json'}")
    return 0
