"""A pod deleted while the operator's watches are down, the server's event window moving past the deletion meanwhile
(so the watch resumes with a 410 Gone and kopf lists again, sending no DELETED; kopf keeps the pod in its index): the
status no longer shows it once the watch is back, and the operator lists the pods only while its index holds more
than the Deployment has. The real operator process against the Kubernetes API test server."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any, Iterator

import kopf
import pytest

from foresail.kubetest.testing import start_apiserver
from foresail_operator import handlers
from foresail_operator.kube import KubeClient
from tests.helpers import Kube, KubeServer, condition, found, wait_for
from tests.operator.conftest import LLMD, Operator
from tests.reliability.conftest import install_crds

PODS = "/api/v1/namespaces/default/pods"
SECRETS = "/api/v1/namespaces/default/secrets"
PATH = f"{LLMD.format(ns='default')}/x"


@pytest.fixture
def small_window(tmp_path: Path) -> Iterator[KubeServer]:
    """An API test server that keeps only the last 20 events: a watch resumed after more gets a 410 Gone."""
    with start_apiserver(tmp_path, simulate_pods=True, ready_delay_s=0.3,
                         extra_args=("--event-log-size", "20")) as server:
        yield KubeServer(server, install_crds(server))


def _pod_lists(server: KubeServer) -> int:
    """How many LISTs of pods the operator's own client made since the audit was last cleared (kopf's are not)."""
    return sum(1 for e in server.audit() if e["userAgent"].startswith("foresail-operator") and e["verb"] == "list"
               and e["resource"] == "pods")


def _one_ready_pod(kube: Kube) -> bool:
    pods = found(kube.get(PODS))["items"]
    return len(pods) == 1 and condition(pods[0], "Ready").get("status") == "True"


def test_a_pod_deleted_during_a_watch_gap_leaves_the_status(small_window: KubeServer, tmp_path: Path) -> None:
    kube = small_window.kube
    env = [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}]
    kube.create(LLMD.format(ns="default"), {
        "apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "x"},
        "spec": {"model": {"source": "builtin:tiny"}, "runtime": {"env": env},
                 "autoscaling": {"mode": "predictive", "intervalSeconds": 5}}})
    op = Operator(small_window.kubeconfig, tmp_path / "operator.log", "--standalone").start()
    try:
        wait_for(lambda: "CreateContainerConfigError" in condition(kube.get(PATH), "Degraded").get("message", ""),
                 timeout=60, what="Degraded by the pod that waits for its Secret")
        small_window.audit(clear=True)
        time.sleep(11)  # two decisions and their refreshes, the index as the cluster: no LIST
        assert _pod_lists(small_window) == 0
        waiting = [p["metadata"]["name"] for p in found(kube.get(PODS))["items"]]
        assert op.proc is not None
        os.kill(op.proc.pid, signal.SIGSTOP)  # the operator's connection stalls
        try:
            kube.call("POST", "/_kubetest/drop-watches", {}, ok=(200, 202, 204))
            kube.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf"},
                                  "stringData": {"token": "t"}})
            for name in waiting:  # replaced at once by a pod that finds its Secret
                kube.call("DELETE", f"{PODS}/{name}", {"gracePeriodSeconds": 0}, ok=(200, 202))
            wait_for(lambda: _one_ready_pod(kube), timeout=30, what="the new pod alone, ready")
            for i in range(30):  # the event window moves past the deletion
                kube.create("/api/v1/namespaces/default/configmaps",
                            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"}})
        finally:
            os.kill(op.proc.pid, signal.SIGCONT)
        wait_for(lambda: condition(kube.get(PATH), "Degraded").get("status") == "False", timeout=30,
                 what="not Degraded once the pod that waited is gone")
        assert _pod_lists(small_window) >= 1
        small_window.audit(clear=True)
        time.sleep(11)  # kopf's index still holds the pod gone: not listed again at each refresh
        assert _pod_lists(small_window) == 0
        assert condition(kube.get(PATH), "Degraded").get("status") == "False"
        assert op.alive()
    finally:
        op.kill(signal.SIGTERM)
        print(op.text()[-4000:])


def _pod(kube: Kube, name: str) -> dict[str, Any]:
    """A pod of LLMDeployment x created, as owned_pods saw it: not ready, then ready."""
    pod = kube.create(PODS, {"apiVersion": "v1", "kind": "Pod",
                             "metadata": {"name": name, "labels": {handlers.OWNER_LABEL: "x"}},
                             "spec": {"containers": [{"name": "server", "image": "i"}]}})
    for ready in ("False", "True"):
        pod["status"] = {"conditions": [{"type": "Ready", "status": ready,
                                         "lastTransitionTime": pod["metadata"]["creationTimestamp"]}]}
        summary = handlers.owned_pods(namespace="default", labels={handlers.OWNER_LABEL: "x"}, body=kopf.Body(pod))
    return {"uid": pod["metadata"]["uid"], "summary": summary[("default", "x")]}


async def test_what_is_kept_for_a_pod_gone_during_a_watch_gap_is_dropped(tmp_path: Path) -> None:
    """A pod deleted while the watch was down never gets its DELETED event: once a LIST finds it gone, the operator
    drops its first readiness (kept for every pod otherwise: memory that grows with each one gone unseen)."""
    key = ("default", "x")
    try:
        with start_apiserver(tmp_path, simulate_pods=False) as server:
            kube = Kube(server.url)
            gone, kept = _pod(kube, "x-1"), _pod(kube, "x-2")
            kube.delete(f"{PODS}/x-1")
            client = KubeClient(kopf.ConnectionInfo(server=server.url, insecure=True))
            try:
                pods = await handlers._pods(client, {key: [gone["summary"], kept["summary"]]},  # type: ignore[arg-type]
                                            key, {"status": {"replicas": 1}})
            finally:
                await client.close()
        assert [p.name for p in pods] == ["x-2"]
        assert gone["uid"] not in handlers._first_ready
        assert handlers._first_ready.get(kept["uid"]) is not None  # its cold start still measured
    finally:
        handlers._first_ready.clear()
        handlers._pods_listed.pop(key, None)
