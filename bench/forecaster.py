"""Forecaster benchmark: how fast the forecaster learns weeks of per-minute history, and keeps up with it.

    PYTHONPATH=. python -m bench.forecaster [--trace ../shared/traces/servegen/servegen-m-large-10min.csv]
        [--threads 2] [--horizon-min 60] [--repeats 3] [--json out.json]

The trace (14 days of ServeGen m-large by default) at 60-s steps, requests/s, collection gaps as gaps, on
at most ``--threads`` threads (BLAS and OpenMP):

- **fit**: a fresh forecaster learns the whole trace (its ridge refit around the shipped prior, for every
  horizon up to ``--horizon-min`` at once, and the scoring of its last day for its quantiles); the best of
  ``--repeats``, the peak of Python and NumPy allocations during one more (tracemalloc), and its pickled size;
- **per step**: fitted on all but the last day, it then observes each step of the last day and forecasts
  every horizon after it, as the operator does each interval (its refits every 360 steps included);
- **baseline**, in the same run: scikit-learn's gradient-boosted ``HistGradientBoostingRegressor`` with
  quantile loss on the same features and targets, one model per quantile (p50, p90) and horizon (10, 30
  and 60 min), the usual way to get quantiles from a boosted model, at scikit-learn's defaults (100
  iterations; early stopping on a tenth held out from 10,000 rows up); features built in both timings.
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from bench import TRACES
from bench.table import output_file, print_table
from foresail.autoscaler import features
from foresail.autoscaler.forecast import DemandForecaster
from foresail.backtest.traces import TraceError, load_trace

STEP_S = 60.0
DAY_STEPS = 1440
BASELINE_HORIZONS_MIN = (10, 30, 60)
QUANTILES = (0.5, 0.9)


def per_minute(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Step end times (s) and requests/s at 60-s steps, NaN in the trace's collection gaps."""
    tr = load_trace(path).resample(STEP_S)
    rates = tr.arrivals / STEP_S
    if tr.gaps is not None:
        rates = np.where(tr.gaps, np.nan, rates)
    return tr.start_s + (np.arange(len(rates)) + 1) * STEP_S, rates


def best_of(repeats: int, work: Callable[[], Any]) -> tuple[float, Any]:
    """The shortest wall time of ``repeats`` runs of ``work`` in seconds, and what the last returned."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - t0)
    return min(times), result


def peak_mib(work: Callable[[], Any]) -> tuple[float, Any]:
    """Peak MiB of Python and NumPy allocations while ``work`` runs, and what it returns."""
    tracemalloc.start()
    try:
        result = work()
        return tracemalloc.get_traced_memory()[1] / 2**20, result
    finally:
        tracemalloc.stop()


def fit_boosted(times: np.ndarray, rates: np.ndarray) -> list[HistGradientBoostingRegressor]:
    """The baseline: one quantile-loss boosted model per quantile and horizon, on the forecaster's features."""
    x = rates[: np.nonzero(np.nan_to_num(rates) > 0)[0][-1] + 1]
    X, level, eps = features.make_features(x, STEP_S, times[0] - STEP_S)
    Y = features.make_targets(x, level, eps, np.array(BASELINE_HORIZONS_MIN))
    models = []
    for j in range(len(BASELINE_HORIZONS_MIN)):
        rows = ~np.isnan(level) & ~np.isnan(Y[:, j])
        for q in QUANTILES:
            models.append(HistGradientBoostingRegressor(loss="quantile", quantile=q, random_state=0)
                          .fit(X[rows], Y[rows, j]))
    return models


