"""How much of ServeGen's demand the past foretells, the bound behind the backtest's unmet targets.

    PYTHONPATH=. python -m bench.predictability [--traces ../shared/traces]

At ServeGen's native 10-min resolution, two measurements against persistence (the forecast "as now"):

- Service aggregates: the lag-1 autocorrelation of the 10-min changes (a random walk, for which
  persistence is the best forecast, has 0), and a linear regression of the change ``h`` windows ahead on
  the last 6 changes and the same change a day earlier, fitted on the first half and scored on the
  second (a week each on 14 days): the share of the change variance it explains (R^2) and its WAPE
  against persistence's.
- The 14-day aggregates bottom-up: each customer forecast by the simple rule (as now, plus the change a
  day or a week earlier, or the value a day or a week earlier) that erred least on its own first half,
  the forecasts summed, scored on the second half against persistence on the aggregate.
- Customer series with much of their demand in switch-ons (at least ``--min-share`` of it in windows at
  least twice the window before): the share of that switch-on demand that the same time of day a day
  (or a week) earlier foretold, i.e. where a window within ``k`` windows of it had at least ``frac`` of
  its level.
"""

from __future__ import annotations

import argparse
import math
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from sklearn.linear_model import LinearRegression
from tqdm import tqdm

from bench import TRACES
from bench.backtest import switch_on_share, switch_ons
from bench.table import print_table
from foresail.backtest.traces import Trace, TraceError, iter_servegen_clients, load_trace

DAY = 144  # 10-min windows
HORIZONS = (1, 3, 6)  # windows ahead: 10, 30, 60 min
RECENT_CHANGES = 6
RECURRENCE = ((2, 0.8), (6, 0.5))  # (windows either side, share of the switch-on's level)
WEEK = 7 * DAY
# Per-series forecasts of y[t + h] (t: an array of origins); "as now" first, so that it wins ties.
RULES: dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]] = {
    "as now": lambda y, t, h: y[t],
    "now + a day's change": lambda y, t, h: y[t] + y[t + h - DAY] - y[t - DAY],
    "now + a week's change": lambda y, t, h: y[t] + y[t + h - WEEK] - y[t - WEEK],
    "a day earlier": lambda y, t, h: y[t + h - DAY],
    "a week earlier": lambda y, t, h: y[t + h - WEEK],
}


def _valid(y: np.ndarray, gaps: np.ndarray | None) -> np.ndarray:
    return np.ones(len(y), bool) if gaps is None else ~np.asarray(gaps, bool)


def change_autocorrelation(y: np.ndarray, gaps: np.ndarray | None = None) -> float:
    """Lag-1 autocorrelation of the step-to-step changes (pairs touching a gap left out)."""
    ok = _valid(y, gaps)
    dy, ok_d = np.diff(y), ok[1:] & ok[:-1]
    pair = ok_d[:-1] & ok_d[1:]
    if pair.sum() < 3:
        raise ValueError("too few changes to correlate")
    return float(np.corrcoef(dy[:-1][pair], dy[1:][pair])[0, 1])


def change_model(y: np.ndarray, h: int, gaps: np.ndarray | None = None, day: int = DAY) -> tuple[float, float, float]:
    """(R^2 of the change ``h`` steps ahead, model WAPE, persistence WAPE) on the second half of ``y``.

    The model: a linear regression of ``y[t+h] - y[t]`` on the last 6 changes and ``y[t+h-day] - y[t-day]``,
    fitted on origins in the first half; origins that touch a gap are left out.
    """
    y = np.asarray(y, float)
    train_steps = len(y) // 2
    ok = _valid(y, gaps)
    t = np.arange(day + RECENT_CHANGES, len(y) - h)
    if len(t) == 0 or not (t >= train_steps).any() or not (t < train_steps).any():
        raise ValueError("the series is too short: a day of history and two halves to fit and score on")
    x = np.column_stack([y[t - k] - y[t - k - 1] for k in range(RECENT_CHANGES)] + [y[t + h - day] - y[t - day]])
    target = y[t + h] - y[t]
    usable = ok[t + h] & ok[t + h - day] & ok[t - day]
    for k in range(RECENT_CHANGES + 1):
        usable &= ok[t - k]
    train, test = usable & (t < train_steps), usable & (t >= train_steps)
    pred = LinearRegression().fit(x[train], target[train]).predict(x[test])
    actual, now = y[t + h][test], y[t][test]
    r2 = 1.0 - ((target[test] - pred) ** 2).sum() / ((target[test] - target[test].mean()) ** 2).sum()
    wape = np.abs(actual - (now + pred)).sum() / actual.sum()
    return float(r2), float(wape), float(np.abs(actual - now).sum() / actual.sum())


