"""Schedules found in a week of history, applied to the next: what ``foresail schedules`` and
``autoscaling.learnSchedules`` buy, out of sample.

    PYTHONPATH=. python -m bench.schedules [--traces ../shared/traces] [--cold-starts 120,300] [--workers 2]

For every ServeGen customer series and service aggregate, ``find_recurring`` looks at the first 7 days
(what Prometheus would hold after a week) at the backtest's auto capacity. Where it finds windows,
Foresail replays the 14 days with and without them as ``autoscaling.schedules``, and the second week
alone is scored: SLO attainment, and replica-hours over the oracle's in that week.

``learnSchedules`` looks every hour in the history the policy has seen. Where it would find a window
in the hour before the second week or during it (``find_recurring`` on that history, checked every
hour), Foresail also replays the 14 days with ``learn_schedules`` on and the second week is scored the
same way. Series where neither finds anything run as before (a policy that learns nothing decides the
same) and are not replayed.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench import TRACES
from bench.table import cold_starts, output_file, workers
from foresail.autoscaler.recurrence import find_recurring
from foresail.autoscaler.schedule import parse_schedules
from foresail.backtest.experiment import Prepared, prepare, run_policy
from foresail.backtest.report import geomean
from foresail.backtest.traces import Trace, TraceError, iter_servegen_clients, load_trace

WEEK_S = 7 * 86400.0
TARGET = 0.99
RUNS = ("without", "with", "online")  # no schedule, the first week's, learned as it goes


def learned(p: Prepared) -> list[dict]:
    """The schedules found in the first week of a prepared trace."""
    rate = p.arrivals / p.sim.interval_s
    if p.gaps is not None:
        rate = np.where(p.gaps, np.nan, rate)
    week = int(WEEK_S / p.sim.interval_s)
    return [w.entry() for w in find_recurring(rate[:week], p.sim.interval_s, p.start_s, p.sim.capacity)]


def learns_online(p: Prepared) -> bool:
    """True when ``learn_schedules`` finds a window in some hour from the hour before the second week to its
    end, in the history the policy sees then (the demand as it arrived, gaps as zeros)."""
    rate = p.arrivals / p.sim.interval_s
    hour = int(3600 / p.sim.interval_s)
    ends = range(int(WEEK_S / p.sim.interval_s) - hour, len(rate) + hour, hour)
    return any(find_recurring(rate[:end], p.sim.interval_s, p.start_s, p.sim.capacity) for end in ends)


def second_week(p: Prepared, policy: str, schedules: list[dict], learn: bool = False) -> tuple[float, float]:
    """(SLO attainment, replica-hours) of one policy over the second week."""
    p = replace(p, sim=replace(p.sim, schedules=parse_schedules(schedules), learn_schedules=learn))
    res = run_policy(p, policy)
    k = int(WEEK_S / p.sim.interval_s)
    a = p.arrivals[k:]
    attainment = float(a[res.met[k:]].sum() / a.sum()) if a.sum() > 0 else 1.0
    return attainment, float(res.provisioned[k:].sum() * p.sim.interval_s / 3600.0)


def run_trace(job: tuple[Trace, tuple[float, ...]]) -> list[dict]:
    """Per cold start: learn on week one (and, online, as it goes); score week two with and without."""
    trace, colds = job
    rows = []
    online: bool | None = None  # the same at every cold start (the capacity does not depend on it)
    for cold in colds:
        p = prepare(trace, cold_start_s=cold)
        schedules = learned(p)
        row: dict = {"trace": trace.name, "group": trace.group, "cold_start_s": cold, "schedules": schedules}
        rows.append(row)
        if len(p.arrivals) * p.sim.interval_s <= WEEK_S + 86400:
            continue
        online = row["learns"] = learns_online(p) if online is None else online
        if not (schedules or online):
            continue
        _, oracle_hours = second_week(p, "oracle", [])
        for label, given, learn in (("without", [], False), ("with", schedules, False), ("online", [], True)):
            if label == "without" or (schedules if label == "with" else online):
                slo, hours = second_week(p, "foresail", given, learn)
                row[label] = {"slo": slo, "cost": hours / oracle_hours}
            else:  # nothing found: the policy decides as without
                row[label] = row["without"]
    return rows


def series(traces_dir: Path) -> list[Trace]:
    """Every ServeGen customer series with demand, and the service aggregates."""
    customers = [t for t in iter_servegen_clients(traces_dir / "servegen" / "servegen-clients.tar.gz")
                 if t.demand(t.default_unit).sum() > 0]
    return customers + [load_trace(p) for p in sorted((traces_dir / "servegen").glob("servegen-*-10min.csv"))]


def summary(rows: list[dict]) -> str:
    """The table: per cold start, the series where windows were found (in the first week, or by the policy
    as it went) and their second week without schedules, with the first week's, and learning as it goes."""
    lines = [f"{'cold start':>10} {'windows found':>16} {'series':>7}   "
             + "".join(f"{f'week 2 {label}: at 99 %, SLO median, cost':<42}" for label in RUNS)
             + f"{'better / worse SLO (with, online)':>34}"]
    for cold in sorted({r["cold_start_s"] for r in rows}):
        rs = [r for r in rows if r["cold_start_s"] == cold]
        for found, hit in (("in week 1", [r for r in rs if r["schedules"] and "without" in r]),
                           ("online", [r for r in rs if r.get("learns")])):
            cells, changed = [], []
            for label in RUNS:
                slo = np.array([r[label]["slo"] for r in hit])
                cells.append(f"{int((slo >= TARGET).sum()):>3}, {100 * np.median(slo):6.2f} %, "
                             f"x{geomean([r[label]['cost'] for r in hit]):.3f}" if hit else "")
                if label != "without":
                    changed.append(f"{sum(r[label]['slo'] > r['without']['slo'] + 1e-4 for r in hit)} / "
                                   f"{sum(r[label]['slo'] < r['without']['slo'] - 1e-4 for r in hit)}")
            lines.append(f"{cold:>9.0f}s {found:>16} {len(hit):>7}   " + "".join(f"{c:<42}" for c in cells)
                         + f"{', '.join(changed):>34}")
        lines.append(f"{'':>10} {'of':>16} {len(rs):>7}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=Path, default=TRACES)
    ap.add_argument("--cold-starts", type=cold_starts, default="120,300", metavar="S,S")
    ap.add_argument("--workers", type=workers, default=2)
    ap.add_argument("--out", type=output_file, help="write every series' figures as JSON")
    args = ap.parse_args(argv)
    try:
        traces = series(args.traces)
    except TraceError as exc:
        print(f"error: {exc}")
        return 2
    with ProcessPoolExecutor(args.workers) as pool:
        rows = [r for rs in tqdm(pool.map(run_trace, [(t, args.cold_starts) for t in traces]), total=len(traces),
                                 desc="series", unit="series") for r in rs]
    print(summary(rows))
    for r in rows:
        if "without" in r:
            print(f"{r['trace']:<28} {r['cold_start_s']:>4.0f}s  " + "  ".join(
                f"{label} {100 * r[label]['slo']:6.2f} % x{r[label]['cost']:.3f}" for label in RUNS if label in r)
                + "  " + ", ".join(f"{s['start']}-{s['end']} x{s['minReplicas']}" for s in r["schedules"]))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
