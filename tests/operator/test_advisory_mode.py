"""Advisory mode computes and reports, and never writes the Deployment's replicas (README): not even to bring a count
another writer set (an HPA it is evaluated beside, a person) within minReplicas and maxReplicas. The real operator
process against the Kubernetes API test server."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.helpers import condition, found, wait_for
from tests.operator.conftest import LLMD, Operator

DEPLOY = "/apis/apps/v1/namespaces/default/deployments/x"
PATH = LLMD.format(ns="default") + "/x"


def test_advisory_mode_leaves_a_count_outside_the_bounds_to_its_writer(cluster, tmp_path: Path) -> None:
    kube = cluster.kube
    kube.create(LLMD.format(ns="default"), {
        "apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "x"},
        "spec": {"model": {"source": "builtin:tiny"}, "minReplicas": 1, "maxReplicas": 3,
                 "autoscaling": {"mode": "advisory", "intervalSeconds": 5}}})
    op = Operator(cluster.kubeconfig, tmp_path / "operator.log", "--standalone").start()
    try:
        wait_for(lambda: condition(kube.get(PATH), "Ready").get("status") == "True", timeout=60, what="Ready")
        kube.merge(DEPLOY + "/scale", {"spec": {"replicas": 5}})  # the autoscaler in charge sets 5
        wait_for(lambda: found(kube.get(PATH))["status"].get("desiredReplicas") == 5, timeout=30,
                 what="the status of the 5 replicas")
        generation = kube.merge(PATH, {"spec": {"autoscaling": {"forecast": {"quantile": 0.95}}}})["metadata"][
            "generation"]
        wait_for(lambda: found(kube.get(PATH))["status"].get("observedGeneration") == generation, timeout=30,
                 what="the edited spec reconciled")
        assert found(kube.get(DEPLOY))["spec"]["replicas"] == 5
        assert "minReplicas/maxReplicas" not in op.text()
    finally:
        op.kill(signal.SIGTERM)
        print(op.text()[-3000:])
