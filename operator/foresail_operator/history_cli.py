"""`foresail history`: an LLMDeployment's demand, read back from Prometheus, as a trace to replay.

Before a platform team lets Foresail scale a model ahead of demand, it can replay the model's own traffic
against Foresail and the anchor autoscalers: `foresail history NS/NAME -o demand.csv`, then
`foresail backtest --trace demand.csv`. Demand is what the decision loop reads (the pods' completed
requests, or the activator's arrivals where those are more), written as the backtester's generic CSV
``time_s,arrivals[,input_tokens,output_tokens]`` (Unix seconds, counts per step).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import re
import time
from typing import Iterable, Iterator

from foresail.checks import check_url, check_writable
from foresail_operator.metrics import MAX_POINTS, RETRY, MetricsError, PrometheusSource, parse_headers, timed_out
from foresail_operator.runtimes import RUNTIMES

SPAN = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([smhd])$")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of `foresail history` (Prometheus access as the operator's environment sets it)."""
    env = os.environ.get
    parser.add_argument("llmdeployment", metavar="NAMESPACE/NAME", help="the LLMDeployment whose demand to read")
    parser.add_argument("--out", "-o", required=True, metavar="FILE.csv", help="where to write the trace")
    parser.add_argument("--prometheus", default=env("FORESAIL_PROMETHEUS_URL"), metavar="URL",
                        help="Prometheus base URL (FORESAIL_PROMETHEUS_URL)")
    parser.add_argument("--token-file", default=env("FORESAIL_PROMETHEUS_TOKEN_FILE"),
                        help="bearer token file (FORESAIL_PROMETHEUS_TOKEN_FILE; or a token in "
                             "FORESAIL_PROMETHEUS_TOKEN)")
    parser.add_argument("--ca-file", default=env("FORESAIL_PROMETHEUS_CA_FILE"),
                        help="PEM bundle of the CA that signs Prometheus's certificate (FORESAIL_PROMETHEUS_CA_FILE)")
    parser.add_argument("--header", action="append", default=[], metavar="NAME=VALUE",
                        help="a header sent with every query, e.g. X-Scope-OrgID=team-a (repeatable; default "
                             "FORESAIL_PROMETHEUS_HEADERS, Name=value,Name2=value2)")
    parser.add_argument("--runtime", choices=["auto", *RUNTIMES], default="auto",
                        help="whose metric names to read (default auto: the first with data)")
    parser.add_argument("--span", default="7d", help="how far back from now, e.g. 14d, 12h, 30m (default 7d)")
    parser.add_argument("--step", type=float, default=60.0, metavar="SECONDS",
                        help="whole seconds per row (default 60)")
    parser.add_argument("--window", default="2m",
                        help="rate() window: at least two scrape intervals (default 2m; widened to --step, so that "
                             "each row counts its whole step)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                        help="how long to wait for Prometheus to connect and to answer each query (default 60); a "
                             "query it does not answer in time fails the command, it is not sent again")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def span_seconds(text: str, flag: str = "--span") -> float:
    """`14d`, `12h`, `30m` or `45s` in seconds; ValueError naming ``flag`` otherwise."""
    match = SPAN.match(text.strip())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"{flag} must be a positive duration such as 7d, 12h or 30m, not {text!r}")
    return float(match.group(1)) * UNIT_S[match.group(2)]


def promql_duration(seconds: float) -> str:
    """``seconds`` as a PromQL duration: whole seconds (``1000000s``; ``:g`` writes ``1e+06s``, which neither
    Prometheus nor the source takes), else milliseconds."""
    return f"{seconds:.0f}s" if seconds.is_integer() else f"{seconds * 1000:.0f}ms"


def windows(start: float, end: float, step_s: float, max_points: int = MAX_POINTS) -> Iterator[tuple[float, float]]:
    """[start, end] cut into consecutive ranges of at most ``max_points`` steps that share no point."""
    while start <= end:
        last = min(end, start + (max_points - 1) * step_s)
        yield start, last
        start = last + step_s


