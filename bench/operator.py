"""Operator scale benchmark: one reconcile, and CPU time and memory at 10, 100 and 1,000 LLMDeployments.

Runs the real operator process against the Kubernetes API test server (pods simulated), creates N
LLMDeployments, waits until every one has its Deployment and a Ready status, and reads the
operator's CPU time and resident memory from /proc (psutil). The baseline is the same operator
idle with no LLMDeployment, measured in the same run.

    python -m bench.operator [--sizes 10,100,1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import requests
import yaml

from bench.table import output_file, print_table
from foresail.kubetest.testing import start_apiserver

ROOT = Path(__file__).resolve().parents[1]
LLMD = "/apis/foresail.dev/v1alpha1/namespaces/default/llmdeployments"


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def _is_ready(obj: dict[str, Any]) -> bool:
    """Whether an LLMDeployment has the condition Ready=True."""
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in (obj.get("status") or {}).get("conditions") or [])


def _wait_ready(http: requests.Session, url: str, size: int, deadline: float,
                op: subprocess.Popen) -> bool:
    """Watch LLMDeployments until `size` are Ready; False at the deadline or if the operator exits.

    A watch sends each change once; listing 1,000 LLMDeployments every half second would make
    the API test server, not the operator, the bottleneck.
    """
    ready: set[str] = set()
    rv = ""  # "" starts with every current object (ADDED); later streams resume from rv
    while time.monotonic() < deadline and op.poll() is None:
        params = {"watch": "true", "allowWatchBookmarks": "true", "timeoutSeconds": "5",
                  "resourceVersion": rv}
        with http.get(url + LLMD, params=params, stream=True, timeout=30) as rsp:
            for line in rsp.iter_lines():
                event = json.loads(line)
                if event["type"] == "ERROR":  # 410 Gone: start over from a full list
                    ready, rv = set(), ""
                    break
                rv = event["object"]["metadata"]["resourceVersion"]
                name = event["object"]["metadata"].get("name")
                if event["type"] in ("ADDED", "MODIFIED") and _is_ready(event["object"]):
                    ready.add(name)
                elif event["type"] != "BOOKMARK":
                    ready.discard(name)
                if len(ready) >= size:
                    return True
    return False


def measure(size: int, workdir: Path) -> dict:
    """Start a fresh server and operator, create `size` LLMDeployments, measure convergence."""
    with start_apiserver(workdir, simulate_pods=True, ready_delay_s=0.2) as server:
        http = requests.Session()
        for path in ("crds/llmdeployment.yaml", "crds/kopf-peering.yaml"):
            for doc in yaml.safe_load_all((ROOT / path).read_text()):
                crds = server.url + "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
                http.post(crds, json=doc).raise_for_status()
        log = open(workdir / f"operator-{size}.log", "w")
        op = subprocess.Popen([sys.executable, "-m", "foresail", "operator", "--standalone",
                               "--kubeconfig", str(server.kubeconfig)], stdout=log, stderr=subprocess.STDOUT)
        proc = psutil.Process(op.pid)
        try:
            time.sleep(3.0)  # startup: imports, login, first watches
            idle_cpu, idle_rss = _cpu(proc), proc.memory_info().rss
            start = time.monotonic()
            for i in range(size):
                body: dict[str, Any] = {
                    "apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": f"m{i:04d}"},
                    "spec": {"model": {"source": "builtin:tiny"}, "autoscaling": {"mode": "off"}, "replicas": 1}}
                http.post(server.url + LLMD, json=body).raise_for_status()
            if not _wait_ready(http, server.url, size, time.monotonic() + 60 + size * 0.5, op):
                lines = Path(log.name).read_text().splitlines()
                tail = "\n".join(ln for ln in lines if "succeeded" not in ln and "processed" not in ln)[-4000:]
                raise RuntimeError(f"{size} LLMDeployments did not converge; operator log:\n{tail}")
            wall = time.monotonic() - start
            busy_cpu = _cpu(proc) - idle_cpu
            time.sleep(5.0)  # steady state: nothing changes, the operator should be quiet
            steady_cpu = _cpu(proc) - idle_cpu - busy_cpu
            rss = max(proc.memory_info().rss, 0)
        finally:
            op.send_signal(signal.SIGTERM)
            op.wait(timeout=30)
            log.close()
    return {"llmdeployments": size, "converge_s": round(wall, 2),
            "cpu_s": round(busy_cpu, 2), "cpu_ms_per_llmd": round(1000 * busy_cpu / size, 2),
            "steady_cpu_percent": round(100 * steady_cpu / 5.0, 1),
            "idle_rss_mb": round(idle_rss / 2**20, 1), "rss_mb": round(rss / 2**20, 1),
            "rss_over_idle": round(rss / idle_rss, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--json", type=output_file)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in [int(s) for s in args.sizes.split(",")]:
            rows.append(measure(size, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    print_table(rows, {"llmdeployments": "LLMDeployments", "converge_s": "converge s", "cpu_s": "CPU s",
                       "cpu_ms_per_llmd": "CPU ms/LLMD", "steady_cpu_percent": "CPU % at rest",
                       "idle_rss_mb": "idle RSS MB", "rss_mb": "RSS MB", "rss_over_idle": "RSS/idle"})
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
