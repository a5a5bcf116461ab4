"""The real inference server (`foresail serve --model builtin:tiny`) killed mid-generation and offered
10x its capacity; the demo's pod runner restarting a killed pod process.

Every request has a timeout and every load is bounded in requests and time.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
import requests

from foresail.demo.podrunner import MANAGED, OWNER_LABEL, PodRunner
from foresail.kubetest.controllers import termination_times
from foresail.kubetest.testing import start_apiserver
from tests.helpers import wait_for
from tests.inference.conftest import MODEL, start_server, stop_server

DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"
PODS = "/api/v1/namespaces/default/pods"
SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"
PRE_STOP_S = 6  # the pod template's preStop sleep
CONCURRENCY = 4  # below what the token budget admits, so no 429 while measuring


def test_a_server_killed_mid_generation_fails_its_client_promptly_and_the_other_keeps_answering() -> None:
    servers = [start_server(), start_server()]
    victim, survivor = servers
    try:
        body: dict[str, Any] = {"model": MODEL, "prompt": "a long story", "max_tokens": 1900, "temperature": 0,
                                "stream": True}
        chunks, error, failed_after = 0, None, None
        with requests.post(f"{victim.url}/v1/completions", json=body, stream=True, timeout=(5, 60)) as rsp:
            assert rsp.status_code == 200
            try:
                for line in rsp.iter_lines():
                    if line.startswith(b"data: {"):
                        chunks += 1
                    if chunks == 5:
                        killed_at = time.monotonic()
                        victim.proc.send_signal(signal.SIGKILL)
                    if line == b"data: [DONE]":
                        break
            except requests.RequestException as exc:  # the connection dies with the process
                error, failed_after = exc, time.monotonic() - killed_at
        assert chunks >= 5
        assert error is not None, f"the stream ended cleanly after {chunks} chunks although the server was killed"
        assert failed_after is not None  # set with the error
        assert failed_after < 5, f"the client noticed the kill only after {failed_after:.1f} s"
        assert victim.proc.wait(timeout=10) == -signal.SIGKILL
        with pytest.raises(requests.ConnectionError):
            requests.post(f"{victim.url}/v1/completions", json={**body, "stream": False}, timeout=5)
        # the other server is untouched: ready, and answering
        assert requests.get(f"{survivor.url}/ready", timeout=5).status_code == 200
        answer = requests.post(f"{survivor.url}/v1/completions", timeout=60,
                               json={"model": MODEL, "prompt": "still there?", "max_tokens": 8, "temperature": 0})
        assert answer.status_code == 200 and answer.json()["usage"]["completion_tokens"] >= 1
    finally:
        for server in servers:
            stop_server(server)
            server.log_path.unlink(missing_ok=True)


def test_the_pod_runner_restarts_a_killed_pod_process(tmp_path: Path) -> None:
    """The demo's stand-in for the kubelet: a pod whose process is SIGKILLed turns not-ready in the API,
    gets a new process, and turns ready again. As the EndpointSlice controller, it lists the pod in its
    Service's slice, ready as the pod is. Scaled to zero, the pod is deleted gracefully (the object stays,
    terminating); its endpoint turns terminating and its process keeps answering through the preStop sleep,
    then gets SIGTERM, exits and leaves the slice, and the Pod object goes."""
    with start_apiserver(tmp_path / "api", simulate_pods=False) as api:
        http = requests.Session()
        labels = {"app.kubernetes.io/managed-by": "foresail", OWNER_LABEL: "tiny"}
        container = {"name": "server", "image": "local", "command": ["foresail", "serve", "--model", MODEL],
                     "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(PRE_STOP_S)]}}}}
        dep: dict[str, Any] = {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "tiny", "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [container], "terminationGracePeriodSeconds": 20}}}}
        http.post(api.url + DEPLOYS, json=dep, timeout=10).raise_for_status()
        http.post(api.url + "/api/v1/namespaces/default/services", timeout=10, json={
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "tiny", "labels": labels}, "spec": {
                "selector": labels, "ports": [{"name": "http", "port": 8000, "targetPort": "http"}]}}
                  ).raise_for_status()

        def endpoints(terminating: bool = False) -> list[tuple]:
            selector = "kubernetes.io/service-name=tiny,app.kubernetes.io/managed-by=foresail"  # the Service's labels
            slices = http.get(api.url + SLICES, timeout=10, params={"labelSelector": selector}).json()["items"]
            keys = ("ready", "serving", "terminating") if terminating else ("ready",)
            return [(s["ports"][0]["port"], *(e["conditions"][k] for k in keys))
                    for s in slices for e in s["endpoints"]]

        assert MANAGED == "app.kubernetes.io/managed-by=foresail"
        runner = PodRunner(api.url, tmp_path / "pods", cold_start_s=0.0, poll_s=0.2).start()
        try:
            (local,) = http.get(api.url + "/api/v1/nodes", timeout=10).json()["items"]  # the kubelet's node
            assert local["metadata"]["name"] == "local" and local["status"]["nodeInfo"]["kubeletVersion"] == "v1.32.0"

            def ready_pod() -> dict | None:
                pods = http.get(api.url + PODS, timeout=10).json()["items"]
                return next((p for p in pods if any(c["type"] == "Ready" and c["status"] == "True"
                                                    for c in p["status"].get("conditions") or [])), None)

            first = wait_for(ready_pod, timeout=90, what="the pod ready")
            (pod,) = runner.pods.values()
            wait_for(lambda: endpoints() == [(pod.port, True)], timeout=10, what="the pod ready in the EndpointSlice")
            assert pod.proc is not None  # the pod is ready: its process runs
            old_pid = pod.proc.pid
            assert requests.get(pod.url + "/ready", timeout=5).status_code == 200
            psutil.Process(old_pid).send_signal(signal.SIGKILL)
            wait_for(lambda: ready_pod() is None, timeout=10, interval=0.05, what="the pod reported not ready")
            wait_for(lambda: endpoints() == [(pod.port, False)], timeout=10, what="the endpoint not ready")
            again = wait_for(ready_pod, timeout=90, what="the pod ready again")
            assert again["metadata"]["name"] == first["metadata"]["name"]  # restarted in place, as a kubelet does
            assert pod.proc is not None and pod.proc.pid != old_pid and pod.proc.poll() is None
            assert requests.get(pod.url + "/ready", timeout=5).status_code == 200
            wait_for(lambda: (http.get(f"{api.url}{DEPLOYS}/tiny", timeout=10).json().get("status") or {})
                     .get("readyReplicas") == 1, timeout=10, what="the Deployment's readyReplicas back to 1")
            wait_for(lambda: endpoints() == [(pod.port, True)], timeout=10, what="the endpoint ready again")
            http.patch(f"{api.url}{DEPLOYS}/tiny", json={"spec": {"replicas": 0}}, timeout=10,
                       headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()
            removed_at = time.monotonic()
            wait_for(lambda: endpoints(terminating=True) == [(pod.port, False, True, True)], timeout=10,
                     interval=0.05, what="the endpoint terminating: not ready, still serving")
            (terminating,) = http.get(f"{api.url}{PODS}", timeout=10).json()["items"]  # a graceful deletion
            assert terminating["metadata"]["deletionTimestamp"] and terminating["spec"]["nodeName"] == "local"
            assert terminating["metadata"]["deletionGracePeriodSeconds"] == 20
            answer = requests.post(f"{pod.url}/v1/completions", timeout=10,  # within the preStop sleep
                                   json={"model": MODEL, "prompt": "still there?", "max_tokens": 4, "temperature": 0})
            assert answer.status_code == 200  # a draining or stopped server would refuse it
            wait_for(lambda: endpoints() == [], timeout=20, what="the EndpointSlice gone with the process")
            assert pod.proc.poll() is not None and time.monotonic() - removed_at >= PRE_STOP_S
            wait_for(lambda: http.get(f"{api.url}{PODS}", timeout=10).json()["items"] == [], timeout=10,
                     what="the Pod object removed once its process is gone")
        finally:
            runner.stop()


@pytest.mark.parametrize(("spec", "times"), [
    ({}, (0.0, 30.0)),  # no hook: SIGTERM at once; Kubernetes' default grace period
    ({"terminationGracePeriodSeconds": 45, "containers": [{"lifecycle": {"preStop": {
        "exec": {"command": ["sleep", "5"]}}}}]}, (5.0, 45.0)),
    ({"containers": [{"lifecycle": {"preStop": {"sleep": {"seconds": 7}}}}]}, (7.0, 30.0)),  # the sleep action
    ({"containers": [{"lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "sleep 5"]}}}}]}, (0.0, 30.0)),
    ({"containers": [{"lifecycle": {"preStop": {"exec": {"command": ["sleep", "soon"]}}}}]}, (0.0, 30.0)),
])
def test_the_pod_runner_reads_the_prestop_sleep_and_grace_period(spec: dict, times: tuple[float, float]) -> None:
    assert termination_times(spec) == times


def test_the_pod_runner_removes_pods_in_the_replicaset_controllers_order(tmp_path: Path) -> None:
    """On a scale-down the demo's stand-in for the Deployment controller removes the pods with the lowest
    controller.kubernetes.io/pod-deletion-cost first (none of them ready: their processes start later)."""
    with start_apiserver(tmp_path / "api", simulate_pods=False) as api:
        http = requests.Session()
        labels = {"app.kubernetes.io/managed-by": "foresail", OWNER_LABEL: "tiny"}
        container = {"name": "server", "image": "local", "command": ["foresail", "serve", "--model", MODEL]}
        dep: dict[str, Any] = {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {  # the plan hash: the pods' template
                "name": "tiny", "labels": labels, "annotations": {"foresail.dev/plan-hash": "1"}},
            "spec": {"replicas": 3, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}}}
        http.post(api.url + DEPLOYS, json=dep, timeout=10).raise_for_status()
        runner = PodRunner(api.url, tmp_path / "pods", cold_start_s=600.0, poll_s=0.1).start()
        try:
            wait_for(lambda: len(runner.pods) == 3, timeout=10, what="3 pods")
            oldest_first = [p.name for p in sorted(runner.pods.values(), key=lambda p: p.start_at)]
            for name, cost in zip(oldest_first, ("9", "-1", "4"), strict=True):
                http.patch(f"{api.url}{PODS}/{name}", json={"metadata": {"annotations": {
                    "controller.kubernetes.io/pod-deletion-cost": cost}}}, timeout=10,
                    headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()
            http.patch(f"{api.url}{DEPLOYS}/tiny", json={"spec": {"replicas": 1}}, timeout=10,
                       headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()
            wait_for(lambda: len(runner.pods) == 1, timeout=10, what="one pod left")
            assert list(runner.pods) == [oldest_first[0]]
            assert [p["metadata"]["name"] for p in http.get(api.url + PODS, timeout=10).json()["items"]] == [
                oldest_first[0]]
        finally:
            runner.stop()


async def test_ten_times_the_capacity_gets_429s_while_admitted_requests_complete() -> None:
    """Measure the server's capacity (requests/s, 64 tokens each, at the concurrency its token budget
    admits), then offer 10x that rate for up to 10 s, open loop and bounded to 1,000 requests: every request
    is a 200 that completes or a 429 with Retry-After, never a 5xx or a dropped connection; memory stays
    flat; the server stays ready."""
    server = start_server("--max-waiting", "4", "--max-tokens-in-flight", "512")  # ~7 requests at once
    url = f"{server.url}/v1/completions"
    body = {"model": MODEL, "prompt": "load", "max_tokens": 64, "temperature": 0}
    try:
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            async def one() -> tuple[int, str | None, Any]:  # the status, Retry-After and JSON body
                async with http.post(url, json=body) as rsp:
                    data = await rsp.json()
                    return rsp.status, rsp.headers.get("Retry-After"), data

            async def worker(n: int) -> None:
                for _ in range(n):
                    status, _, _ = await one()
                    assert status == 200

            await worker(2)  # warm up
            started = time.monotonic()
            await asyncio.gather(*[worker(5) for _ in range(CONCURRENCY)])
            capacity = CONCURRENCY * 5 / (time.monotonic() - started)
            rss_before = server.rss()

            rate = 10 * capacity
            total = min(1000, max(100, round(rate * 10)))  # up to 10 s of offered load, bounded
            ready_during: list[int] = []
            tasks = []
            t0 = time.monotonic()
            for i in range(total):
                await asyncio.sleep(max(0.0, t0 + i / rate - time.monotonic()))
                tasks.append(asyncio.create_task(one()))
                if i % 25 == 0:
                    async with http.get(f"{server.url}/ready") as rsp:
                        ready_during.append(rsp.status)
            results = await asyncio.gather(*tasks, return_exceptions=True)
            offered_s = time.monotonic() - t0
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, f"{len(errors)} requests failed without an HTTP answer: {errors[:3]}"
        answers = [r for r in results if not isinstance(r, BaseException)]
        statuses = [s for s, _, _ in answers]
        assert set(statuses) <= {200, 429}, sorted(set(statuses))
        ok = [data for s, _, data in answers if s == 200]
        assert len(ok) >= 0.5 * capacity * offered_s, f"{len(ok)} answered in {offered_s:.1f} s at {capacity:.1f} req/s"
        assert statuses.count(429) >= 0.5 * len(statuses), f"only {statuses.count(429)} of {len(statuses)} refused"
        assert all(d["usage"]["completion_tokens"] >= 1 and d["choices"][0]["finish_reason"] in ("length", "stop")
                   for d in ok)
        assert all(ra is not None and int(ra) >= 1 for s, ra, _ in answers if s == 429)
        assert set(ready_during) == {200}
        assert requests.get(f"{server.url}/ready", timeout=5).status_code == 200
        assert server.proc.poll() is None
        growth = server.rss() - rss_before
        assert growth < 100 * 2**20, f"RSS grew by {growth / 2**20:.0f} MiB"
        print(f"capacity {capacity:.1f} req/s; offered {len(statuses)} at {rate:.0f} req/s over {offered_s:.1f} s: "
              f"{len(ok)} answered, {statuses.count(429)} refused; RSS +{growth / 2**20:.1f} MiB")
    finally:
        stop_server(server)
        server.log_path.unlink(missing_ok=True)
