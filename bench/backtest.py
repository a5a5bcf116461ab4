"""The multi-trace backtest benchmark: Foresail (shipped defaults) against the anchors at equal SLO.

    PYTHONPATH=. python -m bench.backtest [--traces ../shared/traces] [--out bench-backtest.json] [--workers 2]
        [--customers 12] [--cold-starts 120,300] [--skip-forecast] [--queue fluid|requests] [--max-requests N]

For each cold start (120 s and 300 s) and each trace group (ServeGen customers, ServeGen service
aggregates, Azure, Mooncake), every baseline's knob is scanned over its whole grid and the fleet-wide
setting is the cheapest one that reaches 99 % SLO attainment on every trace of the group (or, on a trace
where no setting can, the best it can). Foresail runs untuned. It also compares at equal SLO series by
series: each baseline at the setting that gives, on that series, Foresail's own SLO attainment (a
per-series tuning no fleet-wide setting gets, so the most the baseline can do). Also prints forecast
accuracy (WAPE against persistence at 10/30/60 min and p90 coverage, per step and over the window up to
the horizon, on the second half of each series, which the shipped prior never saw) and times a 14-day,
one-minute backtest with all policies.

ServeGen customers: a deterministic subset, the ``--customers`` (default 12) largest by request volume
of each of the four services, because all 379 series do not fit in ~10 minutes on 2 cores;
``--customers 0`` runs every one with demand (378; about 50 minutes per cold start on 2 cores).
``--queue requests`` replays single requests over batching slots instead of the fluid queue (as
``foresail backtest --queue requests``), on the series of at most ``--max-requests`` requests (2 million
unless set; the same flag narrows a fluid run to the same series).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from itertools import pairwise
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench import TRACES
from bench.table import cold_starts, output_file, plot_file, workers
from foresail.backtest.accuracy import evaluate
from foresail.backtest.baselines import POLICIES
from foresail.backtest.experiment import QUEUES, prepare, run_policy
from foresail.backtest.report import geomean
from foresail.backtest.request_queue import MAX_REQUESTS
from foresail.backtest.traces import Trace, TraceError, iter_servegen_clients, load_trace
from foresail.backtest.tune import fleet_setting

COLD_STARTS = (120.0, 300.0)
SWITCH_ON_BINS = (0.0, 0.01, 0.03, 0.10, 1.0)
TARGET = 0.99
BASELINES = ["hpa", "kpa", "apa", "holt-winters", "static"]
SLO_WAIT_S = 10.0  # --slo-wait of every run
OUT = "bench-backtest.json"  # --out's default
SLOTS = 8  # batching slots per replica, with --queue requests
REQUESTS_REPLAYED = 2_000_000  # --queue requests: the series of more are left out unless --max-requests says


def load_groups(traces_dir: Path, per_service: int) -> dict[str, list[Trace]]:
    """Trace groups (a group shares one fleet-wide baseline setting)."""
    by_service: dict[str, list[Trace]] = {}
    for tr in iter_servegen_clients(traces_dir / "servegen" / "servegen-clients.tar.gz"):
        if tr.demand(tr.default_unit).sum() > 0:  # a series with no demand at all (m-mid/chunk-97) has nothing to scale
            by_service.setdefault(tr.group, []).append(tr)
    customers = []
    for service in sorted(by_service):
        ranked = sorted(by_service[service], key=lambda t: (-t.arrivals.sum(), t.name))
        customers += ranked[:per_service] if per_service > 0 else ranked
    aggregates = [load_trace(p) for p in sorted((traces_dir / "servegen").glob("servegen-*-10min.csv"))]
    return {
        "servegen-customers": customers,
        "servegen-aggregates": aggregates,
        "azure": [load_trace(p) for p in sorted((traces_dir / "azure-llm-2023").glob("*.csv"))],
        "mooncake": [load_trace(p) for p in sorted((traces_dir / "mooncake-fast25").glob("*.jsonl*"))],
    }


def within(groups: dict[str, list[Trace]], max_requests: int | None) -> dict[str, list[Trace]]:
    """The groups with their series of at most ``max_requests`` requests only (all of them with None), and
    the groups left empty left out; says which series it leaves out."""
    if not max_requests:
        return groups
    left_out = list(dict.fromkeys(t.name for ts in groups.values() for t in ts if t.arrivals.sum() > max_requests))
    print(f"left out (more than {max_requests:,} requests): {', '.join(left_out) or 'none'}")
    return {g: kept for g, ts in groups.items() if (kept := [t for t in ts if t.name not in left_out])}


def switch_ons(d: np.ndarray) -> np.ndarray:
    """True at the steps with demand at least twice the step before (a "switch-on")."""
    return np.r_[False, d[1:] >= 2 * d[:-1]] & (d > 0)


def switch_on_share(trace: Trace) -> float:
    """Share of demand in switch-ons, at the trace's own resolution.

    Such a rise gives no sign one step ahead, so a causal policy meets it with the capacity it held before.
    """
    d = trace.demand(trace.default_unit)
    return float(d[switch_ons(d)].sum() / d.sum()) if d.sum() > 0 else 0.0


def run_trace(job: tuple[Trace, float, bool, float | None, str]) -> dict:
    """Foresail (``slo_target``: with its SLO governor), the oracle, and every baseline over its whole knob
    grid on one trace, in the simulator's ``queue`` model."""
    trace, cold, fill, slo_target, queue = job
    p = prepare(trace, cold_start_s=cold, slo_wait_s=SLO_WAIT_S, fill_gaps=fill, queue=queue, slots=SLOTS)
    out: dict = {"name": p.name + (" (gaps filled)" if fill else ""), "steps": len(p.arrivals), "grid": {}}
    for name, knob in (("foresail", slo_target), ("oracle", None)):
        r = run_policy(p, name, knob)
        out[name] = (r.slo_attainment, r.replica_hours, r.scale_events)
    for name in BASELINES:
        out["grid"][name] = [
            (r.slo_attainment, r.replica_hours) for r in (run_policy(p, name, k) for k in POLICIES[name].grid)
        ]
    return out


