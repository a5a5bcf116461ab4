"""Load balancing: latency through `foresail activator` against where a Service would send requests.

Open-loop Poisson arrivals of chat completions to emulated GPU pods: each runs up to ``--slots``
requests at once (continuous batching) at ``--token-ms`` per output token and queues the rest in
order. The pods are emulated (no GPU here) so that what is measured is where requests go, not the
shared CPU. Two scenarios, each in one run:

- Output lengths drawn from the Azure 2023 conversation trace, spread four ways: a random pod per
  request (a Service under kube-proxy's iptables mode; it picks per connection, which balances worse),
  round robin (IPVS mode's default), the real activator process picking the ready pod with the
  fewest of its requests in flight from the deployment's EndpointSlices (in the Kubernetes API test
  server), and two activator processes each picked at random (the chart's two replicas behind their
  Service), each counting only its own requests in flight.
- Prefix caches: the Mooncake conversation trace's requests in order (their 512-token blocks as the
  prompt, their output lengths), the pods keeping an LRU cache of ``--cache-blocks`` blocks and paying
  ``--block-ms`` for each block of a prompt not already cached from its start, as vLLM's automatic
  prefix caching does: random pods, the activator's least in flight, and its prefix routing.

    PYTHONPATH=. python -m bench.balance [--pods 4] [--slots 8] [--token-ms 1] [--load 0.6,0.85]
        [--requests 3000] [--block-ms 10] [--cache-blocks 3000] [--prefix-load 0.8] [--prefix-requests 2000]
        [--prefix-load-factor 1.25] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import itertools
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import aiohttp
import numpy as np
import pandas as pd
import requests

from bench import TRACES
from bench.activator import _wait_http, ready_llmdeployment
from bench.table import output_file, print_table
from foresail.backtest.traces import TraceError
from foresail.demo.prometheus import free_port
from foresail.kubetest.testing import start_apiserver

TRACE = TRACES / "azure-llm-2023" / "AzureLLMInferenceTrace_conv.csv"
MOONCAKE = TRACES / "mooncake-fast25" / "conversation_trace.jsonl.gz"
SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
PODS = """
import asyncio, collections, sys
from aiohttp import web
slots, cache_blocks, ports = int(sys.argv[1]), int(sys.argv[4]), [int(p) for p in sys.argv[5:]]
token_s, block_s = float(sys.argv[2]) / 1e3, float(sys.argv[3]) / 1e3
async def serve(port):
    busy, cache, stats = asyncio.Semaphore(slots), collections.OrderedDict(), {"blocks": 0, "hits": 0}
    async def answer(request):
        body = await request.json()
        tokens = int(body["max_tokens"])
        blocks = body["messages"][-1]["content"].split() if block_s > 0 else []
        async with busy:
            hits = 0
            while hits < len(blocks) and blocks[hits] in cache:
                hits += 1
            for block in blocks:
                cache[block] = True
                cache.move_to_end(block)
            while len(cache) > cache_blocks:
                cache.popitem(last=False)
            stats["blocks"] += len(blocks)
            stats["hits"] += hits
            await asyncio.sleep((len(blocks) - hits) * block_s + tokens * token_s)
        return web.json_response({"object": "chat.completion", "usage": {"completion_tokens": tokens},
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}}]})
    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    app.router.add_get("/ready", lambda _: web.Response(text="ok"))
    app.router.add_get("/stats", lambda _: web.json_response(stats))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
async def main():
    await asyncio.gather(*(serve(p) for p in ports))
    await asyncio.Event().wait()
