"""Scale to zero on ServeGen customer series: Foresail with its activator, without it, and Knative's KPA.

    PYTHONPATH=. python -m bench.scale_to_zero [--traces ../shared/traces] [--series m-large/chunk-4 ...]

Each series is replayed as `foresail backtest --trace SERIES --scale-to-zero --policy foresail --policy
kpa` does (120-s cold start, 60-s decisions, capacity sized from the series): Foresail with its activator
(what arrives at zero is held and counted, and the operator reads the count), Foresail with
``--no-activator`` (what arrives at zero fails, and time at zero is unknown), Knative's KPA behind its
activator, and Foresail without scale to zero. Prints SLO attainment and replica-hours per series, the
totals, on how many series Foresail's attainment is above Knative's, and the replica-hours Knative needs
for Foresail's attainment on each series (its target utilisation tuned to that series with hindsight,
interpolated between grid settings as bench.backtest does). The default series are the 8 m-large and 6
deepseek-r1 customers of the first chunks (docs/backtest.md, "Scale to zero").
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from tqdm import tqdm

from bench import TRACES
from bench.backtest import hours_at_slo
from bench.table import print_table, seconds
from foresail.backtest.baselines import POLICIES
from foresail.backtest.experiment import prepare, run_policy
from foresail.backtest.report import geomean
from foresail.backtest.simulate import SimResult
from foresail.backtest.traces import Trace, TraceError, iter_servegen_clients

SERIES = tuple(f"m-large/chunk-{i}" for i in range(8)) + tuple(f"deepseek-r1/chunk-{i}" for i in range(6))
RUNS = {  # column: (policy, scale to zero, activator)
    "activator": ("foresail", True, True),
    "no_activator": ("foresail", True, False),
    "kpa": ("kpa", True, True),
    "always_up": ("foresail", False, True),
}


def compare(trace: Trace, cold_start_s: float = 120.0) -> dict[str, SimResult]:
    """The four runs of one series, by column name."""
    return {column: run_policy(prepare(trace, cold_start_s=cold_start_s, scale_to_zero=to_zero, activator=door),
                               policy)
            for column, (policy, to_zero, door) in RUNS.items()}


def kpa_hours_at(trace: Trace, slo: float, cold_start_s: float = 120.0) -> float | None:
    """Replica-hours Knative's KPA needs for ``slo`` on this series with scale to zero, over its target
    utilisation grid; None where no setting reaches it."""
    prepared = prepare(trace, cold_start_s=cold_start_s, scale_to_zero=True)
    grid = [(r.slo_attainment, r.replica_hours) for r in (run_policy(prepared, "kpa", knob)
                                                           for knob in POLICIES["kpa"].grid)]
    return hours_at_slo(grid, slo)


def load_series(traces_dir: Path, names: tuple[str, ...]) -> list[Trace]:
    """The named ServeGen customer series, in the order given; TraceError naming any not found."""
    services = sorted({name.split("/")[0] for name in names})
    found = {tr.name: tr for tr in iter_servegen_clients(traces_dir / "servegen" / "servegen-clients.tar.gz",
                                                         services) if tr.name in names}
    missing = [name for name in names if name not in found]
    if missing:
        raise TraceError(f"no such ServeGen customer series: {', '.join(missing)} (expected <service>/chunk-<i>)")
    return [found[name] for name in names]


def _cell(res: SimResult) -> str:
    return f"{100 * res.slo_attainment:.1f} %, {res.replica_hours:,.0f} h"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traces", type=Path, default=TRACES)
    ap.add_argument("--series", nargs="+", default=list(SERIES), help="ServeGen customer series, service/chunk-N")
    ap.add_argument("--cold-start", type=seconds, default=120.0, help="seconds (default 120)")
    args = ap.parse_args(argv)
    try:
        traces = load_series(args.traces, tuple(args.series))
    except TraceError as exc:
        print(f"error: {exc}")
        return 2
    rows: list[dict[str, Any]] = []
    totals = dict.fromkeys(RUNS, 0.0)
    above, ratios = 0, []
    for trace in tqdm(traces, desc="series", unit="series"):
        runs = compare(trace, args.cold_start)
        ours = runs["activator"]
        need = kpa_hours_at(trace, ours.slo_attainment, args.cold_start)
        if need is not None:  # reached; at no replica-hours the ratio is infinite, which geomean leaves out
            ratios.append(ours.replica_hours / need if need > 0 else math.inf)
        rows.append({"series": trace.name, **{column: _cell(res) for column, res in runs.items()},
                     "kpa_equal": f"{need:,.0f} h (x{ratios[-1]:.2f})" if need is not None else "not reached"})
        for column, res in runs.items():
            totals[column] += res.replica_hours
        above += ours.slo_attainment > runs["kpa"].slo_attainment
    rows.append({"series": "replica-hours, all", **{column: f"{hours:,.0f} h" for column, hours in totals.items()},
                 "kpa_equal": ""})
    print_table(rows, {"series": "series", "activator": "Foresail, activator", "no_activator": "no activator",
                       "kpa": "Knative KPA", "always_up": "Foresail, no scale to zero",
                       "kpa_equal": "KPA at Foresail's SLO (Foresail / KPA)"})
    print(f"\nForesail with its activator above Knative's SLO attainment on {above} of {len(traces)} series "
          f"({args.cold_start:.0f}-s cold start)")
    if ratios:
        print(f"at Foresail's SLO, tuned series by series, Knative reaches it on {len(ratios)} of {len(traces)}; "
              f"there Foresail's replica-hours over Knative's: geo-mean x{geomean(ratios):.2f}, "
              f"{sum(r < 1 for r in ratios)} cheaper")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
