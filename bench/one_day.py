"""Foresail alone on every one-day ServeGen customer series: how many reach 99 % SLO, and at what cost.

    PYTHONPATH=. python -m bench.one_day [--traces ../shared/traces] [--services deepseek-r1 mm-image]
                                         [--cold-starts 120,300] [--workers 2] [--queue fluid|requests]

The deepseek-r1 and mm-image services of ServeGen's customer tarball cover one day each (108 series);
each is replayed as `foresail backtest --trace SERIES --policy foresail --policy oracle` does (60-s
decisions, capacity sized from the series). Prints, per cold start, the series replayed, those at 99 % or
more, the mean SLO attainment and the geometric-mean cost relative to the oracle, and the oracle's mean
attainment (100 % in the fluid queue; `--queue requests` replays single requests, where it can miss). Only
Foresail and the oracle run, so it takes minutes where `bench.backtest --customers 0` takes most of an hour.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm import tqdm

from bench import TRACES
from bench.table import cold_starts, workers
from foresail.backtest.experiment import QUEUES, prepare, run_policy
from foresail.backtest.report import geomean
from foresail.backtest.traces import Trace, TraceError, iter_servegen_clients


def replay(job: tuple[Trace, float, str]) -> tuple[float, float, float] | None:
    """Foresail's SLO attainment, its cost over the oracle's and the oracle's attainment on one series, in the
    simulator's ``queue`` model; None where it cannot run."""
    trace, cold_start_s, queue = job
    try:
        prepared = prepare(trace, cold_start_s=cold_start_s, queue=queue)
    except TraceError:
        return None
    ours, oracle = run_policy(prepared, "foresail"), run_policy(prepared, "oracle")
    return ours.slo_attainment, ours.replica_hours / oracle.replica_hours, oracle.slo_attainment


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traces", type=Path, default=TRACES)
    ap.add_argument("--services", nargs="+", default=["deepseek-r1", "mm-image"])
    ap.add_argument("--cold-starts", type=cold_starts, default="120,300",
                    help="seconds, comma-separated (default 120,300)")
    ap.add_argument("--workers", type=workers, default=2)
    ap.add_argument("--queue", choices=QUEUES, default="fluid",
                    help="the simulator's queue (foresail backtest --queue; default fluid)")
    args = ap.parse_args(argv)
    try:
        traces = list(iter_servegen_clients(args.traces / "servegen" / "servegen-clients.tar.gz", args.services))
    except TraceError as exc:
        print(f"error: {exc}")
        return 2
    for cold_start_s in args.cold_starts:
        jobs = [(trace, cold_start_s, args.queue) for trace in traces]
        with ProcessPoolExecutor(args.workers) as pool:
            done = [r for r in tqdm(pool.map(replay, jobs), total=len(jobs), desc=f"{cold_start_s:.0f} s",
                                    unit="series") if r]
        if not done:
            print(f"cold start {cold_start_s:.0f} s: no series could be replayed")
            continue
        slo, oracle = [s for s, _, _ in done], [o for _, _, o in done]
        print(f"cold start {cold_start_s:.0f} s: {len(done)} series, {sum(s >= 0.99 for s in slo)} at 99 %, "
              f"mean SLO {100 * sum(slo) / len(slo):.2f} %, geo-mean cost x{geomean([c for _, c, _ in done]):.3f} "
              f"the oracle (whose mean SLO is {100 * sum(oracle) / len(oracle):.2f} %, "
              f"{sum(o >= 0.99 for o in oracle)} at 99 %)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
