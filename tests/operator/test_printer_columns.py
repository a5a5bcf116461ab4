"""`kubectl get llmd` prints the CRD's columns, and `-o wide` adds the forecast coverage and the last scale
reason: the CRD's additionalPrinterColumns through the API test server's Table and the real kubectl; built-in
kinds' wide columns too."""

from __future__ import annotations

import shutil

import pytest

from tests.helpers import kubectl, wait_for
from tests.operator.conftest import LLMD

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
REASON = "forecast 3.1 req/s p90 @+135s needs 4"


def test_kubectl_get_shows_the_columns_and_wide_adds_coverage_and_reason(cluster) -> None:
    path = LLMD.format(ns="default")
    cluster.kube.create(path, {"apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment",
                               "metadata": {"name": "chat"}, "spec": {"model": {"source": "builtin:tiny"}}})
    cluster.kube.merge(f"{path}/chat/status", {"status": {
        "readyReplicas": 3, "desiredReplicas": 4, "lastScaleReason": REASON,
        "forecast": {"summary": "3.1 req/s p90 @+135s", "coverage": 0.85, "checked": 20}}})
    header, row = kubectl(cluster.kubeconfig, "get", "llmd").stdout.splitlines()[:2]
    assert header.split() == ["NAME", "MODEL", "READY", "DESIRED", "MODE", "FORECAST", "AGE"]
    assert row.split()[:9] == ["chat", "builtin:tiny", "3", "4", "predictive", "3.1", "req/s", "p90", "@+135s"]
    header, row = kubectl(cluster.kubeconfig, "get", "llmd", "-o", "wide").stdout.splitlines()[:2]
    assert header.split()[-2:] == ["COVERAGE", "REASON"]
    assert row.split()[-len(REASON.split()) - 1:] == ["0.85", *REASON.split()]


def test_kubectl_get_wide_shows_the_pods_node_and_the_deployments_images(cluster) -> None:
    """Built-in kinds' wide columns, as kube-apiserver serves them: a Pod's IP and Node; a Deployment's
    containers, images and selector."""
    labels = {"app": "web", "tier": "front"}
    cluster.kube.create("/apis/apps/v1/namespaces/default/deployments", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "server", "image": "example/server:1"},
                                    {"name": "proxy", "image": "example/proxy:2"}]}}}})
    header, row = kubectl(cluster.kubeconfig, "get", "deploy", "-o", "wide").stdout.splitlines()[:2]
    assert header.split()[-3:] == ["CONTAINERS", "IMAGES", "SELECTOR"]
    assert row.split()[-3:] == ["server,proxy", "example/server:1,example/proxy:2", "app=web,tier=front"]
    assert header.split()[:2] == ["NAME", "READY"]
    assert "IMAGES" not in kubectl(cluster.kubeconfig, "get", "deploy").stdout
    pods = wait_for(lambda: [p for p in cluster.kube.get("/api/v1/namespaces/default/pods")["items"]
                             if (p.get("status") or {}).get("podIP")], what="the pod's IP")
    header, row = kubectl(cluster.kubeconfig, "get", "pods", "-o", "wide").stdout.splitlines()[:2]
    assert header.split()[-2:] == ["IP", "NODE"]
    assert row.split()[-2:] == [pods[0]["status"]["podIP"], pods[0]["spec"]["nodeName"]]
