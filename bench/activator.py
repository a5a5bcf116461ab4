"""Activator overhead: requests/s and latency through `foresail activator` against the same upstream directly.

The activator runs as its real process against the Kubernetes API test server, routing to an upstream
that answers every /v1/* request at once with a fixed chat completion (so what is measured is the
extra hop, not generation); the baseline is the same load sent to that upstream directly, in the
same run. The load generator, the activator and the upstream share the machine's cores. Also: the
Kubernetes API requests the activator makes during the load, and how long a held request still waits
once its deployment's status shows a ready replica (the wake), against a direct request's latency.

    python -m bench.activator [--requests 3000] [--concurrency 1,16] [--wakes 20] [--settle 0.5]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import psutil
import requests
import yaml
from tqdm import tqdm

from bench.table import output_file, print_table
from foresail.demo.prometheus import free_port
from foresail.kubetest.testing import start_apiserver

ROOT = Path(__file__).resolve().parents[1]
LLMD = "/apis/foresail.dev/v1alpha1/namespaces/default/llmdeployments"
UPSTREAM = """
from aiohttp import web
BODY = {"id": "chatcmpl-0", "object": "chat.completion", "model": "echo", "choices": [{"index": 0,
        "message": {"role": "assistant", "content": "Hello! How can I help you today?"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 9, "completion_tokens": 9, "total_tokens": 18}}
async def answer(request):
    await request.read()
    return web.json_response(BODY)
app = web.Application()
app.router.add_route("*", "/{tail:.*}", answer)
web.run_app(app, host="127.0.0.1", port=int(__import__("sys").argv[1]), print=None, access_log=None)
"""
REQUEST = {"model": "echo", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 16}


def ready_llmdeployment(api_url: str, name: str, replicas: int) -> requests.Session:
    """Install the CRD and an LLMDeployment ``name`` whose status has ``replicas`` ready; a session to the API."""
    http = requests.Session()
    for doc in yaml.safe_load_all((ROOT / "crds" / "llmdeployment.yaml").read_text()):
        http.post(api_url + "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", json=doc,
                  timeout=10).raise_for_status()
    http.post(api_url + LLMD, json={"apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment",
                                    "metadata": {"name": name}, "spec": {"model": {"source": "builtin:tiny"}}},
              timeout=10).raise_for_status()
    http.patch(f"{api_url}{LLMD}/{name}/status", json={"status": {"readyReplicas": replicas}}, timeout=10,
               headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()
    return http


def _held(url: str) -> float:
    """Requests the activator holds now (its gauge)."""
    text = requests.get(url + "/metrics", timeout=5).text
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
               if ln.startswith("foresail_activator_held_requests{"))


def _wakes(http: requests.Session, api_url: str, via: str, n: int, settle_s: float) -> np.ndarray:
    """Seconds from the status of a deployment at zero showing a ready replica to the answer of the request
    held for it, ``n`` times; the deployment is at zero for ``settle_s`` before each request."""
    status = f"{api_url}{LLMD}/sleepy/status"
    patch = {"Content-Type": "application/merge-patch+json"}
    body: dict[str, Any] = {**REQUEST, "model": "sleepy"}
    waits = []
    with ThreadPoolExecutor(1) as pool:
        for _ in tqdm(range(n), desc="wakes", leave=False):
            http.patch(status, json={"status": {"readyReplicas": 0}}, headers=patch, timeout=10).raise_for_status()
            time.sleep(settle_s)  # the activator sees it at zero
            answer = pool.submit(requests.post, via + "/v1/chat/completions", json=body, timeout=60)
            deadline = time.monotonic() + 10
            while _held(via) < 1:
                if time.monotonic() > deadline:
                    raise RuntimeError("the activator did not hold the request")
                time.sleep(0.01)
            started = time.perf_counter()
            http.patch(status, json={"status": {"readyReplicas": 1}}, headers=patch, timeout=10).raise_for_status()
            if answer.result().status_code != 200:
                raise RuntimeError(f"held request: HTTP {answer.result().status_code}")
            waits.append(time.perf_counter() - started)
    return np.array(waits)


def _wait_http(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout_s:.0f} s")


async def _load(url: str, n: int, concurrency: int) -> tuple[float, np.ndarray]:
    """Send ``n`` chat completions with ``concurrency`` in flight; (requests/s, latencies in s)."""
    latencies: list[float] = []
    queue = iter(range(n))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def worker() -> None:
            for _ in queue:
                t0 = time.perf_counter()
                async with session.post(url + "/v1/chat/completions", json=REQUEST) as rsp:
                    await rsp.read()
                    if rsp.status != 200:
                        raise RuntimeError(f"{url}: HTTP {rsp.status}")
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return n / wall, np.array(latencies)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.activator", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="requests per run (default 3000)")
    parser.add_argument("--concurrency", default="1,16", help="comma list (default 1,16)")
    parser.add_argument("--wakes", type=int, default=20, help="held requests woken (default 20)")
    parser.add_argument("--settle", type=float, default=0.5,
                        help="seconds a deployment is at zero before each wake (default 0.5; an activator that "
                             "polls its listing needs more than its period)")
    parser.add_argument("--json", type=output_file, help="write the figures as JSON")
    args = parser.parse_args(argv)
    rows: list[dict] = []
    out: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp, start_apiserver(Path(tmp), simulate_pods=False) as api:
        http = ready_llmdeployment(api.url, "echo", 1)
        http.post(api.url + LLMD, json={"apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment",
                                        "metadata": {"name": "sleepy"}, "spec": {"model": {"source": "builtin:tiny"}}},
                  timeout=10).raise_for_status()
        up_port, act_port = free_port(), free_port()
        upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM, str(up_port)])
        activator = subprocess.Popen(
            [sys.executable, "-m", "foresail", "activator", "--kubeconfig", str(api.kubeconfig), "--host",
             "127.0.0.1", "--port", str(act_port), "--upstream", f"http://127.0.0.1:{up_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            direct, via = f"http://127.0.0.1:{up_port}", f"http://127.0.0.1:{act_port}"
            _wait_http(direct)
            _wait_http(via + "/healthz")
            api.clear_audit()
            load_started = time.perf_counter()
            for c in (int(x) for x in args.concurrency.split(",")):
                asyncio.run(_load(via, 100, c))  # warm both paths up
                base_rps, base_lat = asyncio.run(_load(direct, args.requests, c))
                rps, lat = asyncio.run(_load(via, args.requests, c))
                figures = {"concurrency": c, "direct_rps": base_rps, "activator_rps": rps,
                           "direct_p50_ms": 1e3 * float(np.median(base_lat)),
                           "activator_p50_ms": 1e3 * float(np.median(lat)),
                           "direct_p99_ms": 1e3 * float(np.quantile(base_lat, 0.99)),
                           "activator_p99_ms": 1e3 * float(np.quantile(lat, 0.99))}
                out.append(figures)
                rows.append({"c": c, "drps": f"{base_rps:,.0f}", "arps": f"{rps:,.0f}",
                             "slow": f"x{base_rps / rps:.2f}",
                             "d50": f"{figures['direct_p50_ms']:.2f}", "a50": f"{figures['activator_p50_ms']:.2f}",
                             "add": f"+{figures['activator_p50_ms'] - figures['direct_p50_ms']:.2f}",
                             "d99": f"{figures['direct_p99_ms']:.2f}", "a99": f"{figures['activator_p99_ms']:.2f}"})
            api_calls, load_s = len(api.audit()), time.perf_counter() - load_started
            rss = psutil.Process(activator.pid).memory_info().rss / 2**20
            wakes = _wakes(http, api.url, via, args.wakes, args.settle)
            direct_s = asyncio.run(_load(direct, args.wakes, 1))[1]
        finally:
            for proc in (activator, upstream):
                proc.terminate()
                proc.wait(timeout=10)
    print_table(rows, {"c": "concurrency", "drps": "direct req/s", "arps": "via activator", "slow": "slowdown",
                       "d50": "p50 ms direct", "a50": "p50 via", "add": "added", "d99": "p99 ms direct",
                       "a99": "p99 via"})
    print(f"activator resident memory after the runs: {rss:.0f} MiB ({args.requests:,} requests per run)")
    print(f"Kubernetes API requests by the activator during the runs: {api_calls} in {load_s:.0f} s")
    wake = {"p50_ms": 1e3 * float(np.median(wakes)), "max_ms": 1e3 * float(wakes.max()),
            "direct_p50_ms": 1e3 * float(np.median(direct_s))}
    print(f"held request answered after its deployment shows a ready replica: p50 {wake['p50_ms']:.1f} ms, "
          f"max {wake['max_ms']:.1f} ms over {len(wakes)} wakes (a direct request: p50 {wake['direct_p50_ms']:.1f} ms)")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": out, "activator_rss_mib": rss, "api_requests": api_calls,
                                               "load_seconds": load_s, "wake": wake}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