def score_trace(job: tuple[Trace, bool]) -> dict:
    """Forecast accuracy on the second half of one series."""
    trace, fill = job
    if fill:
        trace = trace.fill_gaps()
    try:
        scores = evaluate(trace, (600.0, 1800.0, 3600.0))
    except ValueError:
        return {"name": trace.name, "scores": []}
    return {"name": trace.name, "scores": [
        {"h": s.horizon_s, "foresail": s.wape["foresail"], "persistence": s.wape["persistence"],
         "seasonal": s.wape["seasonal-naive"], "hw": s.wape["holt-winters"], "cov90": s.coverage[0.9],
         "wcov90": s.window_coverage[0.9], "pinball90": s.pinball[0.9], "wsum": s.n} for s in scores]}


def summarise_group(rows: list[dict]) -> dict:
    """Fleet-wide tuning of each baseline and the group's figures."""
    out: dict = {"traces": len(rows), "policies": {}}
    oracle = np.array([r["oracle"][1] for r in rows])
    reach = np.array([max(max(a for a, _ in r["grid"][b]) for b in BASELINES) for r in rows])
    reach = np.maximum(reach, [r["foresail"][0] for r in rows])
    out["reachable_99"] = int((reach >= TARGET).sum())

    def figures(att: np.ndarray, hours: np.ndarray, setting: object = None) -> dict:
        return {
            "setting": setting,
            "min_slo": float(att.min()),
            "mean_slo": float(att.mean()),
            "at_99_where_reachable": int(((att >= TARGET) & (reach >= TARGET)).sum()),
            "geomean_cost_vs_oracle": geomean(list(hours / oracle)),
            "per_trace": [
                {"trace": r["name"], "slo": float(a), "cost_vs_oracle": float(h / o)}
                for r, a, h, o in zip(rows, att, hours, oracle, strict=True)
            ],
        }

    out["policies"]["foresail"] = figures(np.array([r["foresail"][0] for r in rows]),
                                          np.array([r["foresail"][1] for r in rows]))
    for b in BASELINES:
        att = [[a for a, _ in r["grid"][b]] for r in rows]
        i = fleet_setting(att, TARGET)
        out["policies"][b] = figures(np.array([row[i] for row in att]),
                                     np.array([r["grid"][b][i][1] for r in rows]), POLICIES[b].grid[i])
    out["policies"]["oracle"] = figures(np.array([r["oracle"][0] for r in rows]), oracle)
    # every series' raw figures (Foresail's SLO and hours, each baseline's over its knob grid), so a report
    # can compare at equal SLO series by series
    out["series"] = {r["name"]: {"foresail": r["foresail"][:2], "grid": r["grid"]} for r in rows}
    return out


