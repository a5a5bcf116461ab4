"""Schedules found in a week of history, applied to the next: what ``foresail schedules`` buys, out of sample.

    PYTHONPATH=. python -m bench.schedules [--traces ../shared/traces] [--cold-starts 120,300] [--workers 2]

For every ServeGen customer series and service aggregate, ``find_recurring`` looks at the first 7 days
(what Prometheus would hold after a week) at the backtest's auto capacity. Where it finds windows,
Foresail replays the 14 days with and without them as ``autoscaling.schedules``, and the second week
alone is scored: SLO attainment, and replica-hours over the oracle's in that week. Series where it finds
nothing run as before and are not replayed.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from foresail.autoscaler.schedule import parse_schedules
from foresail.backtest.experiment import Prepared, prepare, run_policy
from foresail.backtest.recurrence import find_recurring
from foresail.backtest.report import geomean
from foresail.backtest.traces import Trace, iter_servegen_clients, load_trace

WEEK_S = 7 * 86400.0
TARGET = 0.99


def learned(p: Prepared) -> list[dict]:
    """The schedules found in the first week of a prepared trace."""
    rate = p.arrivals / p.sim.interval_s
    if p.gaps is not None:
        rate = np.where(p.gaps, np.nan, rate)
    week = int(WEEK_S / p.sim.interval_s)
    return [w.entry() for w in find_recurring(rate[:week], p.sim.interval_s, p.start_s, p.sim.capacity)]


def second_week(p: Prepared, policy: str, schedules: list[dict]) -> tuple[float, float]:
    """(SLO attainment, replica-hours) of one policy over the second week."""
    if schedules:  # Foresail's scheduled floors
        p = replace(p, sim=replace(p.sim, schedules=parse_schedules(schedules)))
    res = run_policy(p, policy)
    k = int(WEEK_S / p.sim.interval_s)
    a = p.arrivals[k:]
    attainment = float(a[res.met[k:]].sum() / a.sum()) if a.sum() > 0 else 1.0
    return attainment, float(res.provisioned[k:].sum() * p.sim.interval_s / 3600.0)


def run_trace(job: tuple[Trace, float]) -> dict:
    """Learn on week one; score week two with and without what was learned."""
    trace, cold = job
    p = prepare(trace, cold_start_s=cold)
    schedules = learned(p)
    row: dict = {"trace": trace.name, "group": trace.group, "cold_start_s": cold, "schedules": schedules}
    if schedules and len(p.arrivals) * p.sim.interval_s > WEEK_S + 86400:
        _, oracle_hours = second_week(p, "oracle", [])
        for label, given in (("without", []), ("with", schedules)):
            slo, hours = second_week(p, "foresail", given)
            row[label] = {"slo": slo, "cost": hours / oracle_hours}
    return row


def series(traces_dir: Path) -> list[Trace]:
    """Every ServeGen customer series with demand, and the service aggregates."""
    customers = [t for t in iter_servegen_clients(traces_dir / "servegen" / "servegen-clients.tar.gz")
                 if t.demand(t.default_unit).sum() > 0]
    return customers + [load_trace(p) for p in sorted((traces_dir / "servegen").glob("servegen-*-10min.csv"))]


def summary(rows: list[dict]) -> str:
    """The table: per cold start, the series with windows and their second week without and with them."""
    lines = [f"{'cold start':>10} {'series':>7} {'with windows':>13} {'windows':>8}   "
             f"{'week 2 without: at 99 %, SLO median, cost':<42} {'with: at 99 %, SLO median, cost':<34}"
             f"{'better / worse SLO':>19}"]
    for cold in sorted({r["cold_start_s"] for r in rows}):
        rs = [r for r in rows if r["cold_start_s"] == cold]
        hit = [r for r in rs if "with" in r]
        if not hit:
            lines.append(f"{cold:>9.0f}s {len(rs):>7} {0:>13}")
            continue
        cells = []
        for label in ("without", "with"):
            slo = np.array([r[label]["slo"] for r in hit])
            cost = geomean([r[label]["cost"] for r in hit])
            cells.append(f"{int((slo >= TARGET).sum()):>3}, {100 * np.median(slo):6.2f} %, x{cost:.3f}")
        better = sum(r["with"]["slo"] > r["without"]["slo"] + 1e-4 for r in hit)
        worse = sum(r["with"]["slo"] < r["without"]["slo"] - 1e-4 for r in hit)
        lines.append(f"{cold:>9.0f}s {len(rs):>7} {len(hit):>13} {sum(len(r['schedules']) for r in hit):>8}   "
                     f"{cells[0]:<42} {cells[1]:<34}{f'{better} / {worse}':>19}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "traces")
    ap.add_argument("--cold-starts", default="120,300", metavar="S,S")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, help="write every series' figures as JSON")
    args = ap.parse_args(argv)
    traces = series(args.traces)
    jobs = [(t, float(c)) for c in args.cold_starts.split(",") for t in traces]
    with ProcessPoolExecutor(args.workers) as pool:
        rows = list(tqdm(pool.map(run_trace, jobs), total=len(jobs), desc="series", unit="series"))
    print(summary(rows))
    for r in rows:
        if "with" in r:
            print(f"{r['trace']:<28} {r['cold_start_s']:>4.0f}s  {100 * r['without']['slo']:6.2f} % x"
                  f"{r['without']['cost']:.3f} -> {100 * r['with']['slo']:6.2f} % x{r['with']['cost']:.3f}  "
                  + ", ".join(f"{s['start']}-{s['end']} x{s['minReplicas']}" for s in r["schedules"]))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