asyncio.run(main())
"""


async def _replay(gaps_s: np.ndarray, bodies: list[dict[str, Any]], pick: Callable[[], str]) -> np.ndarray:
    """Send ``bodies[i]`` after ``gaps_s[:i+1].sum()`` seconds (open loop) to ``pick()``; latencies in s."""
    latencies = np.full(len(bodies), np.nan)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def one(i: int) -> None:
            t0 = time.perf_counter()
            async with session.post(pick() + "/v1/chat/completions", json=bodies[i]) as rsp:
                await rsp.read()
                if rsp.status != 200:
                    raise RuntimeError(f"HTTP {rsp.status}: {await rsp.text()}")
            latencies[i] = time.perf_counter() - t0

        tasks = []
        start = time.perf_counter()
        for i, at in enumerate(np.cumsum(gaps_s)):
            await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
    return latencies


def _chat(content: str, tokens: int) -> dict[str, Any]:
    return {"model": "chat", "messages": [{"role": "user", "content": content}], "max_tokens": int(tokens)}


@contextlib.contextmanager
def activators(urls: list[str], routings: tuple[str, ...], name: str = "chat") -> Iterator[dict[str, list[str]]]:
    """The pods at ``urls`` (``http://127.0.0.1:PORT``) listed in EndpointSlices of the API test server for an
    LLMDeployment ``name``, and an activator process for each of ``routings`` (a routing given twice: two
    replicas; ``prefix:F``: prefix routing with a load factor F): each routing's activator URLs."""
    with tempfile.TemporaryDirectory() as tmp, start_apiserver(Path(tmp), simulate_pods=False) as api:
        http = ready_llmdeployment(api.url, name, len(urls))
        for port in (urlsplit(url).port for url in urls):
            http.post(api.url + SLICES, timeout=10, json={
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": f"{name}-{port}", "labels": {"kubernetes.io/service-name": name,
                                                                 "app.kubernetes.io/managed-by": "foresail"}},
                "addressType": "IPv4", "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
                "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]}).raise_for_status()
        procs: list[subprocess.Popen] = []
        via: dict[str, list[str]] = {}
        try:
            for spec in routings:
                port = free_port()
                routing, _, factor = spec.partition(":")
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "foresail", "activator", "--kubeconfig", str(api.kubeconfig), "--host",
                     "127.0.0.1", "--port", str(port), "--routing", routing,
                     *(("--prefix-load-factor", factor) if factor else ()),
                     "--upstream", "http://127.0.0.1:9"],  # the Service: unused
                    stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
                via.setdefault(spec, []).append(f"http://127.0.0.1:{port}")
            for url in itertools.chain.from_iterable(via.values()):
                _wait_http(url + "/healthz")
            yield via
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=10)