def backtest_jobs(groups: dict[str, list[Trace]], colds: tuple[float, ...]) -> list[tuple[str, float, Trace, bool]]:
    """(group, cold start, series, gaps filled) for every run, each aggregate with collection gaps also with them
    filled, as its own group; the longest series first."""
    jobs: list[tuple[str, float, Trace, bool]] = []
    for cold in colds:
        for g, traces in groups.items():
            for tr in traces:
                jobs.append((g, cold, tr, False))
                if tr.gaps is not None and g == "servegen-aggregates":
                    jobs.append((g + " (gaps filled)", cold, tr, True))
    return sorted(jobs, key=lambda j: -len(j[2].arrivals) * j[2].step_s)


def run_all(pool: Executor, fn: Callable, work: list, desc: str) -> list:
    """``fn`` over ``work`` in ``pool``, in ``work``'s order; the bar moves as each job ends, in any order."""
    futures = [pool.submit(fn, w) for w in work]
    for done in tqdm(as_completed(futures), total=len(futures), desc=desc, unit="trace"):
        done.result()  # a failed job stops the run here, not after the rest
    return [f.result() for f in futures]


def show_saved(report: Path, plot: Path | None) -> int:
    """Print the tables of a saved ``--out`` file, and plot it where asked; 2, with an error, where the file is
    no such report."""
    try:
        saved = json.loads(report.read_text())
    except OSError as exc:
        print(f"error: --report {report}: {exc.strerror or exc}")
        return 2
    except ValueError:  # not JSON, or not text
        saved = None
    if not (isinstance(saved, dict) and isinstance(saved.get("cold_starts"), dict)):
        print(f"error: --report {report}: not a report of this benchmark (its --out file)")
        return 2
    print_report(saved)
    if plot:
        try:
            plot_customers(saved, plot)
        except ValueError as exc:  # a report without customer series
            print(f"error: --plot {plot}: {exc}")
            return 2
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=Path, default=TRACES)
    parser.add_argument("--out", type=output_file, help=f"the report as JSON (default {OUT})")
    parser.add_argument("--workers", type=workers, default=2)
    parser.add_argument("--customers", type=int, default=12,
                        help="largest customers per ServeGen service (0: every customer series)")
    parser.add_argument("--cold-starts", type=cold_starts, default=COLD_STARTS, metavar="S,S",
                        help="cold starts in seconds (default 120,300)")
    parser.add_argument("--skip-forecast", action="store_true")
    parser.add_argument("--slo-target", type=float, metavar="ATTAINMENT",
                        help="run Foresail with its SLO governor for this attainment (default: shipped defaults, off)")
    parser.add_argument("--queue", choices=QUEUES, default="fluid",
                        help="the simulator's queue (foresail backtest --queue)")
    parser.add_argument("--max-requests", type=int, metavar="N",
                        help=f"leave out the series of more requests (default: none; {REQUESTS_REPLAYED:,} with "
                             f"--queue requests, which takes about a second per million per run, at most "
                             f"{MAX_REQUESTS:,})")
    parser.add_argument("--report", type=Path, metavar="JSON", help="print the tables of a saved --out file and exit")
    parser.add_argument("--plot", type=plot_file, metavar="PNG",
                        help="plot the customer series' figures (with --report too)")
    args = parser.parse_args(argv)
    if args.report:
        return show_saved(args.report, args.plot)
    try:  # the default is checked too, but not where --report leaves it unwritten
        args.out = args.out or output_file(OUT)
    except argparse.ArgumentTypeError as exc:
        parser.error(f"argument --out: {exc}")
    t_all = time.perf_counter()
    try:
        groups = load_groups(args.traces, args.customers)
    except TraceError as exc:
        print(f"error: {exc}")
        return 2
    big = max(groups["servegen-aggregates"], key=lambda t: t.duration_s)  # timed below
    groups = within(groups, args.max_requests or (REQUESTS_REPLAYED if args.queue == "requests" else None))
    customers = groups.get("servegen-customers", [])  # a group --max-requests left empty is left out
    if not any(groups.values()) or (args.plot and not customers):
        print(f"error: no {'ServeGen customer series to --plot' if any(groups.values()) else 'series to run'}")
        return 2
    jobs = backtest_jobs(groups, args.cold_starts)
    report: dict = {"target": TARGET, "cold_starts": {}, "customers_per_service": args.customers, "queue": args.queue,
                    "slots": SLOTS, "slo_wait_s": SLO_WAIT_S, "foresail_slo_target": args.slo_target,
                    "switch_on_share": {t.name: switch_on_share(t) for t in customers}}
    with ProcessPoolExecutor(args.workers) as pool:
        work = [(tr, cold, fill, args.slo_target, args.queue) for _, cold, tr, fill in jobs]
        results = run_all(pool, run_trace, work, "backtests")
        by: dict = {}
        for (g, cold, _, _), res in zip(jobs, results, strict=True):
            by.setdefault(cold, {}).setdefault(g, []).append(res)
        for cold in args.cold_starts:
            report["cold_starts"][f"{cold:g}"] = {g: summarise_group(sorted(rows, key=lambda r: r["name"]))
                                                      for g, rows in sorted(by[cold].items())}
        if not args.skip_forecast:
            fjobs = [(tr, False) for g in ("servegen-aggregates", "servegen-customers", "azure", "mooncake")
                     for tr in groups.get(g, [])]
            fjobs += [(tr, True) for tr in groups.get("servegen-aggregates", []) if tr.gaps is not None]
            report["forecast"] = run_all(pool, score_trace, fjobs, "forecasts")
    t_backtest = time.perf_counter() - t_all
    # timing: a 14-day one-minute backtest with all policies at their defaults, one process
    p = prepare(big, cold_start_s=300.0)
    t0 = time.perf_counter()
    per_policy = {}
    for name in POLICIES:
        t1 = time.perf_counter()
        run_policy(p, name)
        per_policy[name] = time.perf_counter() - t1
    report["timing_14_day"] = {"trace": p.name, "steps": len(p.arrivals), "seconds": time.perf_counter() - t0,
                               "per_policy_s": per_policy}
    report["wall_s"] = time.perf_counter() - t_all
    args.out.write_text(json.dumps(report, indent=1, default=lambda o: None))
    print_report(report)
    if args.plot:
        plot_customers(report, args.plot)
    print(f"\nbenchmark wall time {report['wall_s']:.0f} s (backtests + forecasts {t_backtest:.0f} s) -> {args.out}")
    return 0


