"""Someone removes every label of the owned Deployment (`kubectl patch --type=json` removing /metadata/labels): it
no longer matches the owner label the operator watches by, so the next resync (a minute) finds it missing and
reconciles, which puts the labels back. Its JSON patch replaced /metadata/labels, which needs the member there
(RFC 6902): the API server refused it, and the LLMDeployment stayed Degraded (ReconcileFailed) for ever. The real
operator process against the Kubernetes API test server."""

from __future__ import annotations

import yaml

from tests.helpers import ROOT, condition, kubectl, wait_for
from tests.operator.conftest import LLMD

DEPLOYMENT = "/apis/apps/v1/namespaces/default/deployments/tiny"


def test_labels_removed_from_the_owned_deployment_are_put_back(cluster, operator) -> None:
    doc = yaml.safe_load((ROOT / "examples" / "minimal.yaml").read_text())
    doc["spec"]["autoscaling"] = {"mode": "off"}
    kubectl(cluster.kubeconfig, "apply", "--validate=false", "-f", "-", input=yaml.safe_dump(doc))
    path = f"{LLMD.format(ns='default')}/tiny"
    wait_for(lambda: condition(cluster.kube.get(path), "Ready").get("status") == "True", what="Ready")
    cluster.kube.call("PATCH", DEPLOYMENT, [{"op": "remove", "path": "/metadata/labels"}],
                      "application/json-patch+json")
    wait_for(lambda: (cluster.kube.get(DEPLOYMENT)["metadata"].get("labels") or {}).get(
        "foresail.dev/llmdeployment") == "tiny", timeout=100, what="the labels put back")
    degraded = condition(cluster.kube.get(path), "Degraded")
    assert degraded["status"] == "False", degraded
    assert "cannot put back the objects" not in operator.text()
    assert operator.alive()
