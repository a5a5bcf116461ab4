"""`kubectl get llmd` prints the CRD's columns, and `-o wide` adds the forecast coverage and the last scale
reason: the CRD's additionalPrinterColumns through the API test server's Table and the real kubectl."""

from __future__ import annotations

import shutil

import pytest

from tests.helpers import kubectl
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