def spread(per_trace: list[dict]) -> str:
    """How Foresail's SLO attainment and cost spread over the series of a large group."""
    slo = np.array([t["slo"] for t in per_trace])
    cost = np.array([t["cost_vs_oracle"] for t in per_trace])
    at = ", ".join(f">= {100 * a:g} %: {int((slo >= a).sum())}" for a in (0.99, 0.98, 0.95, 0.90))
    return (f"foresail per series: SLO p10 {100 * np.quantile(slo, 0.1):.2f}%, median {100 * np.median(slo):.2f}% "
            f"({at}); cost median x{np.median(cost):.2f}, p90 x{np.quantile(cost, 0.9):.2f}")


def by_switch_on(per_trace: list[dict], shares: dict[str, float], policy: str = "foresail") -> str:
    """A policy's figures over series grouped by their switch-on share (``switch_on_share``)."""
    known = [t for t in per_trace if t["trace"] in shares]
    if not known:
        return f"{policy} by switch-on share: no shares for these series"
    share = np.array([shares[t["trace"]] for t in known])
    slo = np.array([t["slo"] for t in known])
    cost = np.array([t["cost_vs_oracle"] for t in known])
    bins = np.digitize(share, SWITCH_ON_BINS[1:-1])  # 0 .. len(SWITCH_ON_BINS) - 2
    parts = []
    for k, (lo, hi) in enumerate(pairwise(SWITCH_ON_BINS)):
        m = bins == k
        if m.any():
            at_99 = int((slo[m] >= TARGET).sum())
            parts.append(f"{100 * lo:g}-{100 * hi:g} %: {int(m.sum())} series, {at_99} at 99 %, "
                         f"cost x{geomean(list(cost[m])):.3f}")
    return f"{policy} by switch-on share: " + "; ".join(parts)