def bottom_up(series: np.ndarray, h: int) -> tuple[float, float, Counter[str]]:
    """(WAPE of the summed forecasts, persistence's WAPE on the sum, how many series chose each rule) on
    the second half, forecasting ``h`` steps ahead each row of ``series`` (aligned series, one per row)
    by the rule of RULES that erred least on its own first half; the halves split the origins after the
    first week (the weekly rules' history)."""
    origins = np.arange(WEEK, series.shape[1] - h)
    if len(origins) < 2:
        raise ValueError("the series are too short: a week of history, then two halves to fit and score on")
    train, test = origins[: len(origins) // 2], origins[len(origins) // 2:]
    total, picks = np.zeros(len(test)), Counter[str]()
    for y in series:
        best = min(RULES, key=lambda r: np.abs(np.maximum(RULES[r](y, train, h), 0) - y[train + h]).sum())
        picks[best] += 1
        total += np.maximum(RULES[best](y, test, h), 0)
    whole = series.sum(axis=0)
    actual = whole[test + h]
    return float(np.abs(total - actual).sum() / actual.sum()), float(np.abs(whole[test] - actual).sum() /
                                                                     actual.sum()), picks


def _around(d: np.ndarray, k: int) -> np.ndarray:
    """``around[i]``: the highest of ``d[i-k .. i+k]`` (zero beyond the ends)."""
    return sliding_window_view(np.r_[np.zeros(k), d, np.zeros(k)], 2 * k + 1).max(axis=1)


def switch_on_recurrence(d: np.ndarray, lag: int, k: int, frac: float, start: int = 0, stop: int | None = None,
                         around: np.ndarray | None = None) -> float:
    """Share of switch-on demand (steps at least twice the step before) that ``lag`` steps earlier foretold:
    a step within ``k`` of ``t - lag`` had at least ``frac`` of ``d[t]``. Only switch-ons in
    ``[start, stop)`` and not in the first ``lag`` steps count; NaN when there are none (nothing to judge)."""
    d = np.asarray(d, float)
    t = np.nonzero(switch_ons(d))[0]
    t = t[(t >= max(lag, start)) & (t < (len(d) if stop is None else stop))]
    if len(t) == 0:
        return math.nan
    around = _around(d, k) if around is None else around
    foretold = around[t - lag] >= frac * d[t]
    return float(d[t][foretold].sum() / d[t].sum())


def learned_lag_recurrence(d: np.ndarray, k: int, frac: float, max_lag: int = 7 * DAY) -> tuple[int | None, float]:
    """The series' own best lag and what it foretells: the lag (``k + 1`` to ``max_lag`` steps, so that the
    window ends before the switch-on) that foretold the most switch-on demand in the first half, and the
    share of the second half's switch-on demand it foretells (NaN where none is there to judge); (None, NaN)
    where the first half has no switch-on to learn a lag from."""
    d = np.asarray(d, float)
    half, around = len(d) // 2, _around(d, k)
    lags = range(k + 1, max_lag + 1)
    learned = np.array([switch_on_recurrence(d, lag, k, frac, stop=half, around=around) for lag in lags])
    if np.isnan(learned).all():
        return None, math.nan
    best = lags[int(np.nanargmax(learned))]
    return best, switch_on_recurrence(d, best, k, frac, start=half, around=around)


def aggregates(services: list[Trace], clients: list[Trace]) -> None:
    """Print the change statistics of the ServeGen service aggregates, and the bottom-up forecasts of the
    m-large and m-mid customer series in ``clients``."""
    rows = []
    for tr in services:
        row = {"series": tr.name, "ac": f"{change_autocorrelation(tr.arrivals, tr.gaps):+.3f}"}
        for h in HORIZONS:
            try:
                r2, wape, pers = change_model(tr.arrivals, h, tr.gaps)
                row[str(h)] = f"{100 * r2:.1f} % | {100 * wape:.1f} / {100 * pers:.1f} %"
            except ValueError:  # deepseek-r1 and mm-image hold one day
                row[str(h)] = f"{len(tr.arrivals) / DAY:.0f} day: too short"
        rows.append(row)
    print("ServeGen aggregates, 10-min requests: lag-1 autocorrelation of the changes; per horizon, the "
          "linear model's R^2 of the change | its WAPE / persistence's (fitted on the first half, scored on "
          "the second)")
    print_table(rows, {"series": "series", "ac": "autocorr"} | {str(h): f"+{10 * h} min" for h in HORIZONS})
    by_service: dict[str, list] = {}
    for tr in clients:
        if tr.group in ("servegen-m-large", "servegen-m-mid"):
            by_service.setdefault(tr.group, []).append(tr)
    rows = []
    for service, traces in by_service.items():
        start = min(tr.start_s for tr in traces)
        offsets = [int(round((tr.start_s - start) / tr.step_s)) for tr in traces]
        series = np.zeros((len(traces), max(o + len(tr.arrivals) for o, tr in zip(offsets, traces, strict=True))))
        for line, o, tr in zip(series, offsets, traces, strict=True):
            line[o:o + len(tr.arrivals)] = tr.arrivals
        row = {"series": service}
        for h in HORIZONS:
            wape, pers, picks = bottom_up(series, h)
            row[str(h)] = f"{100 * wape:.1f} / {100 * pers:.1f} % ({picks['as now']} of {len(traces)} as now)"
        rows.append(row)
    print("\nBottom-up: each customer forecast by the rule that erred least on its first half, summed; WAPE on "
          "the second half / persistence's on the aggregate (how many customers the rule 'as now' served best)")
    print_table(rows, {"series": "service"} | {str(h): f"+{10 * h} min" for h in HORIZONS})


def foretold(shares: list[float]) -> dict[str, str | int]:
    """Median, mean, p90 and count at 50 % or more of the shares foretold, over the series judged (NaN: none of
    its switch-ons could be judged, left out and counted)."""
    a = np.array(shares, float)
    judged = a[~np.isnan(a)]
    if not len(judged):
        return {"median": "-", "mean": "-", "p90": "-", "half": 0, "left": len(a)}
    return {"median": f"{100 * np.median(judged):.0f} %", "mean": f"{100 * judged.mean():.0f} %",
            "p90": f"{100 * np.percentile(judged, 90):.0f} %", "half": int((judged >= 0.5).sum()),
            "left": len(a) - len(judged)}


def customers(clients: list[Trace], min_share: float) -> None:
    """Print how much switch-on demand of the switch-on-heavy customer series a day or a week foretold, and
    each series' own best lag (learned on the first half, scored on the second)."""
    found: dict[tuple[str, int, float], list[float]] = {}
    lags: dict[int, list[int | None]] = {}  # window half-width -> each series' own best lag
    series = [tr for tr in clients if tr.demand(tr.default_unit).sum() > 0 and switch_on_share(tr) >= min_share]
    for tr in tqdm(series, desc="customer series", leave=False):
        d = tr.demand(tr.default_unit)
        half = len(d) // 2
        for k, frac in RECURRENCE:
            for lag, when in ((DAY, "day"), (7 * DAY, "week")):
                found.setdefault((f"a {when} earlier", k, frac), []).append(switch_on_recurrence(d, lag, k, frac))
                found.setdefault((f"a {when} earlier, 2nd half", k, frac), []).append(
                    switch_on_recurrence(d, lag, k, frac, start=half))
            best, share = learned_lag_recurrence(d, k, frac)
            found.setdefault(("own best lag, 2nd half", k, frac), []).append(share)
            lags.setdefault(k, []).append(best)
    print(f"\nServeGen customer series with at least {100 * min_share:.0f} % of their demand in switch-ons: "
          f"{len(series)}. Share of each one's switch-on demand foretold by the same time a day / a week "
          "earlier (over the series, or its second half only), or by the series' own best lag (10 min to a "
          "week, the one that foretold most of its first half). A series with no switch-on that a row can judge "
          "(none after the lag, as in a one-day series a day or a week earlier, or none in its second half) is "
          "left out of that row's figures:")
    rows = [{"when": when, "window": f"+-{10 * k} min", "level": f">= {frac}x", **foretold(v)}
            for (when, k, frac), v in found.items()]
    print_table(rows, {"when": "foretold by", "window": "within", "level": "level", "median": "median",
                       "mean": "mean", "p90": "p90", "half": "series >= 50 %", "left": "left out"})
    for k, picked in lags.items():
        a = np.array([lag for lag in picked if lag is not None])
        unlearned = len(picked) - len(a)
        print(f"own best lag within +-{10 * k} min: the shortest allowed ({10 * (k + 1)} min, recent demand rather "
              f"than a period) on {int((a == k + 1).sum())} of {len(a)} series, within two windows of a day on "
              f"{int((np.abs(a - DAY) <= 2).sum())}, of a week on {int((np.abs(a - 7 * DAY) <= 2).sum())}"
              + (f" ({unlearned} with no switch-on to learn from in the first half left out)" if unlearned else ""))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", type=Path, default=TRACES)
    ap.add_argument("--min-share", type=float, default=0.10, help="switch-on share of a customer series")
    args = ap.parse_args(argv)
    try:
        services = [load_trace(p) for p in sorted((args.traces / "servegen").glob("servegen-*-10min.csv"))]
        clients = list(iter_servegen_clients(args.traces / "servegen" / "servegen-clients.tar.gz"))
    except TraceError as exc:
        print(f"error: {exc}")
        return 2
    aggregates(services, clients)
    customers(clients, args.min_share)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
