"""Discovery documents, as kubectl and the kubernetes client read them."""

from __future__ import annotations

from tests.kubetest.helpers import Kube


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
