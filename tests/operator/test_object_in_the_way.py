"""A Deployment of the LLMDeployment's name that it does not own (someone else's) is reported, and not read again
(nor warned of again) at every decision: the real operator process against the Kubernetes API test server."""

from __future__ import annotations

import time

import yaml

from tests.helpers import ROOT, condition, kubectl, wait_for
from tests.operator.conftest import LLMD

DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
INTERVAL_S = 5
WARNING = "cannot put back the objects of default/tiny"


def test_a_deployment_in_the_way_is_not_read_again_at_each_decision(cluster, operator) -> None:
    theirs = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "tiny"}, "spec": {
        "replicas": 1, "selector": {"matchLabels": {"app": "theirs"}},
        "template": {"metadata": {"labels": {"app": "theirs"}},
                     "spec": {"containers": [{"name": "c", "image": "example.com/theirs:1"}]}}}}
    cluster.kube.create(DEPLOY, theirs)
    doc = yaml.safe_load((ROOT / "examples" / "minimal.yaml").read_text())
    doc["spec"]["autoscaling"] = {"intervalSeconds": INTERVAL_S}
    kubectl(cluster.kubeconfig, "apply", "--validate=false", "-f", "-", input=yaml.safe_dump(doc))
    path = f"{LLMD.format(ns='default')}/tiny"
    wait_for(lambda: condition(cluster.kube.get(path), "Degraded").get("status") == "True", what="Degraded")
    cluster.audit(clear=True)
    warned = operator.text().count(WARNING)
    time.sleep(4 * INTERVAL_S)  # four decisions
    reads = [e for e in cluster.audit() if e["userAgent"].startswith("foresail-operator") and e["verb"] == "get"
             and e["resource"] == "llmdeployments"]  # each reconcile a decision starts reads the LLMDeployment first
    assert len(reads) <= 1, reads
    assert operator.text().count(WARNING) - warned <= 1
    degraded = condition(cluster.kube.get(path), "Degraded")  # still reported
    assert degraded["status"] == "True" and "a Deployment named tiny exists that this LLMDeployment does not own" \
        in degraded["message"], degraded

    cluster.kube.delete(f"{DEPLOY}/tiny")  # out of the way: the operator's own is made, within a minute
    uid = cluster.kube.get(path)["metadata"]["uid"]
    wait_for(lambda: any(ref["uid"] == uid for ref in ((cluster.kube.get(f"{DEPLOY}/tiny") or {}).get("metadata")
                                                       or {}).get("ownerReferences") or []),
             timeout=90, what="the LLMDeployment's own Deployment")
    wait_for(lambda: condition(cluster.kube.get(path), "Degraded").get("status") == "False", what="not Degraded")
    assert operator.alive()