def hours_at_slo(grid: list[tuple[float, float]], slo: float) -> float | None:
    """Replica-hours a baseline needs for ``slo`` on one series: its cheapest knob setting that reaches it,
    interpolated linearly towards the next cheaper setting (which misses it); None when none reaches it."""
    points = sorted(grid, key=lambda p: p[1])
    for i, (a, h) in enumerate(points):
        if a >= slo:
            if i == 0:
                return h
            a0, h0 = points[i - 1]  # cheaper, and short of slo (else it would have been returned)
            return h0 + (slo - a0) / (a - a0) * (h - h0)
    return None


def equal_slo_ratios(series: dict[str, dict], baseline: str) -> dict[str, float]:
    """Per series, Foresail's replica-hours over the baseline's at Foresail's SLO attainment (where it reaches it)."""
    out = {}
    for name, s in series.items():
        slo, hours = s["foresail"]
        need = hours_at_slo(s["grid"][baseline], slo)
        if need is not None and need > 0:
            out[name] = hours / need
    return out


def equal_slo(series: dict[str, dict], baseline: str) -> str:
    """Foresail against a baseline tuned series by series to Foresail's own SLO attainment on each.

    A fleet runs one setting; this is the most the baseline can do on each series with hindsight."""
    r = np.array(list(equal_slo_ratios(series, baseline).values()))
    if not len(r):
        return f"{baseline}: reaches Foresail's SLO on none of {len(series)} series"
    return (f"{baseline}: reaches Foresail's SLO on {len(r)} of {len(series)} series; there Foresail costs less on "
            f"{int((r < 1).sum())}, cost foresail / {baseline} geo-mean x{geomean(list(r)):.3f}, "
            f"median x{np.median(r):.2f}")


