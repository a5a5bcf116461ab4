"""An owned Deployment deleted while the operator's watches are down, the server's event window moving past the
deletion meanwhile (so the watch resumes with a 410 Gone and kopf lists again, sending no DELETED): the decision
loop finds it gone and recreates it, and from then on follows the new one (kopf keeps the old one in its index)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Iterator

import pytest

from foresail.kubetest.testing import start_apiserver
from tests.helpers import KubeServer, condition, found, wait_for
from tests.operator.conftest import LLMD, Operator
from tests.reliability.conftest import install_crds

DEP = "/apis/apps/v1/namespaces/default/deployments"


@pytest.fixture
def small_window(tmp_path: Path) -> Iterator[KubeServer]:
    """An API test server that keeps only the last 20 events: a watch resumed after more gets a 410 Gone."""
    with start_apiserver(tmp_path, simulate_pods=True, ready_delay_s=0.3,
                         extra_args=("--event-log-size", "20")) as server:
        yield KubeServer(server, install_crds(server))


def test_a_deployment_deleted_during_a_watch_gap_is_recreated(small_window: KubeServer, tmp_path: Path) -> None:
    kube = small_window.kube
    kube.create(LLMD.format(ns="default"), {
        "apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "x"},
        "spec": {"model": {"source": "builtin:tiny"}, "autoscaling": {"mode": "predictive", "intervalSeconds": 5}}})
    op = Operator(small_window.kubeconfig, tmp_path / "operator.log", "--standalone").start()
    path = f"{LLMD.format(ns='default')}/x"
    try:
        wait_for(lambda: condition(kube.get(path), "Ready").get("status") == "True",
                 timeout=60, what="Ready")
        time.sleep(1)  # the operator has seen all of it
        first = found(kube.get(f"{DEP}/x"))
        assert op.proc is not None
        os.kill(op.proc.pid, signal.SIGSTOP)  # the operator's connection stalls
        try:
            kube.call("POST", "/_kubetest/drop-watches", {}, ok=(200, 202, 204))
            kube.call("DELETE", f"{DEP}/x", {"propagationPolicy": "Orphan"}, ok=(200, 202))
            for i in range(30):  # the event window moves past the deletion
                kube.create("/api/v1/namespaces/default/configmaps",
                            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{i}"}})
        finally:
            os.kill(op.proc.pid, signal.SIGCONT)
        # the owned objects are read back every 60 s
        again = wait_for(lambda: kube.get(f"{DEP}/x"), timeout=90, what="the Deployment recreated")
        assert found(again)["metadata"]["uid"] != first["metadata"]["uid"]
        kube.merge(f"{path}/scale", {"spec": {"replicas": 3}})

        def status() -> dict:
            return found(kube.get(path)).get("status") or {}

        wait_for(lambda: status().get("readyReplicas") == status().get("desiredReplicas") == 3, timeout=30,
                 what="the status of the new Deployment's 3 ready replicas")
        time.sleep(11)  # two decisions: each would scale "1 -> 3" again if it read the old one
        assert [h["reason"] for h in status()["history"]] == ["manual scale: 1 -> 3"]
        assert condition(kube.get(path), "ScalingLimited").get("reason") != "ReplicasOverridden"
        assert op.alive()
    finally:
        op.kill(signal.SIGTERM)
        print(op.text()[-4000:])
