"""The scale subresource (kubernetes client and ``kubectl scale``) and kubectl apply/get/delete."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, cast

import kubernetes
import pytest

from foresail.kubetest.testing import ApiServerProcess
from tests.kubetest.helpers import Kube, filled, widget

KUBECTL = "/usr/bin/kubectl"
pytestmark = pytest.mark.skipif(not Path(KUBECTL).exists(), reason="kubectl is not installed")


def kubectl(server: ApiServerProcess, *args: str, stdin: str | None = None
            ) -> subprocess.CompletedProcess[str]:
    """Run kubectl against the test server."""
    return subprocess.run([KUBECTL, f"--kubeconfig={server.kubeconfig}", *args], input=stdin,
                          capture_output=True, text=True, timeout=30)


def test_scale_of_a_custom_resource_via_client(server: ApiServerProcess, kube: Kube,
                                               widgets: str, namespace: str) -> None:
    kube.post(f"{widgets}/namespaces/{namespace}/widgets", widget("w", replicas=2))
    kube.patch(f"{widgets}/namespaces/{namespace}/widgets/w/status",
               {"status": {"replicas": 1, "selector": "app=w"}})
    custom = kubernetes.client.CustomObjectsApi(server.api_client())
    # the parsed JSON, a dict (the client types the custom objects' calls as returning `object`)
    scale = cast(dict[str, Any], custom.get_namespaced_custom_object_scale(
        "kubetest.foresail.dev", "v1alpha1", namespace, "widgets", "w"))
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 2}
    assert scale["status"] == {"replicas": 1, "selector": "app=w"}
    custom.patch_namespaced_custom_object_scale(
        "kubetest.foresail.dev", "v1alpha1", namespace, "widgets", "w", {"spec": {"replicas": 4}})
    _, obj = kube.get(f"{widgets}/namespaces/{namespace}/widgets/w")
    assert obj["spec"]["replicas"] == 4 and obj["status"]["replicas"] == 1
    assert obj["metadata"]["generation"] == 2
    status, body = kube.patch(f"{widgets}/namespaces/{namespace}/widgets/w/scale",
                              {"spec": {"replicas": -2}})
    assert (status, body["reason"]) == (422, "Invalid")
    status, body = kube.patch(f"{widgets}/namespaces/{namespace}/widgets/w/scale", {"spec": {}}, "text/plain")
    assert (status, body["reason"]) == (415, "UnsupportedMediaType")
    assert "application/merge-patch+json" in body["message"], "names the patch types it takes, as for the object"


def test_scale_of_a_deployment_via_client(server: ApiServerProcess, namespace: str) -> None:
    apps = kubernetes.client.AppsV1Api(server.api_client())
    # a dict body works (the client's validate_call builds the model), though its types ask for the model
    apps.create_namespaced_deployment(namespace, {  # type: ignore[arg-type]
        "metadata": {"name": "d"}, "spec": {
            "replicas": 0, "selector": {"matchLabels": {"app": "d"}},
            "template": {"metadata": {"labels": {"app": "d"}},
                         "spec": {"containers": [{"name": "c", "image": "i:1"}]}}}})
    scale = apps.read_namespaced_deployment_scale("d", namespace)
    assert filled(scale.spec).replicas == 0 and filled(scale.status).selector == "app=d"
    apps.patch_namespaced_deployment_scale("d", namespace, {"spec": {"replicas": 2}})
    assert apps.read_namespaced_deployment("d", namespace).spec.replicas == 2
    stale = apps.read_namespaced_deployment_scale("d", namespace)
    # a dict body works (the client's validate_call builds the model), though its types ask for the model
    apps.replace_namespaced_deployment_scale("d", namespace, {  # type: ignore[arg-type]
        "metadata": {"name": "d", "resourceVersion": filled(stale.metadata).resource_version},
        "spec": {"replicas": 1}})
    with pytest.raises(kubernetes.client.ApiException) as error:
        # a dict body works (the client's validate_call builds the model), though its types ask for the model
        apps.replace_namespaced_deployment_scale("d", namespace, {  # type: ignore[arg-type]
            "metadata": {"name": "d", "resourceVersion": filled(stale.metadata).resource_version},
            "spec": {"replicas": 3}})
    assert error.value.status == 409
    assert apps.read_namespaced_deployment("d", namespace).spec.replicas == 1


def test_kubectl_scale_custom_resource_and_deployment(server: ApiServerProcess, kube: Kube,
                                                     widgets: str, namespace: str) -> None:
    kube.post(f"{widgets}/namespaces/{namespace}/widgets", widget("ks"))
    done = kubectl(server, "-n", namespace, "scale", "wd", "ks", "--replicas=3")
    assert done.returncode == 0, done.stderr
    assert kube.get(f"{widgets}/namespaces/{namespace}/widgets/ks")[1]["spec"]["replicas"] == 3
    kube.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", {
        "metadata": {"name": "kd"}, "spec": {
            "replicas": 0, "selector": {"matchLabels": {"app": "kd"}},
            "template": {"metadata": {"labels": {"app": "kd"}},
                         "spec": {"containers": [{"name": "c", "image": "i:1"}]}}}})
    done = kubectl(server, "-n", namespace, "scale", "deployment/kd", "--replicas=2")
    assert done.returncode == 0, done.stderr
    _, deployment = kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/kd")
    assert deployment["spec"]["replicas"] == 2


MANIFEST = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  level: "1"
---
apiVersion: kubetest.foresail.dev/v1alpha1
kind: Widget
metadata:
  name: applied
spec:
  model: tiny
  replicas: 2
"""