def plot_customers(report: dict, path: Path) -> None:
    """Per cold start: every customer series' SLO attainment against cost for Foresail, HPA (fleet-wide
    setting) and static; and Foresail's cost at equal SLO relative to each scaling baseline, by switch-on
    share."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colds = [c for c, g in report["cold_starts"].items() if "servegen-customers" in g]
    if not colds:
        raise ValueError("the report has no ServeGen customer group to plot")
    shares = report.get("switch_on_share", {})
    fig, axes = plt.subplots(len(colds), 2, figsize=(12, 4.2 * len(colds)), squeeze=False)
    for (left, right), cold in zip(axes, colds, strict=True):
        g = report["cold_starts"][cold]["servegen-customers"]
        for name, colour in (("static", "0.6"), ("hpa", "tab:orange"), ("foresail", "tab:blue")):
            f = g["policies"][name]
            pts = f["per_trace"]
            label = name if f["setting"] is None else f"{name} (fleet setting {f['setting']:g})"
            left.scatter([t["cost_vs_oracle"] for t in pts], [100 * t["slo"] for t in pts], s=6, alpha=0.5,
                         color=colour, label=label)
        left.axhline(99, color="k", lw=0.6, ls="--")
        left.set_xscale("log")
        left.set_xlabel("replica-hours / oracle's")
        left.set_ylabel("SLO attainment (%)")
        left.set_title(f"cold start {cold} s: {g['traces']} customer series", loc="left", fontsize=9)
        left.legend(fontsize=7, loc="lower right")
        if "series" in g:
            for n in (b for b in BASELINES if b != "static"):  # its ratio (a fifth or less) would squash the scale
                r = equal_slo_ratios(g["series"], n)
                x = np.array([100 * shares.get(k, np.nan) for k in r])
                right.scatter(np.maximum(x, 0.01), list(r.values()), s=5, alpha=0.4, label=n)
            right.axhline(1, color="k", lw=0.6, ls="--")
            right.set_xscale("log")
            right.set_yscale("log")
            right.set_xlabel("switch-on share of demand (%, log; 0 drawn at 0.01)")
            right.set_ylabel("Foresail's cost / baseline's at Foresail's SLO")
            right.set_title("equal SLO, series by series (below 1: Foresail cheaper)", loc="left", fontsize=9)
            right.legend(fontsize=7, ncol=3)
        else:
            right.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def print_report(report: dict) -> None:
    """The summary tables."""
    names = ["foresail"] + BASELINES + ["oracle"]
    if report.get("foresail_slo_target"):
        target = 100 * report["foresail_slo_target"]
        print(f"Foresail with its SLO governor on, for {target:g} % (not the shipped default)")
    if report.get("queue") == "requests":
        slots, wait = report.get("slots", SLOTS), report.get("slo_wait_s", SLO_WAIT_S)  # older reports lack them
        print(f"Single requests over {slots} batching slots per replica (--queue requests): SLO attainment is the "
              f"share of requests that start within {wait:g} s")
    for cold, groups in report["cold_starts"].items():
        print(f"\n=== cold start {cold} s: SLO attainment min/mean, traces >= 99 % (of those where any policy "
              f"reaches it), geo-mean cost / oracle; baselines at their best fleet-wide setting")
        for g, s in groups.items():
            print_group(g, s, names, report.get("switch_on_share", {}))
    if "forecast" in report:
        print_forecast(report["forecast"])
    t = report["timing_14_day"]
    print(f"\n14-day one-minute backtest ({t['steps']} steps, {t['trace']}), all {len(t['per_policy_s'])} policies: "
          f"{t['seconds']:.1f} s (" + ", ".join(f"{k} {v:.2f}" for k, v in t["per_policy_s"].items()) + ")")


def print_group(g: str, s: dict, names: list[str], switch_on_share: dict) -> None:
    """One group's table at one cold start: each policy's SLO and cost; on 10 series or more, Foresail's
    spread and each policy by switch-on share; each baseline at equal SLO where the report has the series."""
    print(f"-- {g}: {s['traces']} traces, 99 % reachable on {s['reachable_99']}")
    for n in names:
        f = s["policies"][n]
        setting = "" if f["setting"] is None else f"  (setting {f['setting']:g})"
        print(f"   {n:<13} min {100 * f['min_slo']:6.2f}%  mean {100 * f['mean_slo']:6.2f}%  "
              f">=99%: {f['at_99_where_reachable']:>3}/{s['reachable_99']:<3} "
              f"cost x{f['geomean_cost_vs_oracle']:.3f}{setting}")
    if s["traces"] >= 10:
        print("   " + spread(s["policies"]["foresail"]["per_trace"]))
        print("   by switch-on share (demand in steps >= 2x the step before), SLO >= 99 % and geo-mean cost:")
        for n in names[:-1]:
            print("     " + by_switch_on(s["policies"][n]["per_trace"], switch_on_share, n))
    if "series" in s:
        print("   at equal SLO, series by series: each baseline at its cheapest setting with Foresail's SLO "
              "attainment on that series")
        for n in BASELINES:
            print("     " + equal_slo(s["series"], n))


def print_forecast(forecast: list[dict]) -> None:
    """Forecast WAPE against persistence and p90 coverage, medians over each group's series per horizon."""
    print("\n=== forecast WAPE (second half of each series) foresail / persistence, p90 coverage at the step "
          "and over the window (its highest p90 against the highest demand up to the horizon)")
    buckets: dict = {}
    for item in forecast:
        grp = "servegen-aggregates" if item["name"].startswith("servegen-") else (
            "azure" if item["name"].startswith("azure") else "mooncake" if item["name"].startswith("mooncake")
            else "servegen-customers")
        for s in item["scores"]:
            buckets.setdefault((grp, s["h"]), []).append(s)
    for (grp, h), ss in sorted(buckets.items()):
        paired = [s for s in ss if math.isfinite(s["foresail"]) and math.isfinite(s["persistence"])]
        fw, pw = [s["foresail"] for s in paired], [s["persistence"] for s in paired]
        cov = [s["cov90"] for s in ss]
        window = [s["wcov90"] for s in ss  # absent from older saved reports
                  if s.get("wcov90") is not None and math.isfinite(s["wcov90"])]
        print(f"   {grp:<20} +{h / 60:>3.0f} min  n={len(ss):>3}  WAPE foresail {100 * np.median(fw):5.1f}% vs "
              f"persistence {100 * np.median(pw):5.1f}% (median over series; ratio "
              f"{np.median(np.array(fw) / np.array(pw)):.2f})  p90 coverage {100 * np.median(cov):.1f}%"
              + (f", window {100 * np.median(window):.1f}%" if window else ""))


if __name__ == "__main__":
    raise SystemExit(main())
