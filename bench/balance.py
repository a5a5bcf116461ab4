"""Load balancing: latency through `foresail activator` (least requests in flight) against a Service's picks.

Open-loop Poisson arrivals of chat completions whose output lengths are drawn from the Azure 2023
conversation trace (../shared/traces), sent to emulated GPU pods: each runs up to ``--slots`` requests
at once (continuous batching) at ``--token-ms`` per output token, and queues the rest in order. The
pods are emulated (no GPU here) so that what is measured is where requests go, not the shared CPU.
Three ways of spreading the same requests, in the same run: a random pod per request (a Service under
kube-proxy's iptables mode; it picks per connection, which balances worse), round robin (IPVS mode's
default), and the real activator process picking the ready pod with the fewest of its requests in flight
from the deployment's EndpointSlices (in the Kubernetes API test server).

    PYTHONPATH=. python -m bench.balance [--pods 4] [--slots 8] [--token-ms 1] [--load 0.6,0.85]
                                         [--requests 3000] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import aiohttp
import numpy as np
import pandas as pd

from bench.activator import ROOT, _wait_http, ready_llmdeployment
from bench.table import print_table
from foresail.demo.prometheus import free_port
from foresail.kubetest.testing import start_apiserver

TRACE = ROOT.parent / "shared" / "traces" / "azure-llm-2023" / "AzureLLMInferenceTrace_conv.csv"
SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
PODS = """
import asyncio, sys
from aiohttp import web
slots, token_s, ports = int(sys.argv[1]), float(sys.argv[2]) / 1e3, [int(p) for p in sys.argv[3:]]
async def serve(port):
    busy = asyncio.Semaphore(slots)
    async def answer(request):
        tokens = int((await request.json())["max_tokens"])
        async with busy:
            await asyncio.sleep(tokens * token_s)
        return web.json_response({"object": "chat.completion", "usage": {"completion_tokens": tokens},
                                  "choices": [{"index": 0, "message": {"role": "assistant", "content": "x"}}]})
    app = web.Application()
    app.router.add_post("/v1/chat/completions", answer)
    app.router.add_get("/ready", lambda _: web.Response(text="ok"))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
async def main():
    await asyncio.gather(*(serve(p) for p in ports))
    await asyncio.Event().wait()
asyncio.run(main())
"""


async def _replay(gaps_s: np.ndarray, tokens: np.ndarray, pick: Callable[[], str]) -> np.ndarray:
    """Send one request per gap (open loop) to ``pick()``; end-to-end latencies in s."""
    latencies = np.full(len(tokens), np.nan)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def one(i: int) -> None:
            t0 = time.perf_counter()
            body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": int(tokens[i])}
            async with session.post(pick() + "/v1/chat/completions", json=body) as rsp:
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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.balance", description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=4, help="emulated pods (default 4)")
    parser.add_argument("--slots", type=int, default=8, help="requests a pod runs at once (default 8)")
    parser.add_argument("--token-ms", type=float, default=1.0, help="ms per output token (default 1)")
    parser.add_argument("--load", default="0.6,0.85", help="offered load / capacity, comma list (default 0.6,0.85)")
    parser.add_argument("--requests", type=int, default=3000, help="requests per run (default 3000)")
    parser.add_argument("--trace", type=Path, default=TRACE, help="Azure-format CSV whose GeneratedTokens are "
                        "the output lengths (default: the 2023 conversation trace in ../shared/traces)")
    parser.add_argument("--json", help="write the figures as JSON")
    args = parser.parse_args(argv)
    if not args.trace.exists():
        print(f"needs the Azure conversation trace at {args.trace}")
        return 2
    rng = np.random.default_rng(0)
    lengths = pd.read_csv(args.trace)["GeneratedTokens"].to_numpy(int)
    tokens = rng.choice(lengths, args.requests)
    capacity_rps = args.pods * args.slots / (lengths.mean() * args.token_ms / 1e3)
    rows, out = [], []
    ports = [free_port() for _ in range(args.pods)]
    urls = [f"http://127.0.0.1:{p}" for p in ports]
    with tempfile.TemporaryDirectory() as tmp, start_apiserver(Path(tmp), simulate_pods=False) as api:
        http = ready_llmdeployment(api.url, "chat", args.pods)
        for port in ports:
            http.post(api.url + SLICES, timeout=10, json={
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": f"chat-{port}", "labels": {"kubernetes.io/service-name": "chat",
                                                               "app.kubernetes.io/managed-by": "foresail"}},
                "addressType": "IPv4", "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
                "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}]}).raise_for_status()
        act_port = free_port()
        pods = subprocess.Popen([sys.executable, "-c", PODS, str(args.slots), str(args.token_ms), *map(str, ports)])
        activator = subprocess.Popen(
            [sys.executable, "-m", "foresail", "activator", "--kubeconfig", str(api.kubeconfig), "--host",
             "127.0.0.1", "--port", str(act_port), "--upstream", "http://127.0.0.1:9"],  # the Service: unused
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            for url in urls:
                _wait_http(url + "/ready")
            via = f"http://127.0.0.1:{act_port}"
            _wait_http(via + "/healthz")
            turn = itertools.cycle(urls)
            pick = random.Random(0)
            ways: dict[str, Callable[[], str]] = {"random pod (Service, iptables)": lambda: pick.choice(urls),
                                                  "round robin (Service, IPVS)": lambda: next(turn),
                                                  "activator, least in flight": lambda: via}
            warm = tokens[:50]
            asyncio.run(_replay(np.full(len(warm), 0.01), warm, lambda: via))  # warm up
            for load in (float(x) for x in args.load.split(",")):
                gaps = rng.exponential(1.0 / (load * capacity_rps), args.requests)
                base = None
                for way, to in ways.items():
                    lat = 1e3 * asyncio.run(_replay(gaps, tokens, to))
                    p50, p90, p99 = (float(np.quantile(lat, q)) for q in (0.5, 0.9, 0.99))
                    base = base or p99
                    out.append({"load": load, "way": way, "p50_ms": p50, "p90_ms": p90, "p99_ms": p99,
                                "mean_ms": float(lat.mean())})
                    rows.append({"load": f"{load:.2f}", "way": way, "p50": f"{p50:,.0f}", "p90": f"{p90:,.0f}",
                                 "p99": f"{p99:,.0f}", "mean": f"{lat.mean():,.0f}", "vs": f"x{p99 / base:.2f}"})
        finally:
            for proc in (activator, pods):
                proc.terminate()
                proc.wait(timeout=10)
    print(f"{args.pods} pods x {args.slots} slots at {args.token_ms:g} ms/token; output tokens from the Azure "
          f"conversation trace (mean {lengths.mean():.0f}); capacity {capacity_rps:.0f} req/s; "
          f"{args.requests:,} requests per run")
    print_table(rows, {"load": "load", "way": "spread by", "p50": "p50 ms", "p90": "p90 ms", "p99": "p99 ms",
                       "mean": "mean ms", "vs": "p99 / random"})
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": out, "capacity_rps": capacity_rps}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