def test_kubectl_apply_get_delete(server: ApiServerProcess, kube: Kube, widgets: str,
                                  namespace: str, tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(MANIFEST)
    done = kubectl(server, "-n", namespace, "apply", "--validate=false", "-f", str(manifest))
    assert done.returncode == 0, done.stderr
    assert "configmap/settings created" in done.stdout
    assert "widget.kubetest.foresail.dev/applied created" in done.stdout
    manifest.write_text(MANIFEST.replace('level: "1"', 'level: "2"').replace(
        "replicas: 2", "replicas: 5"))
    done = kubectl(server, "-n", namespace, "apply", "--validate=false", "-f", str(manifest))
    assert done.returncode == 0, done.stderr
    assert "configmap/settings configured" in done.stdout
    assert kube.get(f"/api/v1/namespaces/{namespace}/configmaps/settings")[1]["data"] == {
        "level": "2"}
    done = kubectl(server, "-n", namespace, "get", "widgets", "-o", "json")
    assert done.returncode == 0, done.stderr
    items = json.loads(done.stdout)["items"]
    assert [(i["metadata"]["name"], i["spec"]["replicas"]) for i in items] == [("applied", 5)]
    done = kubectl(server, "-n", namespace, "get", "wd")
    assert done.returncode == 0 and "applied" in done.stdout, done.stderr
    done = kubectl(server, "-n", namespace, "get", "configmap", "missing")
    assert done.returncode != 0 and 'configmaps "missing" not found' in done.stderr
    done = kubectl(server, "-n", namespace, "delete", "-f", str(manifest))
    assert done.returncode == 0, done.stderr
    assert kube.get(f"{widgets}/namespaces/{namespace}/widgets/applied")[0] == 404


def test_kubectl_reports_validation_errors(server: ApiServerProcess, widgets: str,
                                           namespace: str) -> None:
    bad = MANIFEST.split("---")[1].replace("model: tiny", "model: Not Valid")
    done = kubectl(server, "-n", namespace, "apply", "--validate=false", "-f", "-", stdin=bad)
    assert done.returncode != 0
    assert 'The Widget "applied" is invalid: spec.model: Invalid value: "Not Valid"' in done.stderr


def test_kubectl_get_prints_server_side_columns(server: ApiServerProcess, kube: Kube,
                                                namespace: str) -> None:
    kube.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", {
        "metadata": {"name": "cols"}, "spec": {
            "replicas": 0, "selector": {"matchLabels": {"app": "cols"}},
            "template": {"metadata": {"labels": {"app": "cols"}},
                         "spec": {"containers": [{"name": "c", "image": "i:1"}]}}}})
    done = kubectl(server, "-n", namespace, "get", "deployments")
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()[:2]
    assert header.split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert row.split()[:2] == ["cols", "0/0"]


def test_protobuf_bodies_are_unsupported_media_type(server: ApiServerProcess,
                                                    namespace: str) -> None:
    done = kubectl(server, "-n", namespace, "create", "configmap", "pb", "--from-literal=a=b")
    assert done.returncode != 0 and "the body of the request was in an unknown format" in \
        done.stderr
