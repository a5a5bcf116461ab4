"""`foresail forecast`: forecast accuracy per horizon on a trace."""

from __future__ import annotations

import argparse
import math
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from foresail.backtest.accuracy import HorizonScore


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `foresail forecast`."""
    parser.add_argument("--trace", action="append", required=True, metavar="FILE", help="trace file (repeatable)")
    parser.add_argument("--horizon", type=float, action="append", metavar="MINUTES",
                        help="horizon in minutes (repeatable; default 10, 30, 60)")
    parser.add_argument("--quantile", type=float, default=0.9, help="upper quantile scored (default 0.9)")
    parser.add_argument("--train-fraction", type=float, default=0.5,
                        help="share of the trace learned before scoring starts (default 0.5)")
    parser.add_argument("--fill-gaps", action="store_true", help="bridge collection gaps before scoring")
    parser.add_argument("--json", metavar="FILE", help="write the scores as JSON")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _cell(value: float, text: str, width: int) -> str:
    """``text`` right-aligned in ``width`` where ``value`` is a number, else ``n/a``."""
    return f"{text if math.isfinite(value) else 'n/a':>{width}}"


def _mase(value: float) -> str:
    """A MASE in brackets, ``[n/a]`` where it is undefined (``_footnotes`` says why)."""
    return f"[{value:.2f}]" if math.isfinite(value) else "[n/a]"


def _row(s: HorizonScore, methods: list[str], q: float) -> str:
    """One horizon's line of the table; a line that says so where no step could be scored."""
    if s.n == 0:
        return (f"{s.horizon_s / 60:>6.0f}m  n=0: nothing scored (each step to score, or the one a horizon before "
                "it, is a collection gap)")
    cells = "".join(_cell(s.wape[m], f"{100 * s.wape[m]:.1f}% {_mase(s.mase[m])}", 22) for m in methods)
    return (f"{s.horizon_s / 60:>6.0f}m {cells}{_cell(s.pinball[0.5], f'{s.pinball[0.5]:.4f}', 12)}"
            f"{_cell(s.pinball[q], f'{s.pinball[q]:.4f}', _pinball_width(q))}"
            f"{_cell(s.coverage[q], f'{100 * s.coverage[q]:.1f}%', 10)}"
            f"{_cell(s.window_coverage[q], f'{100 * s.window_coverage[q]:.1f}%', 9)}")


def _pinball_width(q: float) -> int:
    """The width of the upper quantile's pinball column: 12, wider where its name is longer ("pinball p99.9")."""
    return max(12, len(f"pinball p{q * 100:g}") + 1)


def _footnotes(scores: list[HorizonScore]) -> list[str]:
    """Why a table's scores are ``n/a``: MASE without the change per step that scales it, the seasonal-naive
    forecast without the day before the steps scored."""
    scored = [s for s in scores if s.n > 0]
    notes = []
    if any(math.isfinite(w) and not math.isfinite(s.mase[m]) for s in scored for m, w in s.wape.items()):
        why = ("never changes" if scored[0].mase_scale == 0
               else "has no two steps to compare (too short, or collection gaps)")
        notes.append("[n/a]: MASE divides the error by the mean change from one of the trace's steps to the next in "
                     f"the part it learns from, and that part {why}")
    if any(not math.isfinite(s.wape["seasonal-naive"]) and math.isfinite(s.wape["persistence"]) for s in scored):
        notes.append("seasonal-naive n/a: it forecasts the demand of a day before, which the trace does not have for "
                     "every step scored (less than a day before them, or collection gaps)")
    return notes


def _print_table(name: str, scores: list[HorizonScore], methods: list[str], q: float) -> None:
    """The scores of the trace ``name``, a line per horizon, and why any of them is n/a."""
    print(f"== {name} (WAPE; MASE in brackets; quantiles of the foresail forecast; window: the "
          "highest forecast over the horizon against the highest demand, as the policy uses it)")
    print(f"{'horizon':>8} " + "".join(f"{m:>22}" for m in methods)
          + f"{'pinball p50':>12}{f'pinball p{q * 100:g}':>{_pinball_width(q)}}{'coverage':>10}{'window':>9}")
    for s in scores:
        print(_row(s, methods, q))
    for line in _footnotes(scores):
        print(line)


def _whole_minutes(horizons_s: tuple[float, ...]) -> tuple[float, ...]:
    """The horizons on the forecaster's one-minute steps, each once, with a note for one moved (0.5 min was a
    second row of 1 min's scores)."""
    steps = tuple(60.0 * max(1, round(h / 60)) for h in horizons_s)  # as evaluate() rounds them
    for asked, scored in zip(horizons_s, steps, strict=True):
        if asked != scored:
            print(f"note: --horizon {asked / 60:g} is scored at {scored / 60:g} min: the forecaster's steps are "
                  "whole minutes", file=sys.stderr)
    return tuple(dict.fromkeys(steps))


def run(args: argparse.Namespace) -> int:
    """Score the forecaster against the references; 2 on bad input, 1 where the JSON could not be written."""
    from foresail.backtest.accuracy import evaluate
    from foresail.backtest.report import write_json, written
    from foresail.backtest.traces import load_trace
    from foresail.checks import check_writable

    horizons = tuple(60.0 * h for h in (args.horizon or [10, 30, 60]))
    if not 0.5 < args.quantile < 1 or not 0 < args.train_fraction < 1:
        print("error: --quantile must be in (0.5, 1) and --train-fraction in (0, 1)", file=sys.stderr)
        return 2
    if not all(0 < h < math.inf for h in horizons):
        print("error: --horizon is a number of minutes > 0", file=sys.stderr)
        return 2
    horizons = _whole_minutes(horizons)
    try:
        if args.json:
            check_writable("--json", args.json)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        traces = [load_trace(path) for path in args.trace]
        traces = [trace.fill_gaps() for trace in traces] if args.fill_gaps else traces
    except ValueError as exc:  # a TraceError is one
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if len({trace.name for trace in traces}) != len(traces):  # one JSON entry each, as foresail backtest names them
        for i, trace in enumerate(traces):
            trace.name = f"{trace.name}#{i + 1}"
    out = {}
    methods = ["foresail", "persistence", "seasonal-naive", "holt-winters"]
    for trace in traces:
        try:
            scores = evaluate(trace, horizons, (0.5, args.quantile), train_fraction=args.train_fraction,
                              progress=not args.no_progress, note=lambda text: print(f"note: {text}", file=sys.stderr))
        except ValueError as exc:  # a TraceError is one
            print(f"error: {exc}", file=sys.stderr)
            return 2
        _print_table(trace.name, scores, methods, args.quantile)
        out[trace.name] = [
            {"horizon_s": s.horizon_s, "n": s.n, "wape": s.wape, "mase": s.mase, "mase_scale": s.mase_scale,
             "pinball": {str(k): v for k, v in s.pinball.items()},
             "coverage": {str(k): v for k, v in s.coverage.items()},
             "window_coverage": {str(k): v for k, v in s.window_coverage.items()}}
            for s in scores
        ]
    if args.json and not written("--json", args.json, lambda: write_json(args.json, out)):
        return 1
    return 0
