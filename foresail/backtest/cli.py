"""`foresail backtest`: replay traces through a simulated deployment under Foresail and the anchors."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from foresail.autoscaler.schedule import Schedule
    from foresail.backtest.experiment import Prepared
    from foresail.backtest.simulate import SimResult

POLICY_NAMES = ["foresail", "hpa", "kpa", "apa", "holt-winters", "static", "oracle"]
SLOTS = 8  # --slots' default


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `foresail backtest`."""
    parser.add_argument("--trace", action="append", required=True, metavar="FILE",
                        help="trace file (Azure CSV, Mooncake JSONL, ServeGen CSV, ARCHIVE.tar.gz:<service>/chunk-<i> "
                             "(or .tar, .tgz, .tar.bz2, .tar.xz), "
                             "or a CSV time_s,arrivals[,input_tokens,output_tokens]; a file may be .gz, .bz2, .xz "
                             "or .zip); repeat for several")
    parser.add_argument("--policy", action="append", choices=POLICY_NAMES, metavar="NAME",
                        help=f"policy to run (repeatable; default all: {', '.join(POLICY_NAMES)})")
    parser.add_argument("--cold-start", type=float, default=120.0, metavar="SECONDS",
                        help="time from asking for a replica to it serving (default 120)")
    parser.add_argument("--capacity", default="auto", metavar="RATE",
                        help="demand one replica serves within the SLO, requests/s (tokens/s where the trace has "
                             "tokens); default auto: the trace's 99th-percentile demand / 8")
    parser.add_argument("--slo-wait", type=float, default=10.0, metavar="SECONDS",
                        help="queueing delay within which a step's backlog must drain to meet the SLO (default 10)")
    parser.add_argument("--interval", type=float, default=60.0, metavar="SECONDS", help="decision step (default 60)")
    parser.add_argument("--unit", choices=["auto", "requests", "tokens"], default="auto",
                        help="demand unit (default auto: tokens where the trace has them)")
    parser.add_argument("--min-replicas", type=int, default=1, help="default 1")
    parser.add_argument("--max-replicas", type=int, default=1000, help="default 1000")
    parser.add_argument("--scale-to-zero", action="store_true", help="allow zero replicas when idle")
    parser.add_argument("--no-activator", action="store_true",
                        help="with --scale-to-zero: Foresail without its activator, so requests at zero replicas "
                             "fail (the baselines keep their request-holding proxy)")
    parser.add_argument("--match-slo", type=float, metavar="ATTAINMENT",
                        help="tune each baseline's knob to its cheapest single setting reaching this attainment "
                             "on every trace (e.g. 0.99); Foresail keeps its shipped defaults")
    parser.add_argument("--slo-target", type=float, metavar="ATTAINMENT",
                        help="turn on Foresail's SLO governor for this attainment, e.g. 0.99 (default: off)")
    parser.add_argument("--schedule", metavar="FILE.yaml",
                        help="Foresail's scheduled floors: an LLMDeployment manifest (its spec.autoscaling.schedules) "
                             "or a YAML list of such entries, in the trace's clock (Unix time, or from its day-0 "
                             "midnight); the baselines ignore it")
    parser.add_argument("--learn-schedules", action="store_true",
                        help="Foresail looks for windows in which demand recurs by the clock in the history it has "
                             "seen, every hour from a day of it on, and holds their floors "
                             "(autoscaling.learnSchedules); the baselines do not")
    parser.add_argument("--queue", choices=["fluid", "requests"], default="fluid",
                        help="fluid (default): demand drains as a liquid at the ready capacity; requests: single "
                             "requests wait first come, first served for one of --slots per ready replica and meet "
                             "the SLO when they start within --slo-wait (README, The simulation model)")
    parser.add_argument("--slots", type=int, metavar="N",
                        help="with --queue requests: requests one replica runs at once, each at capacity / N "
                             "(default 8)")
    parser.add_argument("--fill-gaps", action="store_true",
                        help="bridge collection gaps by interpolation (ServeGen windows where every customer "
                        "reports zero; steps a generic CSV has no row for)")
    parser.add_argument("--json", metavar="FILE", help="write the summary as JSON")
    parser.add_argument("--timeline", metavar="FILE.csv", help="write one row per step and policy")
    parser.add_argument("--plot", metavar="FILE.png", help="plot demand, forecast and replicas (first trace)")
    parser.add_argument("--plot-hours", metavar="START:END", help="plot only this window (hours from the start)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run the backtest; 2 on bad input, 1 where an output file could not be written."""
    from foresail.backtest.experiment import prepare
    from foresail.backtest.traces import load_trace

    policies = args.policy or POLICY_NAMES
    if "oracle" not in policies:
        policies = policies + ["oracle"]  # costs are reported relative to it
    try:
        capacity, schedules, hours = check_arguments(args)
        prepared = [
            prepare(load_trace(path), args.interval, args.cold_start, capacity, args.slo_wait, args.unit,
                    args.fill_gaps, args.min_replicas, args.max_replicas, args.scale_to_zero, not args.no_activator,
                    schedules, args.learn_schedules, args.queue, args.slots)
            for path in args.trace
        ]
        for p in prepared:
            check_capacity(p)
            check_cold_start(p)
        if hours:
            check_plot_hours(prepared[0], hours)
    except ValueError as exc:  # a TraceError is one
        print(f"error: {exc}", file=sys.stderr)
        return 2
    names = [p.name for p in prepared]
    if len(set(names)) != len(names):
        for i, p in enumerate(prepared):
            p.name = f"{p.name}#{i + 1}"
    results, settings = run_policies(args, policies, prepared)
    return 0 if write_results(args, prepared, results, settings, schedules, hours) else 1


def write_results(args: argparse.Namespace, prepared: list[Prepared], results: dict[str, dict[str, SimResult]],
                  settings: dict[str, float | None], schedules: tuple[Schedule, ...],
                  hours: tuple[float, float] | None) -> bool:
    """The table on the terminal, and the files the flags ask for (JSON summary, timeline, plot); False, with an
    error that says why, where one of them could not be written."""
    from foresail.backtest import report

    summary = report.summarise(results, {
        "cold_start_s": args.cold_start, "interval_s": args.interval, "slo_wait_s": args.slo_wait,
        "capacity": {p.name: p.sim.capacity for p in prepared}, "unit": {p.name: p.sim.unit for p in prepared},
        "match_slo": args.match_slo, "slo_target": args.slo_target, "tuned_settings": settings,
        "fill_gaps": args.fill_gaps, "queue": args.queue, "slots": args.slots if args.queue == "requests" else None,
        "schedules": [f"{x.name} {x.describe()}: at least {x.min_replicas}" for x in schedules],
        "learn_schedules": args.learn_schedules,
        "learned": {p.name: results[p.name]["foresail"].extra.get("learned", []) for p in prepared
                    if "foresail" in results[p.name]},
    })
    if args.queue == "requests":
        print(f"single requests, {args.slots} at once per ready replica: SLO attainment is the share of requests that "
              f"start within {args.slo_wait:g} s of arriving")
    print(report.table(summary))
    if schedules:
        print("foresail's scheduled floors: " + "; ".join(summary["settings"]["schedules"]))
    for trace, found in summary["settings"]["learned"].items():
        if args.learn_schedules:
            print(f"foresail learned on {trace}: " + ("; ".join(found) or "no recurring window"))
    ok = True
    if args.json:
        ok &= report.written("--json", args.json, lambda: report.write_json(args.json, summary))
    if args.timeline:
        ok &= report.written("--timeline", args.timeline,
                             lambda: report.write_timeline(args.timeline, prepared, results))
    if args.plot:
        ok &= report.written("--plot", args.plot,
                             lambda: report.plot(args.plot, prepared[0], results[prepared[0].name], hours))
    return ok


def check_arguments(args: argparse.Namespace) -> tuple[float | None, tuple[Schedule, ...], tuple[float, float] | None]:
    """The capacity (None for auto), the scheduled floors and the plot's hours from the flags, once the flags'
    bounds and the output paths are checked; ValueError says what is wrong. Normalises ``args.plot``."""
    from foresail.backtest.simulate import MAX_NEED
    from foresail.checks import check_plot, check_writable

    capacity = parse_capacity(args.capacity)
    if not (0 <= args.cold_start < math.inf and 0 < args.interval < math.inf and 0 <= args.slo_wait < math.inf):
        raise ValueError("--cold-start and --slo-wait must be >= 0 and --interval > 0, in seconds (not NaN or inf)")
    if not 0 <= args.min_replicas <= args.max_replicas <= MAX_NEED or args.max_replicas < 1:
        raise ValueError(f"need 0 <= --min-replicas <= --max-replicas <= {MAX_NEED:g} and --max-replicas >= 1")
    if args.min_replicas == 0 and not args.scale_to_zero:  # as the CRD refuses minReplicas 0 without scaleToZero
        raise ValueError("--min-replicas 0 needs --scale-to-zero")
    if args.slo_target is not None and not 0.5 <= args.slo_target < 1:
        raise ValueError("--slo-target is an attainment in [0.5, 1), e.g. 0.99")
    if args.match_slo is not None and not 0 < args.match_slo <= 1:
        raise ValueError("--match-slo is an attainment in (0, 1], e.g. 0.99")
    check_combinations(args)
    args.slots = SLOTS if args.slots is None else args.slots
    if args.slots < 1:
        raise ValueError(f"--slots is the number of requests one replica runs at once, at least 1, not {args.slots}")
    schedules = load_schedules(args.schedule) if args.schedule else ()
    hours = parse_hours(args.plot_hours) if args.plot_hours else None
    for flag, path in (("--json", args.json), ("--timeline", args.timeline)):
        if path:
            check_writable(flag, path)
    if args.plot:
        args.plot = check_plot("--plot", args.plot)
    return capacity, schedules, hours


def check_combinations(args: argparse.Namespace) -> None:
    """ValueError for a flag that only means something with another one, given without it."""
    if args.plot_hours and not args.plot:
        raise ValueError("--plot-hours chooses the window of the plot: it needs --plot FILE.png")
    if args.no_activator and not args.scale_to_zero:  # with replicas always up, the activator has nothing to hold
        raise ValueError("--no-activator takes away what holds requests at zero replicas: it needs --scale-to-zero")
    if args.slots is not None and args.queue != "requests":
        raise ValueError("--slots is the batching slots of single requests: it needs --queue requests")


def check_capacity(p: Prepared) -> None:
    """ValueError where the capacity is so small that the busiest step of ``p`` needs more than ``MAX_NEED``
    replicas (a capacity in the wrong unit)."""
    from foresail.backtest.simulate import MAX_NEED

    most = MAX_NEED * p.sim.capacity * p.sim.interval_s  # the demand per step that many replicas serve
    if not (most > 0 and p.arrivals.max() <= most):
        raise ValueError(f"--capacity {p.sim.capacity:g} {p.sim.unit} is too small for {p.name}: its busiest step "
                         f"would need more than {MAX_NEED:g} replicas")


def check_cold_start(p: Prepared) -> None:
    """ValueError where no replica asked for in ``p`` could serve before it ends: a cold start as long as the trace
    (Foresail would forecast that far ahead at every step, for hours)."""
    if p.sim.cold_steps >= len(p.arrivals):
        raise ValueError(f"--cold-start {p.sim.cold_start_s:g} s is as long as {p.name} ({len(p.arrivals)} steps of "
                         f"{p.sim.interval_s:g} s): no replica asked for would serve before it ends")


def check_plot_hours(p: Prepared, hours: tuple[float, float]) -> None:
    """ValueError unless the ``--plot-hours`` window holds a step of the trace ``p``, the one plotted."""
    import numpy as np

    steps_h = np.arange(len(p.arrivals)) * p.sim.interval_s / 3600.0
    if not ((steps_h >= hours[0]) & (steps_h < hours[1])).any():
        raise ValueError(f"--plot-hours {hours[0]:g}:{hours[1]:g} holds no step of {p.name}, which lasts "
                         f"{len(p.arrivals) * p.sim.interval_s / 3600:.4g} hours in steps of {p.sim.interval_s:g} s")


def run_policies(args: argparse.Namespace, policies: list[str], prepared: list[Prepared]
                 ) -> tuple[dict[str, dict[str, SimResult]], dict[str, float | None]]:
    """Each policy over each prepared trace, by trace name then policy name, under a progress bar; with
    ``--match-slo`` each baseline at its cheapest single setting that reaches it, returned by policy."""
    from tqdm import tqdm

    from foresail.backtest.experiment import run_policy
    from foresail.backtest.tune import match_slo

    tuned = args.match_slo is not None
    runs = sum(1 if (not tuned or name in ("foresail", "oracle")) else 8 for name in policies) * len(prepared)
    bar = tqdm(total=runs, desc="backtest", disable=args.no_progress or runs < 4, file=sys.stderr)
    results: dict[str, dict[str, SimResult]] = {p.name: {} for p in prepared}
    settings: dict[str, float | None] = {}
    for name in policies:
        if tuned and name not in ("foresail", "oracle"):
            knob, by_trace = match_slo(name, prepared, args.match_slo, on_run=lambda: bar.update(1))
            settings[name] = knob
            for p in prepared:
                results[p.name][name] = by_trace[p.name]
        else:
            for p in prepared:
                knob = args.slo_target if name == "foresail" else None
                results[p.name][name] = run_policy(p, name, knob, record_forecast=bool(args.plot) and p is prepared[0])
                bar.update(1)
    bar.close()
    return results, settings


def parse_hours(text: str) -> tuple[float, float]:
    """``--plot-hours START:END`` (hours from the start, START < END); ValueError says what is wrong."""
    start, _, end = text.partition(":")
    try:
        hours = (float(start), float(end))
    except ValueError:
        hours = (math.nan, math.nan)
    if not 0 <= hours[0] < hours[1] < math.inf:
        raise ValueError(f"--plot-hours is START:END in hours from the trace's start, START < END, not {text!r}")
    return hours


def parse_capacity(text: str) -> float | None:
    """``--capacity``: a positive rate, or None for ``auto``; ValueError says what is wrong."""
    if text == "auto":
        return None
    try:
        capacity = float(text)
    except ValueError:
        capacity = float("nan")
    if not 0 < capacity < math.inf:
        raise ValueError(f"--capacity must be a positive number or 'auto', not {text!r}")
    return capacity


def load_schedules(path: str) -> tuple[Schedule, ...]:
    """Scheduled floors from a YAML file: an LLMDeployment manifest (its ``spec.autoscaling.schedules``) or a
    list of such entries; ValueError says what is wrong with it."""
    import yaml

    from foresail.autoscaler.schedule import parse_schedules

    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"--schedule {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"--schedule {path}: not YAML: {exc}") from None
    where = "schedules"
    if isinstance(doc, dict):
        where = "spec.autoscaling.schedules"
        for key in ("spec", "autoscaling", "schedules"):
            doc = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(doc, list) or not doc:
        raise ValueError(f"--schedule {path}: expected a YAML list of schedules (start, end, minReplicas, and "
                         "optionally days, timeZone, name) or an LLMDeployment with spec.autoscaling.schedules")
    return parse_schedules(doc, f"{path}: {where}")
