"""Discovery documents, as kubectl and the kubernetes client read them."""

from __future__ import annotations

import kubernetes

from foresail.kubetest.testing import ApiServerProcess
from tests.kubetest.helpers import Kube, filled


def test_version_and_core_group(kube: Kube) -> None:
    status, version = kube.get("/version")
    assert status == 200 and (version["major"], version["minor"]) == ("1", "32")
    _, core = kube.get("/api")
    assert core["kind"] == "APIVersions" and core["versions"] == ["v1"]
    _, resources = kube.get("/api/v1")
    assert resources["kind"] == "APIResourceList" and resources["groupVersion"] == "v1"
    by_name = {r["name"]: r for r in resources["resources"]}
    assert by_name["namespaces"]["namespaced"] is False
    assert by_name["pods"]["shortNames"] == ["po"] and by_name["pods"]["singularName"] == "pod"
    assert "watch" in by_name["configmaps"]["verbs"]
    assert set(by_name["pods/status"]["verbs"]) == {"get", "patch", "update"}


def test_groups_and_subresources(kube: Kube) -> None:
    _, groups = kube.get("/apis")
    names = {g["name"]: g for g in groups["groups"]}
    for group in ("apps", "events.k8s.io", "coordination.k8s.io", "apiextensions.k8s.io",
                  "rbac.authorization.k8s.io", "networking.k8s.io", "policy"):
        assert names[group]["preferredVersion"]["version"] == "v1"
    _, apps = kube.get("/apis/apps/v1")
    by_name = {r["name"]: r for r in apps["resources"]}
    assert by_name["deployments"]["kind"] == "Deployment"
    assert by_name["deployments/scale"]["kind"] == "Scale"
    assert by_name["deployments/scale"]["group"] == "autoscaling"
    assert "deployments/status" in by_name
    assert kube.get("/apis/apps")[1]["kind"] == "APIGroup"
    assert kube.get("/apis/nothing.example.com/v1")[0] == 404


def test_registered_crd_is_discoverable(kube: Kube, widgets: str) -> None:
    _, groups = kube.get("/apis")
    group = next(g for g in groups["groups"] if g["name"] == "kubetest.foresail.dev")
    assert group["versions"] == [{"groupVersion": "kubetest.foresail.dev/v1alpha1",
                                  "version": "v1alpha1"}]
    _, resources = kube.get(widgets)
    by_name = {r["name"]: r for r in resources["resources"]}
    assert by_name["widgets"]["shortNames"] == ["wd"]
    assert by_name["widgets"]["namespaced"] is True
    assert by_name["widgets"]["singularName"] == "widget"
    assert {"widgets/status", "widgets/scale"} <= set(by_name)


def test_endpointslices_are_served_and_listed_by_service_name(server: ApiServerProcess, namespace: str) -> None:
    """The activator reads a Service's ready pods from its EndpointSlices, by the label the
    EndpointSlice controller sets; the kubernetes client's own model must read them back."""
    discovery = kubernetes.client.DiscoveryV1Api(server.api_client())
    for service, suffix, port in (("chat", "a1b2c", 8000), ("chat", "d3f4g", 8001), ("other", "h5j6k", 8000)):
        # a dict body works (the client's validate_call builds the model), though its types ask for the model
        discovery.create_namespaced_endpoint_slice(namespace, {  # type: ignore[arg-type]
            "metadata": {"name": f"{service}-{suffix}", "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": True}}]})
    listed = discovery.list_namespaced_endpoint_slice(namespace, label_selector="kubernetes.io/service-name=chat")
    assert sorted(filled(filled(s.metadata).name) for s in listed.items) == ["chat-a1b2c", "chat-d3f4g"]
    assert {filled(s.ports)[0].port for s in listed.items} == {8000, 8001}
    assert filled(filled(listed.items[0].endpoints)[0].conditions).ready is True
    _, resources = Kube(server.url).get("/apis/discovery.k8s.io/v1")
    assert {r["name"]: r["kind"] for r in resources["resources"]} == {"endpointslices": "EndpointSlice"}
