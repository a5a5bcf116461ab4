"""`foresail demo`: the whole system on one machine, replaying a real trace on an accelerated clock."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from foresail.demo.load import Outcome
    from foresail.demo.stack import LocalStack

DEFAULT_TRACE = Path(__file__).parent / "data" / "azure-conv-2023-per-minute.csv"
MAX_REQUESTS = 100_000  # the replay plans every request in memory, one task each: more is a mistake, not a demo
EXIT_SIGNALS = (signal.SIGTERM, signal.SIGHUP)  # turned into the same clean exit as Ctrl-C


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
            self._sample()

    def _sample(self) -> None:
        try:
            obj = self.stack.llmd(self.name)
        except Exception:  # the API server is stopping
            return
        st = obj.get("status") or {}
        fc = st.get("forecast") or {}
        self.rows.append({
            "t": round(time.monotonic() - self.t0, 1), "offered": self.offered,
            "demand": fc.get("demand"), "forecast": fc.get("upper"),
            "desired": st.get("desiredReplicas"), "recommended": st.get("recommendedReplicas"),
            "ready": self.stack.runner.ready_count("default", self.name),
            "pods": self.stack.runner.running_count("default", self.name),
            "capacity": (st.get("capacity") or {}).get("perReplica"),
            "reason": st.get("lastScaleReason", ""),
        })

    def start(self) -> "Sampler":
        """Take the first sample now (the first minute's line shows it), then one a second."""
        self._sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def replica_seconds(rows: Sequence[dict]) -> float:
    """Pods the runner held (starting, ready or draining: what a cluster pays for) integrated over the sampled
    timeline, each sample's count holding until the next sample."""
    return sum(a["pods"] * (b["t"] - a["t"]) for a, b in pairwise(rows))


def scale_events(rows: Sequence[dict]) -> int:
    """How many times the desired replicas changed over the sampled timeline."""
    desired = [r["desired"] for r in rows if r["desired"] is not None]
    return sum(a != b for a, b in pairwise(desired))


def capacity_line(rows: Sequence[dict], fallback: float) -> tuple[list[float], str]:
    """The capacity per replica to draw each row's fleet with: the operator's (status.capacity.perReplica, learned
    online) where the row has it, else ``fallback`` (--capacity); and the legend's words for it."""
    per_row = [r["capacity"] or fallback for r in rows]
    known = [r["capacity"] for r in rows if r["capacity"]]
    if known:
        return per_row, f"x the operator's capacity per replica (status.capacity, last {known[-1]:g} req/s)"
    return per_row, f"x --capacity ({fallback:g} req/s)"


def summary(outcomes: Sequence[Outcome], rows: Sequence[dict], status: dict[str, Any]) -> list[str]:
    """The summary's lines: requests answered and failed (by status), latency, replica-seconds, measured cold
    start, scale events."""
    latencies = sorted(o.latency_s for o in outcomes if o.ok)
    failed = Counter(o.status for o in outcomes if not o.ok)
    how = ", ".join(f"{n} x {code}" for code, n in failed.most_common())
    lines = [f"requests sent {len(outcomes)}, answered {len(latencies)} "
             f"({100 * len(latencies) / max(1, len(outcomes)):.1f} %), failed {failed.total()}"
             + (f" ({how})" if how else "")]
    if latencies:
        lines.append(f"latency p50 {latencies[len(latencies) // 2]:.2f} s, "
                     f"p90 {latencies[int(len(latencies) * 0.9)]:.2f} s")
    lines.append(f"replica-seconds {replica_seconds(rows):.0f} (pods starting, ready or draining), "
                 f"measured cold start {status.get('coldStartSeconds')} s")
    lines.append(f"scale events: {scale_events(rows)} (last: {status.get('lastScaleReason')})")
    return lines


def _plot(rows: list[dict], capacity: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r["t"] for r in rows]
    per_replica, which = capacity_line(rows, capacity)
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(t, [r["offered"] for r in rows], color="0.6", lw=1, label="offered load (req/s)")
    ax.plot(t, [r["demand"] for r in rows], color="tab:blue", lw=1.5, label="demand the operator sees (req/s)")
    ax.plot(t, [r["forecast"] for r in rows], color="tab:orange", lw=1.5, ls="--", label="forecast p90 at +horizon")
    ax.step(t, [(r["ready"] or 0) * c for r, c in zip(rows, per_replica, strict=True)], color="tab:green",
            where="post", lw=2, label=f"ready replicas {which}")
    ax.step(t, [(r["desired"] or 0) * c for r, c in zip(rows, per_replica, strict=True)], color="tab:red",
            where="post", lw=1, ls=":", label=f"desired replicas {which}")
    ax.set_xlabel("seconds (1 trace minute = one step of the accelerated clock)")
    ax.set_ylabel("requests/s")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


class DemoError(Exception):
    """What stops the demo, as the one line it prints."""


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


def _prepare(args: argparse.Namespace) -> tuple[str, list[float]]:
    """The trace's name and each step's request rate, once the flags, the trace and --out are usable."""
    from foresail.backtest.traces import TraceError, load_trace
    from foresail.demo.load import rates
    from foresail.demo.prometheus import find_binary

    problem = _bad_flag(args)
    if problem:
        raise DemoError(f"foresail demo: {problem}")
    try:
        find_binary()
        trace = load_trace(args.trace).resample(60.0)
    except (RuntimeError, TraceError) as exc:
        raise DemoError(f"foresail demo: {exc}") from None
    counts = list(trace.arrivals[: args.minutes])
    if not max(counts) > 0:
        raise DemoError(f"foresail demo: {trace.name} has no requests in its first {args.minutes} minutes")
    step_rates = rates(counts, args.peak_rps)
    planned = sum(step_rates) * args.step
    if planned > MAX_REQUESTS:
        raise DemoError(f"foresail demo: --peak-rps {args.peak_rps:g} plans about {planned:,.0f} requests, more than "
                        f"the {MAX_REQUESTS:,} the demo sends at most (lower --peak-rps, --minutes or --step)")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DemoError(f"foresail demo: cannot make --out {args.out}: {exc.strerror or exc}") from None
    return trace.name, step_rates


def _apply(stack: LocalStack, args: argparse.Namespace) -> None:
    """Create the demo's LLMDeployment; a DemoError with the API server's message if it refuses it."""
    import requests

    try:
        stack.apply(_manifest(args))
    except requests.HTTPError as exc:  # the CRD's schema: a Status whose message names each field
        try:
            message = str(exc.response.json()["message"]) if exc.response is not None else str(exc)
        except (KeyError, TypeError, ValueError):  # not a Status
            message = str(exc)
        raise DemoError(f"foresail demo: the flags make an LLMDeployment the API server rejects: {message}") from None


def _run_stack(args: argparse.Namespace, work: Path, step_rates: list[float]) -> tuple[list[Outcome], Sampler, dict]:
    """Start the local stack in ``work``, replay, stop it; the outcomes, the sampler and the final LLMDeployment.
    A start-up failure is a DemoError ("error: ...")."""
    import requests

    from foresail.demo.load import replay
    from foresail.demo.stack import LocalStack

    # flushed: piped (`| tee`), these lines would wait for the first minute's, a minute or more away
    print("Starting the Kubernetes API test server, Prometheus, the pod runner, the operator and the activator ...",
          flush=True)
    with contextlib.ExitStack() as running:
        try:
            stack = running.enter_context(LocalStack(work, cold_start_s=args.cold_start, activator=True))
            _apply(stack, args)
            print("Applied LLMDeployment 'demo'; waiting for the first replica ...", flush=True)
            stack.wait_ready("demo", 1, timeout_s=60 + 2 * args.cold_start)
        except (RuntimeError, TimeoutError, requests.RequestException) as exc:
            raise DemoError(f"error: {exc}") from None
        sampler = Sampler(stack, "demo").start()

        def on_step(i: int, rate: float) -> None:
            _check(stack)
            sampler.offered = rate
            row = sampler.rows[-1] if sampler.rows else {}
            if i % 3 == 0:
                fc = row.get("forecast")
                print(f"  minute {i:3d}  offered {rate:5.2f} req/s | seen {row.get('demand') or 0:5.2f} | "
                      f"forecast p90 {f'{fc:5.2f}' if fc is not None else '    -'} | desired {row.get('desired')} "
                      f"ready {row.get('ready')} | {row.get('reason', '')[:70]}", flush=True)

        # as clients of a chart install: to the activator, which spreads them over the ready pods
        try:
            outcomes = asyncio.run(replay(step_rates, args.step, lambda: [stack.activator_url], model="demo",
                                          on_step=on_step))
            _check(stack)
        finally:
            sampler.stop()
        return outcomes, sampler, stack.llmd("demo")


def _check(stack: LocalStack) -> None:
    """A DemoError if a process of the stack has exited during the replay: its figures would not be the system's."""
    problem = stack.exited()
    if problem:
        raise DemoError(f"error: during the replay, {problem}")


def keep_logs(work: Path, out: Path) -> None:
    """Copy every log under ``work`` to the same place under ``out``."""
    for log in work.rglob("*.log"):
        target = out / log.relative_to(work)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(log, target)


def _exit_on_signal(signum: int, frame: object) -> None:
    """SIGTERM or SIGHUP: leave through the `with` blocks that stop everything, as on Ctrl-C."""
    raise SystemExit(128 + signum)


def run(args: argparse.Namespace) -> int:
    """Start everything, replay, summarise, stop everything (also on Ctrl-C, SIGTERM and SIGHUP)."""
    try:
        name, step_rates = _prepare(args)
    except DemoError as exc:
        print(exc)
        return 2
    print(f"Replaying {len(step_rates)} minutes of {name} at {args.step:g} s per minute "
          f"(peak {args.peak_rps:g} req/s, {args.capacity:g} req/s per replica, cold start {args.cold_start:g} s)")
    previous = {sig: signal.signal(sig, _exit_on_signal) for sig in EXIT_SIGNALS}
    try:
        with tempfile.TemporaryDirectory(prefix="foresail-demo-") as tmp:
            try:
                outcomes, sampler, final = _run_stack(args, Path(tmp), step_rates)
            except DemoError as exc:  # its logs are kept where it says
                print(str(exc).replace(tmp, str(args.out)))
                return 2
            finally:
                keep_logs(Path(tmp), args.out)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    rows = sampler.rows
    print("\nSummary")
    for line in summary(outcomes, rows, final.get("status") or {}):
        print(f"  {line}")
    _plot(rows, args.capacity, args.out / "demo.png", f"foresail demo ({args.mode}): {name}")
    (args.out / "timeline.json").write_text(json.dumps(rows))
    print(f"  plot: {args.out / 'demo.png'}; timeline: {args.out / 'timeline.json'}; logs: {args.out}")
    if not outcomes:  # the Poisson arrivals of a low --peak-rps x --step x --minutes can be none at all
        print("  no request was sent: raise --peak-rps, --step or --minutes")
        return 1
    if not any(o.ok for o in outcomes):
        print(f"  no request was answered: see the failures above and the pods' logs in {args.out / 'pods'}")
        return 1
    return 0
