"""`foresail schedules`: jobs that recur by the clock in a trace, as ``autoscaling.schedules`` to review."""

from __future__ import annotations

import argparse
import math
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from foresail.autoscaler.recurrence import Recurring

SEARCHES = {"hour": "hourly", "day": "daily", "weekday": "weekday"}  # the windows of each period
CRD_MAX_REPLICAS = 1000  # the most minReplicas (and maxReplicas) the LLMDeployment CRD accepts


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `foresail schedules`."""
    parser.add_argument("--trace", required=True, metavar="FILE",
                        help="trace file, as for foresail backtest (foresail history writes one from Prometheus)")
    parser.add_argument("--capacity", default="auto", metavar="RATE",
                        help="demand one replica serves, as for foresail backtest (default auto: the trace's "
                             "99th-percentile demand / 8)")
    parser.add_argument("--interval", type=float, default=60.0, metavar="SECONDS",
                        help="step, dividing the hour or the day (default 60)")
    parser.add_argument("--unit", choices=["auto", "requests", "tokens"], default="auto",
                        help="demand unit (default auto: tokens where the trace has them)")
    parser.add_argument("--days", type=float, metavar="N",
                        help="look at the first N days only (to replay the rest with foresail backtest --schedule)")
    parser.add_argument("--min-share", type=float, default=0.8, metavar="SHARE",
                        help="share of the hours (days) a window must recur in (default 0.8)")
    parser.add_argument("--min-ratio", type=float, default=2.0, metavar="RATIO",
                        help="how far above the hour's (day's) median, and above the 10 min before, demand must "
                             "jump (default 2)")
    parser.add_argument("--max-replicas", type=int, default=CRD_MAX_REPLICAS, metavar="N",
                        help="the most replicas a window's floor asks for, the deployment's maxReplicas (default "
                             f"{CRD_MAX_REPLICAS}, the most the LLMDeployment accepts)")
    parser.add_argument("-o", "--out", metavar="FILE.yaml", help="also write the schedules there")


def run(args: argparse.Namespace) -> int:
    """Print the windows found, as YAML with the evidence in comments; 2 on bad input, 1 where ``--out`` could not
    be written."""
    import numpy as np

    from foresail.autoscaler.recurrence import PERIODS_S, find_recurring, not_searched, step_misfit
    from foresail.backtest.cli import parse_capacity
    from foresail.backtest.experiment import prepare
    from foresail.backtest.report import write_text, written
    from foresail.backtest.traces import load_trace
    from foresail.checks import check_writable

    try:
        capacity = parse_capacity(args.capacity)
        if args.out:
            check_writable("--out", args.out)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not 0 < args.min_share <= 1 or not args.min_ratio > 1 or not args.interval > 0 or (
            args.days is not None and not 0 < args.days < math.inf) or not 1 <= args.max_replicas <= CRD_MAX_REPLICAS:
        print(f"error: --min-share must be in (0, 1], --min-ratio above 1, --max-replicas in [1, {CRD_MAX_REPLICAS}], "
              "--interval and --days positive (and finite)", file=sys.stderr)
        return 2
    if all(step_misfit(args.interval, period) for period in PERIODS_S):
        print(f"error: --interval must divide the hour (3600 s) or the day (86400 s) into two steps or more, "
              f"not {args.interval:g}", file=sys.stderr)
        return 2
    try:
        p = prepare(load_trace(args.trace), args.interval, capacity=capacity, unit=args.unit)
    except ValueError as exc:  # a TraceError is one
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rate = p.arrivals / p.sim.interval_s
    if p.gaps is not None:
        rate = np.where(p.gaps, np.nan, rate)
    if args.days is not None:
        rate = rate[:int(args.days * 86400 / p.sim.interval_s)]
    found = find_recurring(rate, p.sim.interval_s, p.start_s, p.sim.capacity, args.min_share, args.min_ratio)
    skipped = not_searched(rate, p.sim.interval_s, p.start_s)
    looked = f"{len(rate) * p.sim.interval_s / 86400:.1f} days of {p.name}"
    lines = [f"# foresail schedules: {len(found)} window{'s' if len(found) != 1 else ''} in {looked}, at "
             f"{p.sim.capacity:.4g} {p.sim.unit} per replica; times in the trace's clock (UTC). Check each "
             "before applying it."]
    share = f"{100 * args.min_share:.0f} %"
    searched = [f"minute of {share} of the hours"] if "hour" not in skipped else []
    if "day" not in skipped:
        searched.append("time of the days" if searched else f"time of {share} of the days")
    if not found and searched:
        lines.append(f"# none: no demand jumped at the same {', or '.join(searched)}")
    lines += [f"# {SEARCHES[period]} windows not searched: {why}" for period, why in skipped.items()]
    for w in found:
        lines += _window(w, p.sim.unit, args.max_replicas)
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out and not written("--out", args.out, lambda: write_text(args.out, text)):
        return 1
    return 0


def _window(w: Recurring, unit: str, max_replicas: int) -> list[str]:
    """A window's evidence as a comment and its entry, its floor capped at ``max_replicas`` (the comment says so)."""
    e = w.entry()
    days = f"days: [{', '.join(e['days'])}], " if "days" in e else ""
    needs = e["minReplicas"]
    floor = min(needs, max_replicas)
    capped = f"; capped at {floor} (--max-replicas), the window needs {needs}" if floor < needs else ""
    return [f"# {w.name}: {w.evidence(unit)}{capped}",
            f'- {{name: {e["name"]}, {days}start: "{e["start"]}", end: "{e["end"]}", minReplicas: {floor}}}']
