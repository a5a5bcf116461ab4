"""Decision-loop benchmark: time per LLMDeployment per interval, Prometheus queries included.

A real Prometheus scrapes an exporter that serves vLLM-named series for N deployments. For N = 10,
100 and 1,000 it times what the operator does every interval: one collection (a fixed number of
grouped PromQL queries for all deployments) plus one decision per deployment (lookup, forecast,
policy; advisory mode, so no API writes). The baseline, in the same run, is the naive design that
queries Prometheus per deployment (the same signals, filtered by labels).

    python -m bench.decision_loop [--sizes 10,100,1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench.table import output_file, print_table
from foresail.demo.prometheus import PrometheusServer
from foresail_operator.autoscaler import Loop, step
from foresail_operator.collector import Collector
from foresail_operator.metrics import PrometheusSource
from foresail_operator.runtimes import RUNTIMES
from foresail_operator.spec import parse_spec

SPEC = {"model": {"source": "builtin:tiny"}, "autoscaling": {"mode": "advisory", "slo": {"capacityPerReplica": 2}}}


class Exporter:
    """Serves /metrics with vLLM series for `size` deployments (counters grow with time)."""

    def __init__(self) -> None:
        self.size = 0
        self.t0 = time.time()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.address = f"127.0.0.1:{self.server.server_address[1]}"

    def render(self) -> str:
        t = time.time() - self.t0
        lines = []
        for i in range(self.size):
            labels = f'namespace="bench",llmdeployment="m{i:04d}",model_name="m"'
            rate = 1.0 + (i % 7)
            lines += [f"vllm:request_success_total{{{labels}}} {rate * t:.3f}",
                      f"vllm:prompt_tokens_total{{{labels}}} {rate * 200 * t:.3f}",
                      f"vllm:generation_tokens_total{{{labels}}} {rate * 50 * t:.3f}",
                      f"vllm:num_requests_running{{{labels}}} {i % 5}",
                      f"vllm:num_requests_waiting{{{labels}}} {i % 3}",
                      f"vllm:kv_cache_usage_perc{{{labels}}} 0.{i % 9}"]
            for le, frac in (("0.1", 0.5), ("0.5", 0.9), ("1.0", 0.99), ("+Inf", 1.0)):
                lines.append(f'vllm:time_to_first_token_seconds_bucket{{{labels},le="{le}"}} {rate * frac * t:.3f}')
        return "\n".join(lines) + "\n"


def _naive(source: PrometheusSource, size: int) -> float:
    """Seconds to query every signal of every deployment one deployment at a time."""
    names = RUNTIMES["foresail"].metrics
    w = source.window
    started = time.perf_counter()
    for i in range(size):
        sel = f'namespace="bench",llmdeployment="m{i:04d}"'
        for signal in ("requests", "prompt_tokens", "generation_tokens"):
            source.client.custom_query(f"sum(rate({names[signal]}{{{sel}}}[{w}]))")
        for signal in ("running", "waiting", "kv_cache"):
            source.client.custom_query(f"sum({names[signal]}{{{sel}}})")
        source.client.custom_query(
            f"histogram_quantile(0.9, sum by (le) (rate({names['ttft']}_bucket{{{sel}}}[{w}])))")
    return time.perf_counter() - started


async def _decide_all(loops: list[Loop], collector: Collector) -> float:
    spec = parse_spec(SPEC)
    log = logging.getLogger("bench")
    body = {"metadata": {"name": "x", "namespace": "bench"}, "status": {}}
    deployment = {"spec": {"replicas": 2}, "status": {"readyReplicas": 2}}
    started = time.perf_counter()
    for loop in loops:
        await step(loop, None, collector, body, spec, deployment, [], log)  # type: ignore[arg-type]
    return time.perf_counter() - started


def measure(size: int, exporter: Exporter, prometheus: PrometheusServer, rounds: int = 5) -> dict:
    exporter.size = size
    source = PrometheusSource(prometheus.url, window="10s")
    collector = Collector(source, period_s=1.0)
    deadline = time.monotonic() + 60
    while True:  # wait until Prometheus has two scrapes of every series
        asyncio.run(collector.collect_once())
        if len(collector.snapshot) >= size and all(s.requests for s in collector.snapshot.values()):
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"Prometheus did not scrape {size} deployments in time")
        time.sleep(1.0)
    loops = [Loop(("bench", f"m{i:04d}"), forecast_step_s=60.0) for i in range(size)]
    collect, decide = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        asyncio.run(collector.collect_once())
        collect.append(time.perf_counter() - t0)
        decide.append(asyncio.run(_decide_all(loops, collector)))
    naive_size = min(size, 100)  # per-deployment querying at 1,000 is extrapolated from 100
    naive = _naive(source, naive_size) / naive_size * size
    per_llmd_ms = 1000 * (statistics.median(collect) + statistics.median(decide)) / size
    return {"llmdeployments": size, "collect_ms": round(1000 * statistics.median(collect), 1),
            "decide_ms_per_llmd": round(1000 * statistics.median(decide) / size, 3),
            "per_llmd_per_interval_ms": round(per_llmd_ms, 3),
            "naive_per_llmd_ms": round(1000 * naive / size, 3),
            "naive_over_grouped": round(1000 * naive / size / per_llmd_ms, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--json", type=output_file)
    args = parser.parse_args(argv)
    exporter = Exporter()
    rows = []
    with tempfile.TemporaryDirectory() as tmp, PrometheusServer(Path(tmp), scrape_interval_s=1.0) as prom:
        prom.write_targets([(exporter.address, {})])
        for size in [int(s) for s in args.sizes.split(",")]:
            rows.append(measure(size, exporter, prom))
            print(json.dumps(rows[-1]), flush=True)
    print_table(rows, {"llmdeployments": "LLMDeployments", "collect_ms": "collect ms",
                       "decide_ms_per_llmd": "decide ms/LLMD", "per_llmd_per_interval_ms": "ms/LLMD/interval",
                       "naive_per_llmd_ms": "naive ms/LLMD", "naive_over_grouped": "naive/grouped"})
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
