"""One outlying minute: what it does to the forecaster and to Foresail's replicas (README, Limitations).

    PYTHONPATH=. python -m bench.outlier [--days 4] [--spikes 20,100,1000]

A series of Poisson arrivals per minute at ``20 + 15 sin(2 pi t / 1 day)`` req/s (seed 0), alone and with
one minute at each of ``--spikes`` times on its last day (10:00):

- Foresail and the oracle replayed on each (60-s steps, 120-s cold start, 5 req/s per replica): SLO
  attainment and replica-hours, and Foresail's most replicas from 10 to 60 minutes after the spike (past
  the reactive floor's drain of its backlog);
- the same with one minute at ``--recurring`` times (default 20) every 30, 60 and 180 minutes over the last
  two days, and Foresail's most replicas 10 to 20 minutes after the first and the second of them;
- the operator's view of a counter glitch (its defaults: 15-s decisions on ``rate()`` over the last
  2 minutes, 60-s forecast steps; closed loop without cold start or queue): a counter that jumps by
  ``--spikes`` times a minute of demand at 10:00:20 on the fourth day, after a backfill to 10:00, and
  Foresail's most replicas 10 to 60 minutes after, its replica-hours over the 4 hours from the jump (the
  decisions that read it included) and its median forecast 30 min after (in both, the policy lets go of a
  run of at most two forecast steps, or as many as the window spans, more than ``LONE`` = e^5 = 148 times
  the demand before and after it, or more than ``NEW_HIGH`` = 10 times that and the week's highest before
  it, once the interval after it shows it); again with the operator restarted at 10:01:15 and at 10:05:15,
  its history backfilled from the rates recorded (the backfill is judged alike, its last steps by the
  decisions after the restart);
- the forecaster fitted on the series with one minute, some minutes before its end, multiplied by 100 to
  a million: its median at +1, +10 and +30 min against the clean series' (the forecaster alone, as
  ``foresail forecast`` runs it, damps a minute more than ``LONE`` times both neighbours once the next is
  known);
- how often real demand looks like such an outlier (``--traces``, default ../shared/traces; left out
  where it is missing): the ServeGen customer series' lone windows at their native 10 minutes (at least
  10, 100 or 148 times both neighbours and the mean of the day before), and the steps the forecaster
  damps in every public series at its 60-s steps.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from bench import TRACES
from bench.table import print_table
from bench.train_prior import training_series
from foresail.autoscaler.features import LONE, damp_lone_steps
from foresail.autoscaler.forecast import DemandForecaster
from foresail.autoscaler.policy import ForesailPolicy, Observation, PolicyConfig
from foresail.backtest.experiment import prepare, run_policy
from foresail.backtest.traces import Trace, TraceError, iter_servegen_clients
from foresail_operator.config import OperatorConfig
from foresail_operator.metrics import duration_seconds

DAY = 1440  # minutes
SPIKE_AT = 600  # minutes into the last day
AGES = (30, 120, 1000)  # minutes before the end of the series
SIZES = (100.0, 1e3, 1e4, 1e6)
TIMES = (10.0, 100.0, LONE)  # the multiples of the lone windows counted
EVERY = (30, 60, 180)  # minutes between the bursts that recur
RATE_WINDOW_S = duration_seconds(OperatorConfig.rate_window)  # the operator's default rate() window
RESTARTS = (1, 5)  # the operator's restarts in the operator's view, minutes after 10:00 (plus one decision)


def arrivals(days: int) -> np.ndarray:
    """Requests per minute of the daily sine (seed 0)."""
    t = np.arange(days * DAY)
    return np.random.default_rng(0).poisson((20 + 15 * np.sin(2 * np.pi * t / DAY)) * 60).astype(float)


def replay(a: np.ndarray, spikes: Iterable[float]) -> list[dict]:
    """Foresail and the oracle on the series without a spike and with each of ``spikes``."""
    k = len(a) - DAY + SPIKE_AT
    rows = []
    series_ = [("clean", a)] + [(f"one minute x{s:g}", np.where(np.arange(len(a)) == k, a * s, a)) for s in spikes]
    for label, series in series_:
        row, provisioned = _replayed(label, series)
        rows.append({**row, "after": int(provisioned[k + 10 : k + 61].max())})
    return rows


def recurring(a: np.ndarray, times: float) -> list[dict]:
    """Foresail and the oracle on the series with one minute at ``times`` every ``EVERY`` minutes over its last two
    days, and Foresail's most replicas 10 to 20 minutes after the first and the second of them."""
    rows, t = [], np.arange(len(a))
    for every in EVERY:
        burst = np.flatnonzero((t >= len(a) - 2 * DAY) & (t % every == 7))
        row, provisioned = _replayed(f"x{times:g} every {every} min", np.where(np.isin(t, burst), a * times, a))
        first, second = (int(provisioned[k + 10 : k + 21].max()) for k in burst[:2])
        rows.append({**row, "first": first, "second": second})
    return rows


