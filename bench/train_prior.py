"""Train the forecaster's shipped prior on the public traces in ../shared/traces.

    PYTHONPATH=. python -m bench.train_prior [--traces ../shared/traces] [--out foresail/autoscaler/data/prior.json]

Every series (each ServeGen customer and service aggregate, Azure code and conversation, Mooncake) is
resampled to 60-s steps and only its first half in time is used, so that forecast accuracy measured on
the second half (``bench.backtest``) is out of sample. Collection gaps are presented as missing data.
The raw traces are not copied: the artifact holds only regression coefficients and residual quantiles.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench import TRACES
from bench.table import output_file
from foresail.autoscaler.prior import PRIOR_PATH, train_prior
from foresail.backtest.traces import Trace, TraceError, iter_servegen_clients, load_trace

STEP_S = 60.0


def training_series(traces_dir: Path) -> list[Trace]:
    """Every public series, at native resolution."""
    out: list[Trace] = list(iter_servegen_clients(traces_dir / "servegen" / "servegen-clients.tar.gz"))
    out += [load_trace(p) for p in sorted((traces_dir / "servegen").glob("servegen-*-10min.csv"))]
    out += [load_trace(p) for p in sorted((traces_dir / "azure-llm-2023").glob("*.csv"))]
    out += [load_trace(p) for p in sorted((traces_dir / "mooncake-fast25").glob("*.jsonl*"))]
    return out


def first_half(trace: Trace) -> tuple[str, np.ndarray, float]:
    """Rates per 60-s step over the first half of the trace, gaps as NaN."""
    tr = trace.resample(STEP_S)
    x = tr.arrivals / STEP_S
    if tr.gaps is not None:
        x = np.where(tr.gaps, np.nan, x)
    half = len(x) // 2
    return tr.name, x[:half], tr.start_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=Path, default=TRACES)
    parser.add_argument("--out", type=output_file, default=str(PRIOR_PATH))  # a str: argparse checks it too
    parser.add_argument("--rows-per-series", type=int, default=1000)
    parser.add_argument("--alpha", type=float, default=30.0)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        series = [first_half(tr) for tr in training_series(args.traces)]
    except TraceError as exc:
        print(f"error: {exc}")
        return 2
    prior = train_prior(series, step_s=STEP_S, horizon_steps=60, rows_per_series=args.rows_per_series, alpha=args.alpha)
    prior.meta.update({"trained_on": "first half (in time) of every series in ../shared/traces, 60-s steps"})
    args.out.write_text(json.dumps(prior.to_json(), separators=(",", ":")))
    print(f"prior: {prior.meta['rows']} rows from {prior.meta['series']} series, "
          f"{args.out.stat().st_size / 1024:.0f} KiB -> {args.out} in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
