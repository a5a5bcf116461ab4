"""A pod deleted while the operator's watches are down, the server's event window moving past the deletion meanwhile
(so the watch resumes with a 410 Gone and kopf lists again, sending no DELETED; kopf keeps the pod in its index): the
status no longer shows it once the watch is back, and the operator lists the pods only while its index holds more
than the Deployment has. The real operator process against the Kubernetes API test server."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Iterator

import pytest

from foresail.kubetest.testing import start_apiserver
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
