"""Two operator replicas with kopf peering: exactly one acts, and the other takes over when it stops."""

from __future__ import annotations

import signal

import yaml

from tests.helpers import ROOT, wait_for
from tests.operator.conftest import LLMD, Operator

PEERING = "/apis/kopf.dev/v1/clusterkopfpeerings"


def test_only_one_replica_acts_and_the_other_takes_over(cluster, tmp_path):
    cluster.kube.create(PEERING, {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering",
                                  "metadata": {"name": "foresail"}})
    ops = [Operator(cluster.kubeconfig, tmp_path / f"op{i}.log", "--priority", str(100 + i)).start()
           for i in range(2)]
    try:
        wait_for(lambda: len((cluster.kube.get(f"{PEERING}/foresail").get("status") or {})) == 2,
                 timeout=30, what="both replicas in the peering object")
        doc = yaml.safe_load((ROOT / "examples" / "minimal.yaml").read_text())
        doc["spec"]["autoscaling"] = {"mode": "off"}
        cluster.kube.create(LLMD.format(ns="default"), doc)
        wait_for(lambda: cluster.kube.get("/apis/apps/v1/namespaces/default/deployments/tiny"), what="Deployment")
        wait_for(lambda: "created Deployment tiny" in ops[1].text(), what="the leader's log")
        assert "created" not in ops[0].text(), "the lower-priority replica acted too"
        assert "Freezing operations" in ops[0].text() or "Pausing operations" in ops[0].text()

        ops[1].kill(signal.SIGTERM)  # the leader leaves the peering on a clean stop
        doc["metadata"]["name"] = "second"
        cluster.kube.create(LLMD.format(ns="default"), doc)
        wait_for(lambda: cluster.kube.get("/apis/apps/v1/namespaces/default/deployments/second"),
                 timeout=60, what="the standby to take over")
        assert "created Deployment second" in ops[0].text()
    finally:
        for op in ops:
            if op.alive():
                op.kill(signal.SIGTERM)
