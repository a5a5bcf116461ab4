"""One outlying minute: what it does to the forecaster and to Foresail's replicas (README, Limitations).

    PYTHONPATH=. python -m bench.outlier [--days 4] [--spike 100]

A series of Poisson arrivals per minute at ``20 + 15 sin(2 pi t / 1 day)`` req/s (seed 0), alone and with
one minute at ``--spike`` times on its last day (10:00):

- Foresail and the oracle replayed on both (60-s steps, 120-s cold start, 5 req/s per replica): SLO
  attainment and replica-hours, and Foresail's most replicas from 10 to 60 minutes after the spike (past
  the reactive floor's drain of its backlog);
- the forecaster fitted on the series with one minute, some minutes before its end, multiplied by 100,
  10,000 or a million: its median at +1, +10 and +30 min against the clean series';
- how often real demand looks like such an outlier: the ServeGen customer series' lone windows (at
  least 10 or 100 times both neighbours and the mean of the day before), which a filter of lone spikes
  would take for glitches (``--traces``, default ../shared/traces; left out where it is missing).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from bench.table import print_table
from foresail.autoscaler.forecast import DemandForecaster
from foresail.backtest.experiment import prepare, run_policy
from foresail.backtest.traces import Trace, iter_servegen_clients

DAY = 1440  # minutes
SPIKE_AT = 600  # minutes into the last day
AGES = (30, 120, 1000)  # minutes before the end of the series
SIZES = (100.0, 1e4, 1e6)


def arrivals(days: int) -> np.ndarray:
    """Requests per minute of the daily sine (seed 0)."""
    t = np.arange(days * DAY)
    return np.random.default_rng(0).poisson((20 + 15 * np.sin(2 * np.pi * t / DAY)) * 60).astype(float)


def replay(a: np.ndarray, spike: float) -> list[dict]:
    """Foresail and the oracle on the series without and with the spike."""
    k = len(a) - DAY + SPIKE_AT
    rows = []
    for label, series in (("clean", a), (f"one minute x{spike:g}", np.where(np.arange(len(a)) == k, a * spike, a))):
        p = prepare(Trace(label, 60.0, series), capacity=5.0)
        ours, oracle = run_policy(p, "foresail"), run_policy(p, "oracle")
        rows.append({"series": label, "slo": f"{100 * ours.slo_attainment:.2f} %",
                     "hours": f"{ours.replica_hours:.1f}", "oracle": f"{oracle.replica_hours:.1f}",
                     "after": int(ours.provisioned[k + 10 : k + 61].max())})
    return rows


def medians(a: np.ndarray) -> list[dict]:
    """The forecaster's median at +1/+10/+30 min after one outlying minute of each age and size."""
    rates = a / 60.0
    times = (np.arange(len(rates)) + 1) * 60.0

    def median(x: np.ndarray) -> str:
        m = DemandForecaster(horizon_s=1800.0).fit(times, x).predict(times[-1]).median
        return " / ".join(f"{v:.1f}" for v in m[[0, 9, 29]])

    rows = [{"outlier": "none", "median": median(rates)}]
    for age in AGES:
        for size in SIZES:
            x = rates.copy()
            x[len(x) - age] *= size
            rows.append({"outlier": f"x{size:g}, {age} min before", "median": median(x)})
    return rows


def lone_windows(a: np.ndarray, step_s: float, times: float) -> int:
    """Steps of ``a`` at least ``times`` both neighbours and the mean of the day before them."""
    if len(a) < 3:
        return 0
    i = np.arange(1, len(a) - 1)
    day = max(1, round(86400 / step_s))
    total = np.concatenate([[0.0], np.cumsum(a)])
    start = np.maximum(i - day, 0)
    day_mean = (total[i] - total[start]) / np.maximum(i - start, 1)
    reference = np.maximum(np.maximum(a[:-2], a[2:]), day_mean)
    return int(np.sum(a[1:-1] > times * np.maximum(reference, 1e-12)))


def lone_rows(traces: Iterable[Trace]) -> list[dict]:
    """Lone windows at 10 and 100 times, summed over ``traces``, and the series that have any."""
    counts = [(lone_windows(t.arrivals, t.step_s, 10.0), lone_windows(t.arrivals, t.step_s, 100.0)) for t in traces]
    return [{"times": f"{k:g}x", "windows": sum(c[j] for c in counts),
             "series": f"{sum(c[j] > 0 for c in counts)} of {len(counts)}"} for j, k in enumerate((10, 100))]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.outlier", description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=4, help="days of the series (at least 3; default 4)")
    ap.add_argument("--spike", type=float, default=100.0, help="the outlying minute's multiple (default 100)")
    ap.add_argument("--traces", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "traces",
                    help="the traces folder, for the lone windows of the ServeGen customer series")
    args = ap.parse_args(argv)
    if args.days < 3 or args.spike <= 0:
        ap.error("--days must be at least 3 and --spike positive")
    a = arrivals(args.days)
    print_table(replay(a, args.spike), {"series": "series", "slo": "Foresail SLO", "hours": "replica-hours",
                                        "oracle": "oracle's", "after": "most replicas 10-60 min after"})
    print_table(medians(a), {"outlier": "one minute", "median": "median at +1 / +10 / +30 min, req/s"})
    clients = args.traces / "servegen" / "servegen-clients.tar.gz"
    if clients.is_file():
        print("\nServeGen customer series: lone windows (at least so many times both neighbours and the day's mean)")
        print_table(lone_rows(iter_servegen_clients(clients)), {"times": "at least", "windows": "windows",
                                                               "series": "series with any"})
    else:
        print(f"\n{clients} is missing: the lone windows of real series are left out")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