def run(args: argparse.Namespace) -> int:
    """Read the history window by window, then write it; 1 with a message on any failure."""
    from tqdm import tqdm

    namespace, _, name = args.llmdeployment.partition("/")
    if not namespace or not name:
        print(f"error: name the LLMDeployment as NAMESPACE/NAME, not {args.llmdeployment!r}")
        return 1
    if not args.prometheus:
        print("error: no Prometheus: pass --prometheus URL or set FORESAIL_PROMETHEUS_URL")
        return 1
    if not (math.isfinite(args.step) and args.step >= 1 and args.step.is_integer()):
        print(f"error: --step must be a whole number of seconds, at least 1, not {args.step:g}")
        return 1
    if not (math.isfinite(args.timeout) and args.timeout > 0):
        print(f"error: --timeout must be a number of seconds above 0, not {args.timeout:g}")
        return 1
    try:
        check_url("--prometheus", args.prometheus)
        check_writable("--out", args.out)  # before the queries, not after hours of them
        span = span_seconds(args.span)
        window = max(span_seconds(args.window, "--window"), args.step)  # a narrower one leaves part of each step out
        headers = parse_headers(",".join(args.header) if args.header
                                else os.environ.get("FORESAIL_PROMETHEUS_HEADERS", ""))
    except ValueError as exc:
        print(f"error: {exc}")
        return 1
    source = PrometheusSource(args.prometheus, os.environ.get("FORESAIL_PROMETHEUS_TOKEN"), timeout_s=args.timeout,
                              window=promql_duration(window), token_file=args.token_file, ca_file=args.ca_file,
                              headers=headers, retry=RETRY.new(connect=0, read=0))  # a silent one: --timeout once
    key = (namespace, name)
    end = math.floor(time.time() / args.step) * args.step
    start = end - span
    try:
        runtime = _runtime(source, key, args.runtime, start, end, span / 1000)
        parts = list(windows(start, end, args.step))
        rows = _rows(source, key, runtime, args.step,
                     tqdm(parts, desc=f"history {namespace}/{name}", disable=args.no_progress or len(parts) < 2))
    except MetricsError as exc:
        print(f"error: {exc}" + (f" (--timeout {args.timeout:g} s; raise it for a slow Prometheus)"
                                 if timed_out(exc) else ""))
        return 1
    if not rows:
        print(f"error: Prometheus has no demand for {namespace}/{name} over the last {args.span} (check the namespace, "
              f"the name and --runtime, and that --window, {promql_duration(window)}, spans two scrape intervals)")
        return 1
    try:
        _write(args.out, rows)
    except OSError as exc:  # a full disk, a file the user cannot write
        print(f"error: cannot write --out {args.out}: {exc.strerror or exc}")
        return 1
    times = sorted(rows)
    total = sum(row[0] for row in rows.values())
    peak = max(row[0] for row in rows.values()) / args.step
    missing = round((times[-1] - times[0]) / args.step) + 1 - len(times)
    print(f"wrote {len(times)} steps of {args.step:g} s ({(times[-1] - times[0]) / 3600:.1f} h) of {namespace}/{name} "
          f"to {args.out}")
    print(f"  {total:,.0f} requests (the larger of {RUNTIMES[runtime].metrics['requests']} and the activator's "
          f"count), mean {total / (len(times) * args.step):.3g} req/s, peak {peak:.3g} req/s"
          + (f"; {missing} steps had no data (no row: zero demand in the replay, bridged with --fill-gaps)"
             if missing else ""))
    print(f"replay it: foresail backtest --trace {args.out} --cold-start SECONDS --capacity REQ_PER_S"
          + (" --unit requests (without it, a trace with tokens replays in tokens: --capacity TOKENS_PER_S)"
             if len(rows[times[0]]) > 1 else ""))
    return 0


def _rows(source: PrometheusSource, key: tuple[str, str], runtime: str, step_s: float,
          parts: Iterable[tuple[float, float]]) -> dict[float, list[float]]:
    """Per step (by time): requests, then prompt and generated tokens where Prometheus has any of the pods' token
    counts (none: no token columns, which the backtester would replay as zero tokens, its default unit)."""
    signals = [s for s in ("prompt_tokens", "generation_tokens") if RUNTIMES[runtime].metrics.get(s)]
    rows: dict[float, list[float]] = {}
    seen = False
    for lo, hi in parts:
        times, rates = source.demand_history(key, runtime, lo, hi, step_s)
        tokens = [source.rate_history(key, runtime, s, lo, hi, step_s) for s in signals]
        seen = seen or any(tokens)
        for t, rate in zip(times, rates, strict=True):
            rows[t] = [rate * step_s] + [by_time.get(t, 0.0) * step_s for by_time in tokens]
    return rows if seen else {t: row[:1] for t, row in rows.items()}


def _runtime(source: PrometheusSource, key: tuple[str, str], wanted: str, start: float, end: float,
             step_s: float) -> str:
    """The runtime whose request counter has data for ``key`` (``wanted`` unless auto; foresail if none)."""
    if wanted != "auto":
        return wanted
    for runtime in RUNTIMES:
        if source.rate_history(key, runtime, "requests", start, end, max(step_s, 1.0)):
            return runtime
    return "foresail"  # only the activator's count, whose name every runtime shares


def _write(path: str, rows: dict[float, list[float]]) -> None:
    """The generic CSV, with token columns where the runtime counts prompt and generated tokens."""
    width = len(next(iter(rows.values())))
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["time_s", "arrivals", "input_tokens", "output_tokens"][:1 + width])
        for t in sorted(rows):
            writer.writerow([f"{t:.0f}", *(f"{v:.3f}" for v in rows[t])])