def step_through(fc: DemandForecaster, times: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Observe each step and forecast after it; the seconds each took."""
    took = np.empty(len(times))
    for k in tqdm(range(len(times)), desc="per step", unit="step", leave=False):
        t0 = time.perf_counter()
        fc.observe(float(times[k]), float(rates[k]))
        fc.predict(float(times[k]))
        took[k] = time.perf_counter() - t0
    return took


def run(path: Path, threads: int, horizon_min: int, repeats: int) -> dict[str, Any]:
    """All the figures for one trace; TraceError where it is missing or unreadable, three days long or less,
    or without demand."""
    times, rates = per_minute(path)
    if len(times) <= 3 * DAY_STEPS:
        raise TraceError(f"{path}: {len(times)} steps of 60 s; the benchmark needs more than 3 days")
    if not np.nansum(rates) > 0:
        raise TraceError(f"{path}: no demand in any step; there is nothing to learn")

    def forecaster() -> DemandForecaster:
        return DemandForecaster(step_s=STEP_S, horizon_s=horizon_min * 60.0)

    with threadpool_limits(limits=threads):
        fit_s, _ = best_of(repeats, lambda: forecaster().fit(times, rates))
        fit_mib, fitted = peak_mib(lambda: forecaster().fit(times, rates))
        boosted_s, models = best_of(repeats, lambda: fit_boosted(times, rates))
        online = forecaster().fit(times[:-DAY_STEPS], rates[:-DAY_STEPS])
        fits_before = online.n_fits_
        took = step_through(online, times[-DAY_STEPS:], rates[-DAY_STEPS:])
    return {
        "trace": str(path), "steps": len(times), "days": len(times) / DAY_STEPS, "threads": threads,
        "horizons": fitted.horizon_steps_, "own_model": fitted.coef_ is not None,
        "fit_s": fit_s, "fit_peak_mib": fit_mib, "fitted_kib": len(pickle.dumps(fitted)) / 1024,
        "boosted_models": len(models), "boosted_fit_s": boosted_s,
        "boosted_kib": len(pickle.dumps(models)) / 1024,
        "step_ms_mean": 1e3 * float(took.mean()), "step_ms_p99": 1e3 * float(np.percentile(took, 99)),
        "step_ms_max": 1e3 * float(took.max()), "refits_in_last_day": online.n_fits_ - fits_before,
    }


def report(r: dict[str, Any]) -> None:
    """The figures as a table, with the ratios to the baseline."""
    print(f"{r['trace']}: {r['steps']} steps of 60 s ({r['days']:.1f} days), at most {r['threads']} threads")
    print_table([
        {"model": f"foresail (ridge around the prior, {r['horizons']} horizons x all quantiles)",
         "fit": f"{r['fit_s']:.2f} s", "peak": f"{r['fit_peak_mib']:.0f} MiB", "size": f"{r['fitted_kib']:.0f} KiB"},
        {"model": f"boosted quantile models ({r['boosted_models']}: p50, p90 x 10/30/60 min)",
         "fit": f"{r['boosted_fit_s']:.2f} s", "peak": "-", "size": f"{r['boosted_kib']:.0f} KiB"},
    ], {"model": "model", "fit": "fit, best of repeats", "peak": "peak allocations", "size": "pickled (with history)"})
    print(f"\nfit: x{r['boosted_fit_s'] / r['fit_s']:.1f} faster than the boosted baseline, "
          f"x{r['fitted_kib'] / r['boosted_kib']:.2f} its pickled size")
    print(f"per step over the last day (observe one step, forecast every horizon): mean {r['step_ms_mean']:.2f} ms, "
          f"p99 {r['step_ms_p99']:.2f} ms, max {r['step_ms_max']:.0f} ms ({r['refits_in_last_day']} refits)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.forecaster", description=__doc__.split("\n")[0])
    ap.add_argument("--trace", type=Path, default=TRACES / "servegen" / "servegen-m-large-10min.csv")
    ap.add_argument("--threads", type=int, default=2, help="BLAS and OpenMP threads (default 2)")
    ap.add_argument("--horizon-min", type=int, default=60, help="forecast horizons up to this many minutes")
    ap.add_argument("--repeats", type=int, default=3, help="fits timed, the best kept")
    ap.add_argument("--json", type=output_file, help="also write the figures here")
    args = ap.parse_args(argv)
    if args.threads < 1 or args.repeats < 1 or args.horizon_min < 1:
        ap.error("--threads, --repeats and --horizon-min must be at least 1")
    try:
        figures = run(args.trace, args.threads, args.horizon_min, args.repeats)
    except TraceError as exc:
        print(f"error: {exc}")
        return 2
    report(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
