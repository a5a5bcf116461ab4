"""kopf 1.45 runs against the server: watches, adoption, status, finalizers, peering, GC."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from foresail.kubetest.testing import ApiServerProcess
from tests.kubetest.helpers import Kube, wait_for, widget

OPERATOR = Path(__file__).with_name("kopf_operator.py")
PEERING_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "kopfpeerings.kopf.dev"},
    "spec": {"group": "kopf.dev", "scope": "Namespaced",
             "names": {"plural": "kopfpeerings", "singular": "kopfpeering", "kind": "KopfPeering"},
             "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                 "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields":
                                     True}}}]},
}


@pytest.fixture
def operator(server: ApiServerProcess, kube: Kube, widgets: str, namespace: str,
             tmp_path: Path) -> Iterator[Path]:
    """``kopf run`` of the test operator in the test's namespace, with peering."""
    kube.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", PEERING_CRD)
    kube.post(f"/apis/kopf.dev/v1/namespaces/{namespace}/kopfpeerings",
              {"metadata": {"name": "default"}})
    log = tmp_path / "kopf.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "kopf", "run", str(OPERATOR), f"--namespace={namespace}",
             "--peering=default", "--verbose"], stdout=out, stderr=subprocess.STDOUT,
            env=server.env())
    try:
        yield log
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_kopf_operator_lifecycle(kube: Kube, widgets: str, namespace: str,
                                 operator: Path) -> None:
    path = f"{widgets}/namespaces/{namespace}/widgets"
    deployments = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    assert kube.post(path, widget("llm", replicas=2))[0] == 201
    deployment = wait_for(lambda: (r := kube.get(f"{deployments}/llm"))[0] == 200 and r[1],
                          timeout_s=20)
    _, owner = kube.get(f"{path}/llm")
    assert deployment["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
    assert owner["metadata"]["finalizers"], "kopf added its finalizer"
    status = wait_for(lambda: (w := kube.get(f"{path}/llm")[1]).get("status", {}).get(
        "replicas") == 2 and w["status"], timeout_s=20)
    assert status["phase"] == "Ready"
    assert "create_fn" not in status, "the schema does not declare it: pruned, as for real"
    kube.patch(f"{path}/llm/scale", {"spec": {"replicas": 3}})
    wait_for(lambda: kube.get(f"{path}/llm")[1].get("status", {}).get("replicas") == 3,
             timeout_s=20)
    _, peering = kube.get(f"/apis/kopf.dev/v1/namespaces/{namespace}/kopfpeerings/default")
    assert peering.get("status"), "the operator announced itself in the peering object"
    assert kube.delete(f"{path}/llm")[0] == 200
    wait_for(lambda: kube.get(f"{path}/llm")[0] == 404, timeout_s=20)
    assert kube.get(f"{deployments}/llm")[0] == 404, "the adopted Deployment was collected"
    log = operator.read_text()
    assert "pod event" in log and "deleting llm" in log
    assert "Traceback" not in log, log[-3000:]