@contextlib.contextmanager
def _fleet(pods: int, slots: int, token_ms: float, block_ms: float, cache_blocks: int,
           routings: tuple[str, ...]) -> Iterator[tuple[list[str], dict[str, list[str]]]]:
    """Emulated pods behind an activator process for each of ``routings`` (see `activators`): (the pods' URLs,
    each routing's activator URLs)."""
    ports = [free_port() for _ in range(pods)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    proc = subprocess.Popen([sys.executable, "-c", PODS, str(slots), str(token_ms), str(block_ms), str(cache_blocks),
                             *map(str, ports)])
    try:
        for url in urls:
            _wait_http(url + "/ready")
        with activators(urls, routings) as via:
            yield urls, via
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _always(url: str) -> Callable[[], str]:
    """A pick that always answers ``url``."""
    return lambda: url


def _figures(lat_s: np.ndarray) -> dict[str, float]:
    lat = 1e3 * lat_s
    return {"p50_ms": float(np.quantile(lat, 0.5)), "p90_ms": float(np.quantile(lat, 0.9)),
            "p99_ms": float(np.quantile(lat, 0.99)), "mean_ms": float(lat.mean())}


def _row(label: str, way: str, f: dict[str, float], base: dict[str, float]) -> dict[str, str]:
    return {"load": label, "way": way, "p50": f"{f['p50_ms']:,.0f}", "p90": f"{f['p90_ms']:,.0f}",
            "p99": f"{f['p99_ms']:,.0f}", "mean": f"{f['mean_ms']:,.0f}", "vs": f"x{f['p99_ms'] / base['p99_ms']:.2f}"}


COLUMNS = {"load": "load", "way": "spread by", "p50": "p50 ms", "p90": "p90 ms", "p99": "p99 ms", "mean": "mean ms",
           "vs": "p99 / random"}


def output_lengths(path: Path) -> np.ndarray:
    """The output lengths (``GeneratedTokens``) of an Azure-format trace CSV; TraceError where it is missing,
    unreadable or lacks them."""
    if not path.is_file():
        raise TraceError(f"{path}: no such file")
    try:
        return pd.read_csv(path, usecols=["GeneratedTokens"])["GeneratedTokens"].to_numpy(int)
    except (OSError, ValueError) as exc:
        raise TraceError(f"{path}: not an Azure trace with whole GeneratedTokens ({exc})") from None


def read_mooncake(path: Path, n: int) -> list[dict[str, Any]]:
    """The first ``n`` requests of a Mooncake-format JSONL.gz; TraceError where it is unreadable or they lack
    ``hash_ids`` or ``output_length``."""
    try:
        with gzip.open(path, "rt") as fh:
            trace = [json.loads(line) for line in itertools.islice(fh, n)]
    except (OSError, ValueError) as exc:
        raise TraceError(f"{path}: not a readable Mooncake trace ({exc})") from None
    if not trace or not all(isinstance(r, dict) and {"hash_ids", "output_length"} <= r.keys() for r in trace):
        raise TraceError(f"{path}: not a Mooncake trace (requests with hash_ids and output_length)")
    return trace


def least_load(args: argparse.Namespace, lengths: np.ndarray, rng: np.random.Generator) -> list[dict[str, Any]]:
    """The first scenario: output ``lengths`` from the Azure conversation trace, no prefix caches."""
    bodies = [_chat("hi", n) for n in rng.choice(lengths, args.requests)]
    capacity_rps = args.pods * args.slots / (lengths.mean() * args.token_ms / 1e3)
    rows, out = [], []
    with _fleet(args.pods, args.slots, args.token_ms, 0.0, 0, ("pods", "pods")) as (urls, via):
        turn, pick, front = itertools.cycle(urls), random.Random(0), random.Random(1)
        ways: dict[str, Callable[[], str]] = {
            "random pod (Service, iptables)": lambda: pick.choice(urls),
            "round robin (Service, IPVS)": lambda: next(turn),
            "activator, least in flight": lambda: via["pods"][0],
            # the chart's default: 2 replicas behind a Service, each counting only its own requests
            "2 activators at random, each least in flight": lambda: front.choice(via["pods"])}
        for url in via["pods"]:  # warm up
            asyncio.run(_replay(np.full(min(50, len(bodies)), 0.01), bodies[:50], _always(url)))
        for load in (float(x) for x in args.load.split(",")):
            gaps = rng.exponential(1.0 / (load * capacity_rps), args.requests)
            base: dict[str, float] = {}
            for way, to in ways.items():
                f = _figures(asyncio.run(_replay(gaps, bodies, to)))
                base = base or f
                out.append({"load": load, "way": way, **f})
                rows.append(_row(f"{load:.2f}", way, f, base))
    print(f"{args.pods} pods x {args.slots} slots at {args.token_ms:g} ms/token; output tokens from the Azure "
          f"conversation trace (mean {lengths.mean():.0f}); capacity {capacity_rps:.0f} req/s; "
          f"{args.requests:,} requests per run")
    print_table(rows, COLUMNS)
    return [{"capacity_rps": capacity_rps, **o} for o in out]


def prefix_caches(args: argparse.Namespace, trace: list[dict[str, Any]],
                  rng: np.random.Generator) -> list[dict[str, Any]]:
    """The second scenario: the Mooncake conversation ``trace`` against pods with prefix caches."""
    bodies = [_chat(" ".join(f"b{h}" for h in r["hash_ids"]), r["output_length"]) for r in trace]
    uncached_s = np.mean([len(r["hash_ids"]) * args.block_ms + r["output_length"] * args.token_ms
                          for r in trace]) / 1e3
    capacity_rps = args.pods * args.slots / uncached_s  # with no cache hit
    gaps = rng.exponential(1.0 / (args.prefix_load * capacity_rps), len(bodies))
    rows: list[dict[str, str]] = []
    out: list[dict[str, Any]] = []
    pick = random.Random(0)
    for way, routing in (("random pod (Service, iptables)", None), ("activator, least in flight", "pods"),
                         ("activator, prefix", f"prefix:{args.prefix_load_factor:g}")):
        with _fleet(args.pods, args.slots, args.token_ms, args.block_ms, args.cache_blocks,
                    (routing,) if routing else ()) as (urls, via):  # cold caches for each way
            f = _figures(asyncio.run(_replay(gaps, bodies, _always(via[routing][0]) if routing
                                             else (lambda: pick.choice(urls)))))
            stats = [requests.get(u + "/stats", timeout=10).json() for u in urls]
        f["hit_rate"] = sum(s["hits"] for s in stats) / max(1, sum(s["blocks"] for s in stats))
        base = out[0] if out else f
        out.append({"way": way, **f})
        rows.append({**_row(f"{args.prefix_load:.2f}", way, f, base), "hits": f"{100 * f['hit_rate']:.0f} %"})
    blocks = np.mean([len(r["hash_ids"]) for r in trace])
    seen: set[int] = set()
    reusable = 0  # blocks that one cache holding every block would find cached from the prompt's start
    for r in trace:
        ids = r["hash_ids"]
        reusable += next((i for i, h in enumerate(ids) if h not in seen), len(ids))
        seen.update(ids)
    print(f"\nPrefix caches: the first {len(bodies):,} Mooncake conversation requests in order ({blocks:.0f} "
          f"blocks of 512 tokens on average, {args.block_ms:g} ms per uncached block, {args.cache_blocks:,} blocks "
          f"cached per pod); capacity without cache hits {capacity_rps:.1f} req/s; one cache holding every "
          f"block would find {100 * reusable / sum(len(r['hash_ids']) for r in trace):.0f} % of them cached")
    print_table(rows, {**COLUMNS, "hits": "cached blocks"})
    return [{"capacity_rps": capacity_rps, **o} for o in out]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.balance", description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=4, help="emulated pods (default 4)")
    parser.add_argument("--slots", type=int, default=8, help="requests a pod runs at once (default 8)")
    parser.add_argument("--token-ms", type=float, default=1.0, help="ms per output token (default 1)")
    parser.add_argument("--load", default="0.6,0.85", help="offered load / capacity, comma list (default 0.6,0.85)")
    parser.add_argument("--requests", type=int, default=3000, help="requests per run (default 3000)")
    parser.add_argument("--trace", type=Path, default=TRACE, help="Azure-format CSV whose GeneratedTokens are "
                        "the output lengths (default: the 2023 conversation trace in ../shared/traces)")
    parser.add_argument("--mooncake", type=Path, default=MOONCAKE, help="Mooncake-format JSONL.gz for the prefix "
                        "scenario (default: its conversation trace in ../shared/traces; missing: skipped)")
    parser.add_argument("--block-ms", type=float, default=10.0, help="ms to prefill one uncached block (default 10)")
    parser.add_argument("--cache-blocks", type=int, default=3000, help="blocks a pod's prefix cache holds")
    parser.add_argument("--prefix-load", type=float, default=0.8,
                        help="offered load / capacity without cache hits, prefix scenario (default 0.8)")
    parser.add_argument("--prefix-requests", type=int, default=2000, help="requests, prefix scenario")
    parser.add_argument("--prefix-load-factor", type=float, default=1.25,
                        help="the prefix routing activator's --prefix-load-factor (default 1.25)")
    parser.add_argument("--json", type=output_file, help="write the figures as JSON")
    args = parser.parse_args(argv)
    try:
        lengths = output_lengths(args.trace)
        mooncake = read_mooncake(args.mooncake, args.prefix_requests) if args.mooncake.exists() else None
    except TraceError as exc:
        print(f"error: {exc}")
        return 2
    rng = np.random.default_rng(0)
    figures = {"least_load": least_load(args, lengths, rng)}
    if mooncake is not None:
        figures["prefix"] = prefix_caches(args, mooncake, rng)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