def _replayed(label: str, series: np.ndarray) -> tuple[dict, np.ndarray]:
    """Foresail's and the oracle's SLO attainment and replica-hours on ``series``, and Foresail's replicas."""
    p = prepare(Trace(label, 60.0, series), capacity=5.0)
    ours, oracle = run_policy(p, "foresail"), run_policy(p, "oracle")
    return ({"series": label, "slo": f"{100 * ours.slo_attainment:.2f} %", "hours": f"{ours.replica_hours:.1f}",
             "oracle": f"{oracle.replica_hours:.1f}"}, ours.provisioned)


def operator_view(spikes: Iterable[float], restart_min: int | None = None,
                  window_s: float = RATE_WINDOW_S) -> list[dict]:
    """Foresail at the operator's defaults after a counter jump of each of ``spikes`` times a minute of demand, read
    through ``rate()`` over ``window_s`` (the operator's default, 2 min) every 15 s; with ``restart_min``, the
    operator restarts before the decision that many minutes and 15 s after 10:00 and backfills its history from the
    rates Prometheus recorded (the backfill's window is the decisions' one, at one point a minute). Replica-hours
    are counted from the jump, the decisions that read it included."""
    rows, samples = [], round(window_s / 15.0)
    config = PolicyConfig(capacity=5.0, cold_start_s=120.0, interval_s=15.0, max_replicas=5000, rate_window_s=window_s)
    for spike in [0.0, *spikes]:
        rng = np.random.default_rng(0)
        backfill = np.arange(1, 3 * DAY + SPIKE_AT + 1) * 60.0  # to 10:00 on the fourth day
        recorded = (list(backfill), list(rng.poisson(_rate(backfill) * 60) / 60.0))  # what Prometheus holds
        policy = ForesailPolicy(config)
        policy.warm_start(*recorded)
        jump_s = 3 * DAY * 60.0 + SPIKE_AT * 60.0 + 20.0
        times = jump_s - 20.0 + np.arange(1, 5 * 240 + 1) * 15.0  # 5 hours of decisions from 10:00
        counts = rng.poisson(_rate(times) * 15.0).astype(float)
        replicas, medians_ = np.zeros(len(times), int), np.zeros(len(times))
        current = 4
        for k, now in enumerate(times):
            if restart_min is not None and k == 4 * restart_min:
                policy = ForesailPolicy(config)
                policy.warm_start(*recorded)
            jumped = spike * 20.0 * 60.0 if now - window_s < jump_s <= now else 0.0
            rate = (counts[max(0, k - samples + 1) : k + 1].sum() + jumped) / window_s  # rate() over the window
            if k % 4 == 3:  # a whole minute
                recorded[0].append(float(now))
                recorded[1].append(rate)
            d = policy.decide(Observation(float(now), rate, 0.0, current, current))
            replicas[k], medians_[k], current = d.replicas, d.forecast_median or 0.0, d.replicas
        rows.append({"spike": "none" if spike == 0 else f"x{spike:g}", "after": int(replicas[40:241].max()),
                     "hours": f"{replicas[1:961].sum() * 15 / 3600:.0f}", "median": f"{medians_[121]:.1f}"})
    return rows


def _rate(t_s: np.ndarray) -> np.ndarray:
    """The daily sine of ``arrivals`` in req/s at times in seconds."""
    return 20 + 15 * np.sin(2 * np.pi * t_s / (DAY * 60.0))


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
    """Lone windows at each of ``TIMES``, summed over ``traces``, and the series that have any."""
    counts = [[lone_windows(t.arrivals, t.step_s, k) for k in TIMES] for t in traces]
    return [{"times": f"{k:.0f}x", "windows": sum(c[j] for c in counts),
             "series": f"{sum(c[j] > 0 for c in counts)} of {len(counts)}"} for j, k in enumerate(TIMES)]


def damped_steps(traces: Iterable[Trace]) -> tuple[int, int, int]:
    """Steps the forecaster damps as lone outliers in ``traces`` at 60-s steps, of how many, in how many series."""
    damped = total = n = 0
    for trace in traces:
        tr = trace.resample(60.0)
        x = tr.arrivals / 60.0 if tr.gaps is None else np.where(tr.gaps, np.nan, tr.arrivals / 60.0)
        damped += int(np.count_nonzero((damp_lone_steps(x) != x) & ~np.isnan(x)))
        total, n = total + len(x), n + 1
    return damped, total, n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.outlier", description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=4, help="days of the series (at least 3; default 4)")
    ap.add_argument("--spikes", type=lambda v: [float(s) for s in v.split(",")], default=[20.0, 100.0, 1000.0],
                    help="the outlying minute's multiples, comma-separated (default 20,100,1000)")
    ap.add_argument("--recurring", type=float, default=20.0,
                    help="the multiple of the minute that recurs every 30, 60 and 180 minutes (default 20)")
    ap.add_argument("--traces", type=Path, default=TRACES,
                    help="the traces folder, for the lone windows of the ServeGen customer series")
    args = ap.parse_args(argv)
    if args.days < 3 or min(args.spikes) <= 0 or args.recurring <= 0:
        ap.error("--days must be at least 3, and --spikes and --recurring positive")
    a = arrivals(args.days)
    k = len(a) - DAY + SPIKE_AT
    print(f"The spike's minute: {a[k] / 60:.1f} req/s; the highest minute before it: {a[:k].max() / 60:.1f} req/s")
    print_table(replay(a, args.spikes), {"series": "series", "slo": "Foresail SLO", "hours": "replica-hours",
                                        "oracle": "oracle's", "after": "most replicas 10-60 min after"})
    print(f"\nOne minute at {args.recurring:g} times, every so many minutes over the last two days")
    print_table(recurring(a, args.recurring), {"series": "series", "slo": "Foresail SLO", "hours": "replica-hours",
                                               "oracle": "oracle's", "first": "most replicas 10-20 min after the "
                                               "first", "second": "... the second"})
    print(f"\nThe operator's view: a counter jump read through rate() over {RATE_WINDOW_S:g} s, every 15 s")
    columns = {"spike": "jump", "after": "most replicas 10-60 min after", "hours": "replica-hours, 4 h from it",
               "median": "median 30 min after"}
    print_table(operator_view(args.spikes), columns)
    for minute in RESTARTS:
        print(f"\nThe same, the operator restarted at 10:{minute:02d}:15 (its history backfilled from the rates "
              "recorded)")
        print_table(operator_view(args.spikes, minute), columns)
    print_table(medians(a), {"outlier": "one minute", "median": "median at +1 / +10 / +30 min, req/s"})
    return real_series(args.traces)


def real_series(traces_dir: Path) -> int:
    """Print the lone windows of the ServeGen customer series and the steps the forecaster damps in every
    public series (left out where the ServeGen archive is missing); 2 where a trace cannot be read."""
    clients = traces_dir / "servegen" / "servegen-clients.tar.gz"
    if not clients.is_file():
        print(f"\n{clients} is missing: the lone windows of real series are left out")
        return 0
    try:
        rows = lone_rows(iter_servegen_clients(clients))
        damped, total, n = damped_steps(training_series(traces_dir))
    except TraceError as exc:
        print(f"error: {exc}")
        return 2
    print("\nServeGen customer series at 10-min windows: lone windows (at least so many times both "
          "neighbours and the day's mean)")
    print_table(rows, {"times": "at least", "windows": "windows", "series": "series with any"})
    print(f"\nEvery public series at 60-s steps: the forecaster damps {damped:,} of {total:,} steps ({n} series)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
