"""CRUD, patches, resourceVersion, generation, subresources, finalizers and GC, over HTTP."""

from __future__ import annotations

import datetime
import urllib.parse
from typing import Any

import kubernetes
import pytest

from foresail.kubetest.testing import ApiServerProcess
from tests.kubetest.helpers import Kube, filled, wait_for, widget


def test_create_fills_server_managed_metadata(server: ApiServerProcess, namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(server.api_client())
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    # a dict body works (the client's validate_call builds the model), though its types ask for the model
    created = core.create_namespaced_config_map(namespace, {"metadata": {"name": "c1"},  # type: ignore[arg-type]
                                                            "data": {"k": "v"}})
    assert created is not None, "201 Created must carry the object"
    meta = created.metadata
    assert meta is not None
    assert meta.uid and len(meta.uid) == 36
    assert int(filled(meta.resource_version)) > 0
    assert filled(meta.creation_timestamp) >= before
    assert meta.generation == 1
    assert meta.namespace == namespace
    again = core.read_namespaced_config_map("c1", namespace)
    assert filled(again.metadata).uid == meta.uid and again.data == {"k": "v"}


def test_create_answers_201_and_generate_name(kube: Kube, namespace: str) -> None:
    status, obj = kube.post(f"/api/v1/namespaces/{namespace}/configmaps",
                            {"metadata": {"generateName": "gen-"}})
    assert status == 201
    assert obj["metadata"]["name"].startswith("gen-") and len(obj["metadata"]["name"]) == 9
    status, other = kube.post(f"/api/v1/namespaces/{namespace}/configmaps",
                              {"metadata": {"generateName": "gen-"}})
    assert status == 201 and other["metadata"]["name"] != obj["metadata"]["name"]


def test_create_twice_is_already_exists(kube: Kube, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    assert kube.post(path, {"metadata": {"name": "dup"}})[0] == 201
    status, body = kube.post(path, {"metadata": {"name": "dup"}})
    assert status == 409
    assert body["kind"] == "Status" and body["status"] == "Failure"
    assert body["reason"] == "AlreadyExists" and body["code"] == 409
    assert body["message"] == 'configmaps "dup" already exists'
    assert body["details"] == {"name": "dup", "kind": "configmaps"}, "a Status leaves out its empty fields (group)"


def test_create_with_a_resource_version_fails_in_storage(kube: Kube, namespace: str) -> None:
    """As the real storage refuses it: an error that is no Status of its own (500, no reason); a version it cannot
    parse, or 0, counts as none."""
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    status, body = kube.post(path, {"metadata": {"name": "x", "resourceVersion": "7"}})
    assert (status, body["message"], "reason" in body) == (
        500, "resourceVersion should not be set on objects to be created", False)
    assert kube.get(f"{path}/x")[0] == 404
    for index, version in enumerate(("0", "-1", "v7")):
        status, created = kube.post(path, {"metadata": {"name": f"rv{index}", "resourceVersion": version}})
        assert status == 201 and int(created["metadata"]["resourceVersion"]) > 0, (version, created)


def test_missing_namespace_and_object_are_not_found(kube: Kube) -> None:
    status, body = kube.post("/api/v1/namespaces/nowhere/configmaps", {"metadata": {"name": "x"}})
    assert (status, body["reason"]) == (404, "NotFound")
    assert body["message"] == 'namespaces "nowhere" not found'
    status, body = kube.get("/apis/apps/v1/namespaces/default/deployments/absent")
    assert (status, body["reason"]) == (404, "NotFound")
    assert body["message"] == 'deployments.apps "absent" not found'
    status, body = kube.get("/apis/nope.example.com/v1/things")
    assert status == 404 and body["kind"] == "Status"


def test_bad_bodies_are_bad_request(kube: Kube, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    status, body = kube.request("POST", path, b"{not json")
    assert (status, body["reason"]) == (400, "BadRequest")
    status, body = kube.post(path, {"apiVersion": "v1", "kind": "Secret",
                                    "metadata": {"name": "x"}})
    assert status == 400
    status, body = kube.post(path, {"metadata": {"name": "Not_A_Name"}})
    assert (status, body["reason"]) == (422, "Invalid")
    assert body["details"]["causes"][0]["field"] == "metadata.name"
    status, body = kube.post(path, {"metadata": {"name": "x", "labels": {"a": "b/c"}}})
    assert (status, body["details"]["causes"][0]["field"]) == (422, "metadata.labels[a]")


@pytest.mark.parametrize("plural, name, message", [
    ("services", "1-llm", "DNS-1035 label"), ("services", "llama-3.1-8b", "DNS-1035 label"),
    ("services", "a" * 64, "no more than 63 characters"), ("configmaps", "a" * 254, "no more than 253 characters"),
    ("configmaps", "-x", "RFC 1123 subdomain"), ("services", "llama-3-1-8b", None), ("configmaps", "1.llm", None)])
def test_names_follow_each_kinds_rule(kube: Kube, namespace: str, plural: str, name: str, message: str | None) -> None:
    """As the API server names them: a Service's name is a DNS-1035 label (a letter first, no dot, 63 at most),
    most other kinds' an RFC 1123 subdomain (dots, a digit first, 253 at most)."""
    body: dict[str, dict] = {"metadata": {"name": name}}
    if plural == "services":
        body["spec"] = {"ports": [{"port": 80}]}
    status, got = kube.post(f"/api/v1/namespaces/{namespace}/{plural}", body)
    if message is None:
        assert status == 201, got
    else:
        assert status == 422 and got["details"]["causes"][0]["field"] == "metadata.name", got
        assert message in got["details"]["causes"][0]["message"]


def test_put_with_stale_resource_version_is_conflict(kube: Kube, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    _, obj = kube.post(path, {"metadata": {"name": "cm"}, "data": {"a": "1"}})
    stale = dict(obj, data={"a": "2"})
    status, updated = kube.put(f"{path}/cm", stale)
    assert status == 200 and updated["data"] == {"a": "2"}
    assert int(updated["metadata"]["resourceVersion"]) > int(obj["metadata"]["resourceVersion"])
    status, body = kube.put(f"{path}/cm", dict(obj, data={"a": "3"}))
    assert (status, body["reason"]) == (409, "Conflict")
    assert "the object has been modified" in body["message"]
    status, body = kube.patch(f"{path}/cm", {"metadata": {
        "resourceVersion": obj["metadata"]["resourceVersion"]}, "data": {"a": "4"}})
    assert (status, body["reason"]) == (409, "Conflict")
    assert kube.get(f"{path}/cm")[1]["data"] == {"a": "2"}


def test_resource_versions_increase_globally_and_lists_carry_one(kube: Kube,
                                                                namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    versions = [int(kube.post(path, {"metadata": {"name": f"r{i}"}})[1]["metadata"][
        "resourceVersion"]) for i in range(3)]
    assert versions == sorted(set(versions))
    _, listed = kube.get(path)
    assert listed["kind"] == "ConfigMapList" and listed["apiVersion"] == "v1"
    assert int(listed["metadata"]["resourceVersion"]) >= versions[-1]
    assert [i["metadata"]["name"] for i in listed["items"]] == ["r0", "r1", "r2"]


def test_no_op_update_keeps_resource_version(kube: Kube, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    _, obj = kube.post(path, {"metadata": {"name": "same"}, "data": {"a": "1"}})
    _, patched = kube.patch(f"{path}/same", {"data": {"a": "1"}})
    assert patched["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]


def test_merge_json_strategic_and_apply_patches(kube: Kube, namespace: str) -> None:
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    deployment = {"metadata": {"name": "p"}, "spec": {
        "replicas": 0, "selector": {"matchLabels": {"app": "p"}},
        "template": {"metadata": {"labels": {"app": "p"}}, "spec": {"containers": [
            {"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]},
            {"name": "b", "image": "b:1"}]}}}}
    assert kube.post(path, deployment)[0] == 201
    status, obj = kube.patch(f"{path}/p", {"spec": {"template": {"spec": {"containers": [
        {"name": "a", "env": [{"name": "Y", "value": "2"}]}]}}}},
        "application/strategic-merge-patch+json")
    containers = obj["spec"]["template"]["spec"]["containers"]
    assert status == 200 and [c["name"] for c in containers] == ["a", "b"]
    assert [e["name"] for e in containers[0]["env"]] == ["X", "Y"]
    status, obj = kube.patch(f"{path}/p", {"metadata": {"labels": {"tier": "x"}}})
    assert status == 200 and obj["metadata"]["labels"] == {"tier": "x"}
    status, obj = kube.patch(f"{path}/p", {"metadata": {"labels": {"tier": None}}})
    assert status == 200 and "tier" not in (obj["metadata"].get("labels") or {})
    status, obj = kube.patch(f"{path}/p", [
        {"op": "test", "path": "/spec/replicas", "value": 0},
        {"op": "replace", "path": "/spec/replicas", "value": 2}], "application/json-patch+json")
    assert status == 200 and obj["spec"]["replicas"] == 2
    status, body = kube.patch(f"{path}/p", [{"op": "test", "path": "/spec/replicas",
                                             "value": 99}], "application/json-patch+json")
    assert (status, body["reason"]) == (422, "Invalid")
    # as the real server words it (NewGenericServerResponse): a fixed message, json-patch's reason in a cause
    assert body["message"] == "the server rejected our request due to an error in our request"
    assert body["details"] == {"causes": [{"reason": "UnexpectedServerResponse",
                                           "message": "testing value /spec/replicas failed: test failed"}]}
    status, body = kube.patch(f"{path}/p", [{"op": "replace", "path": "/spec/paused", "value": True}],
                              "application/json-patch+json")
    assert (status, body["message"]) == (422, "the server rejected our request due to an error in our request")
    assert body["details"]["causes"][0]["message"] == (
        "replace operation does not apply: doc is missing path: /spec/paused: missing value"), "not the object's dump"
    status, body = kube.request(
        "PATCH", f"{path}/p?fieldManager=test", b"spec:\n  replicas: 0\n",
        "application/apply-patch+yaml")
    assert status == 200 and body["spec"]["replicas"] == 0
    status, body = kube.request(
        "PATCH", f"/api/v1/namespaces/{namespace}/configmaps/applied?fieldManager=test",
        b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  k: v\n",
        "application/apply-patch+yaml")
    assert status == 201 and body["data"] == {"k": "v"}
    status, body = kube.patch(f"{path}/p", {"spec": {}}, "text/plain")
    assert status == 415


@pytest.mark.parametrize("body,message", [
    (b"- a\n", "patch body must be a JSON object"),
    (b"just text\n", "patch body must be a JSON object"),
    (b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: other\n",
     "the name of the object (other) does not match the name on the URL (new)"),
])
def test_an_apply_that_would_create_checks_its_body(kube: Kube, namespace: str, body: bytes, message: str) -> None:
    """An apply patch of an object not there yet: a body that is no object, or that names another object, is a
    400 BadRequest (not an internal error, nor an object of the body's name)."""
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    status, answer = kube.request("PATCH", f"{path}/new?fieldManager=test", body, "application/apply-patch+yaml")
    assert (status, answer["reason"], answer["message"]) == (400, "BadRequest", message)
    assert kube.get(path)[1]["items"] == []


def test_a_dry_run_is_refused_and_changes_nothing(kube: Kube, namespace: str) -> None:
    """dryRun is not emulated: a request with it (kubectl --dry-run=server, kubectl diff) is a 400, never carried
    out."""
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    assert kube.post(path, {"metadata": {"name": "kept"}, "data": {"k": "1"}})[0] == 201
    for method, url, body in (
            ("POST", f"{path}?dryRun=All", {"metadata": {"name": "new"}}),
            ("PATCH", f"{path}/kept?dryRun=All", {"data": {"k": "2"}}),
            ("DELETE", f"{path}/kept?dryRun=All", None),
            ("DELETE", f"{path}/kept", {"apiVersion": "v1", "kind": "DeleteOptions", "dryRun": ["All"]}),
            ("DELETE", f"{path}?dryRun=All", None)):
        status, answer = kube.request(method, url, body, "application/merge-patch+json" if method == "PATCH"
                                      else "application/json")
        assert (status, answer.get("message")) == (400, "dryRun is not supported by the Kubernetes API test server")
    assert [(o["metadata"]["name"], o["data"]) for o in kube.get(path)[1]["items"]] == [("kept", {"k": "1"})]


def test_generation_bumps_only_on_spec_changes(kube: Kube, widgets: str, namespace: str) -> None:
    path = f"{widgets}/namespaces/{namespace}/widgets"
    _, obj = kube.post(path, widget("gen"))
    assert obj["metadata"]["generation"] == 1
    _, obj = kube.patch(f"{path}/gen", {"metadata": {"labels": {"a": "b"}}})
    assert obj["metadata"]["generation"] == 1
    _, obj = kube.patch(f"{path}/gen/status", {"status": {"phase": "Ready"}})
    assert obj["metadata"]["generation"] == 1
    _, obj = kube.patch(f"{path}/gen", {"spec": {"replicas": 3}})
    assert obj["metadata"]["generation"] == 2


def test_an_unconditional_put_of_a_custom_resource_is_invalid(kube: Kube, widgets: str, namespace: str) -> None:
    path = f"{widgets}/namespaces/{namespace}/widgets"
    _, obj = kube.post(path, widget("cond"))
    unconditional = {**obj, "metadata": {"name": "cond"}, "spec": {**obj["spec"], "replicas": 3}}
    for target in (f"{path}/cond", f"{path}/cond/status"):
        status, body = kube.put(target, unconditional)
        assert (status, body["reason"]) == (422, "Invalid"), body
        assert body["message"] == ('widgets.kubetest.foresail.dev "cond" is invalid: metadata.resourceVersion: '
                                   "Invalid value: 0x0: must be specified for an update")
        assert body["details"]["causes"] == [{"reason": "FieldValueInvalid", "field": "metadata.resourceVersion",
                                              "message": "Invalid value: 0x0: must be specified for an update"}]
    assert kube.get(f"{path}/cond")[1]["spec"]["replicas"] == 1
    status, put = kube.put(f"{path}/cond", {**unconditional, "metadata": obj["metadata"]})
    assert status == 200 and put["spec"]["replicas"] == 3
    status, scale = kube.put(f"{path}/cond/scale", {"spec": {"replicas": 4}})
    assert status == 200 and scale["spec"]["replicas"] == 4, "the scale subresource allows it"
    assert kube.patch(f"{path}/cond", {"spec": {"replicas": 5}})[0] == 200
    cm_path = f"/api/v1/namespaces/{namespace}/configmaps"
    kube.post(cm_path, {"metadata": {"name": "cm"}})
    assert kube.put(f"{cm_path}/cm", {"metadata": {"name": "cm"}, "data": {"a": "1"}})[0] == 200, \
        "built-in kinds allow it"


def test_status_subresource_isolation(kube: Kube, widgets: str, namespace: str) -> None:
    path = f"{widgets}/namespaces/{namespace}/widgets"
    status, obj = kube.post(path, {**widget("iso"), "status": {"phase": "Ignored"}})
    assert status == 201 and "status" not in obj, "status is dropped on create"
    _, obj = kube.patch(f"{path}/iso", {"spec": {"replicas": 2}, "status": {"phase": "Main"}})
    assert obj["spec"]["replicas"] == 2 and "status" not in obj
    _, obj = kube.patch(f"{path}/iso/status", {"spec": {"replicas": 5},
                                               "status": {"phase": "Sub"}})
    assert obj["spec"]["replicas"] == 2 and obj["status"]["phase"] == "Sub"
    obj["spec"]["replicas"], obj["status"]["phase"] = 7, "Put"
    _, put = kube.put(f"{path}/iso/status", obj)
    assert put["spec"]["replicas"] == 2 and put["status"]["phase"] == "Put"
    status, body = kube.patch(f"{path}/iso/status", {"status": {"replicas": -1}})
    assert (status, body["details"]["causes"][0]["field"]) == (422, "status.replicas")


def test_built_in_objects_are_created_with_an_empty_status(kube: Kube, namespace: str) -> None:
    status, svc = kube.post(f"/api/v1/namespaces/{namespace}/services", {
        "metadata": {"name": "empty-status"}, "spec": {"ports": [{"port": 80}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}}})
    assert status == 201, svc
    assert svc["status"] == {}, "the status sent is dropped; a Go struct is encoded even when empty"


def test_strategic_merge_patch_is_refused_for_custom_resources(kube: Kube, widgets: str,
                                                               namespace: str) -> None:
    path = f"{widgets}/namespaces/{namespace}/widgets"
    kube.post(path, widget("smp"))
    status, body = kube.patch(f"{path}/smp", {"spec": {"replicas": 2}},
                              "application/strategic-merge-patch+json")
    assert (status, body["reason"]) == (415, "UnsupportedMediaType")


def test_finalizers_keep_object_until_removed(kube: Kube, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    kube.post(path, {"metadata": {"name": "fin", "finalizers": ["kubetest/hold"]}})
    status, obj = kube.delete(f"{path}/fin")
    assert status == 200 and obj["metadata"]["deletionTimestamp"]
    status, obj = kube.get(f"{path}/fin")
    assert status == 200 and obj["metadata"]["deletionTimestamp"]
    status, body = kube.patch(f"{path}/fin", {"metadata": {"finalizers": [
        "kubetest/hold", "kubetest/more"]}})
    assert status == 422
    assert kube.patch(f"{path}/fin", {"metadata": {"finalizers": None}})[0] == 200
    assert kube.get(f"{path}/fin")[0] == 404


def test_delete_preconditions(kube: Kube, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    kube.post(path, {"metadata": {"name": "pre"}})
    status, body = kube.delete(f"{path}/pre", {"preconditions": {"uid": "not-the-uid"}})
    assert (status, body["reason"]) == (409, "Conflict")
    assert kube.delete(f"{path}/pre")[0] == 200


def test_garbage_collection_of_dependents(kube: Kube, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    _, owner = kube.post(path, {"metadata": {"name": "owner"}})
    _, other = kube.post(path, {"metadata": {"name": "other-owner"}})

    def ref(obj: dict) -> dict:
        return {"apiVersion": "v1", "kind": "ConfigMap", "name": obj["metadata"]["name"],
                "uid": obj["metadata"]["uid"]}

    kube.post(path, {"metadata": {"name": "child", "ownerReferences": [ref(owner)]}})
    kube.post(path, {"metadata": {"name": "grandchild", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "child",
         "uid": kube.get(f"{path}/child")[1]["metadata"]["uid"]}]}})
    kube.post(path, {"metadata": {"name": "shared", "ownerReferences": [ref(owner), ref(other)]}})
    assert kube.delete(f"{path}/owner")[0] == 200
    assert kube.get(f"{path}/child")[0] == 404
    assert kube.get(f"{path}/grandchild")[0] == 404
    status, shared = kube.get(f"{path}/shared")
    assert status == 200 and [r["name"] for r in shared["metadata"]["ownerReferences"]] == [
        "other-owner"]
    kube.post(path, {"metadata": {"name": "orphan", "ownerReferences": [ref(other)]}})
    assert kube.request("DELETE", f"{path}/other-owner?propagationPolicy=Orphan")[0] == 200
    status, orphan = kube.get(f"{path}/orphan")
    assert status == 200 and not orphan["metadata"].get("ownerReferences")


def _owned_config_maps(kube: Kube, namespace: str, owner: str, **owner_meta: Any) -> str:
    """ConfigMap ``owner`` and its dependent ``<owner>-child``; returns their collection's path."""
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    status, created = kube.post(path, {"metadata": {"name": owner, **owner_meta}})
    assert status == 201, created
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": created["metadata"]["uid"]}
    assert kube.post(path, {"metadata": {"name": f"{owner}-child", "ownerReferences": [ref]}})[0] == 201
    return path


def test_an_orphan_delete_of_an_owner_held_by_finalizers_releases_its_dependents(kube: Kube,
                                                                                namespace: str) -> None:
    path = _owned_config_maps(kube, namespace, "held", finalizers=["kubetest/hold"])
    status, owner = kube.request("DELETE", f"{path}/held?propagationPolicy=Orphan")
    assert status == 200 and owner["metadata"]["deletionTimestamp"]
    status, child = kube.get(f"{path}/held-child")
    assert status == 200 and "ownerReferences" not in child["metadata"], "released while the owner stays"
    assert kube.patch(f"{path}/held", {"metadata": {"finalizers": None}})[0] == 200
    assert kube.get(f"{path}/held")[0] == 404
    assert kube.get(f"{path}/held-child")[0] == 200, "the owner's removal leaves the released dependent"


def test_a_collection_delete_passes_its_options_to_each_delete(kube: Kube, namespace: str) -> None:
    path = _owned_config_maps(kube, namespace, "a", labels={"role": "owner"})
    _owned_config_maps(kube, namespace, "b", labels={"role": "owner"})
    status, deleted = kube.request("DELETE", f"{path}?labelSelector=role%3Downer&propagationPolicy=Orphan")
    assert status == 200 and [o["metadata"]["name"] for o in deleted["items"]] == ["a", "b"]
    assert [o["metadata"]["name"] for o in kube.get(path)[1]["items"]] == ["a-child", "b-child"]
    pods = f"/api/v1/namespaces/{namespace}/pods"
    pod = {"metadata": {"name": "bound"}, "spec": {"nodeName": "elsewhere", "containers": [
        {"name": "main", "image": "nginx:1.27"}]}}
    assert kube.post(pods, pod)[0] == 201
    status, deleted = kube.delete(pods, {"gracePeriodSeconds": 7})
    assert status == 200 and [o["metadata"]["deletionGracePeriodSeconds"] for o in deleted["items"]] == [7]


@pytest.mark.parametrize(("query", "body", "kept"), [
    ("?orphanDependents=true", None, True),
    ("", {"orphanDependents": True}, True),
    ("?orphanDependents=false", None, False),
    ("", {"orphanDependents": False}, False),
])
def test_the_deprecated_orphan_dependents_option(kube: Kube, namespace: str, query: str, body: dict | None,
                                                 kept: bool) -> None:
    path = _owned_config_maps(kube, namespace, "owner")
    assert kube.delete(f"{path}/owner{query}", body)[0] == 200
    assert kube.get(f"{path}/owner-child")[0] == (200 if kept else 404)


@pytest.mark.parametrize(("query", "body", "reason", "message"), [
    ("?propagationPolicy=Orphan&orphanDependents=true", None, "FieldValueInvalid",
     'Invalid value: "Orphan": orphanDependents and deletionPropagation cannot be both set'),
    ("", {"propagationPolicy": "Background", "orphanDependents": False}, "FieldValueInvalid",
     'Invalid value: "Background": orphanDependents and deletionPropagation cannot be both set'),
    ("?propagationPolicy=Sideways", None, "FieldValueNotSupported",
     'Unsupported value: "Sideways": supported values: "Foreground", "Background", "Orphan", "nil"'),
])
def test_invalid_delete_options_are_refused(kube: Kube, namespace: str, query: str, body: dict | None,
                                            reason: str, message: str) -> None:
    path = _owned_config_maps(kube, namespace, "owner")
    for target in (f"{path}/owner{query}", f"{path}{query}"):
        status, refused = kube.delete(target, body)
        assert (status, refused["reason"]) == (422, "Invalid"), refused
        assert refused["details"]["causes"] == [{"reason": reason, "message": message, "field": "propagationPolicy"}]
    assert len(kube.get(path)[1]["items"]) == 2, "nothing deleted"


def test_delete_options_that_are_no_object_are_a_bad_request(kube: Kube, namespace: str) -> None:
    path = _owned_config_maps(kube, namespace, "owner")
    status, refused = kube.delete(f"{path}/owner", ["not", "options"])
    assert (status, refused["reason"]) == (400, "BadRequest")
    assert kube.get(f"{path}/owner")[0] == 200


def test_a_delete_that_marks_an_object_for_deletion_bumps_its_generation(kube: Kube, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    kube.post(path, {"metadata": {"name": "marked", "finalizers": ["kubetest/hold"]}})
    status, marked = kube.delete(f"{path}/marked")
    assert status == 200 and marked["metadata"]["deletionTimestamp"] and marked["metadata"]["generation"] == 2
    status, again = kube.delete(f"{path}/marked")
    assert status == 200 and again["metadata"] == marked["metadata"], "only the first mark counts"


def test_namespace_deletion_removes_its_objects(kube: Kube) -> None:
    assert kube.post("/api/v1/namespaces", {"metadata": {"name": "doomed"}})[0] == 201
    kube.post("/api/v1/namespaces/doomed/configmaps", {"metadata": {"name": "a"}})
    kube.post("/api/v1/namespaces/doomed/configmaps",
              {"metadata": {"name": "held", "finalizers": ["kubetest/hold"]}})
    status, ns = kube.delete("/api/v1/namespaces/doomed")
    assert status == 200 and ns["status"]["phase"] == "Terminating"
    assert kube.get("/api/v1/namespaces/doomed/configmaps/a")[0] == 404
    status, body = kube.post("/api/v1/namespaces/doomed/configmaps", {"metadata": {"name": "b"}})
    assert (status, body["reason"]) == (403, "Forbidden")
    assert body["message"] == ('configmaps "b" is forbidden: unable to create new content in namespace doomed '
                               "because it is being terminated")
    assert body["details"] == {"name": "b", "kind": "configmaps", "causes": [{
        "reason": "NamespaceTerminating", "message": "namespace doomed is being terminated",
        "field": "metadata.namespace"}]}
    status, body = kube.post("/apis/apps/v1/namespaces/doomed/deployments", {"metadata": {"generateName": "d-"}})
    assert (status, body["message"]) == (403, "deployments.apps is forbidden: unable to create new content in "
                                              "namespace doomed because it is being terminated")
    kube.patch("/api/v1/namespaces/doomed/configmaps/held", {"metadata": {"finalizers": None}})
    wait_for(lambda: kube.get("/api/v1/namespaces/doomed")[0] == 404)


def test_cluster_scoped_and_all_namespaces_lists(kube: Kube, namespace: str) -> None:
    kube.post(f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": "everywhere"}})
    _, listed = kube.get("/api/v1/configmaps")
    assert any(i["metadata"]["namespace"] == namespace for i in listed["items"])
    status, body = kube.post("/apis/rbac.authorization.k8s.io/v1/clusterroles",
                             {"metadata": {"name": f"role-{namespace}", "namespace": "ignored"},
                              "rules": []})
    assert status == 201 and "namespace" not in body["metadata"]


@pytest.mark.parametrize("selector,expected", [
    ("app=web", ["a", "b"]), ("app==web,tier!=db", ["a"]), ("tier in (db,cache)", ["b", "c"]),
    ("tier notin (db)", ["a", "c"]), ("tier", ["b", "c"]), ("!tier", ["a"]),
])
def test_label_selectors_on_list(kube: Kube, namespace: str, selector: str,
                                 expected: list[str]) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    for name, labels in (("a", {"app": "web"}), ("b", {"app": "web", "tier": "db"}),
                         ("c", {"app": "api", "tier": "cache"})):
        kube.post(path, {"metadata": {"name": name, "labels": labels}})
    core = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(
        _configuration(kube.url)))
    listed = core.list_namespaced_config_map(namespace, label_selector=selector)
    assert [filled(i.metadata).name for i in listed.items] == expected


@pytest.mark.parametrize("selector,expected", [
    ("tier in(db)", ["b"]), ("tier notin(db)", ["a", "c"]),  # no space needed before the parenthesis
    ("tier in ()", ["c"]), ("tier in (db,)", ["b", "c"]),  # an empty value in a set is the empty string
    ("app=web,", "found '', expected: identifier after ','"),
    (",app=web", "found ',', expected: !, identifier, or 'end of string'"),
    ("app=web,,tier", "found ',', expected: identifier after ','"),
])
def test_label_selectors_parse_as_the_real_parser_does(kube: Kube, namespace: str, selector: str,
                                                       expected: list[str] | str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    for name, labels in (("a", {"app": "web"}), ("b", {"tier": "db"}), ("c", {"tier": ""})):
        kube.post(path, {"metadata": {"name": name, "labels": labels}})
    status, body = kube.get(f"{path}?labelSelector={urllib.parse.quote(selector)}")
    if isinstance(expected, str):
        assert (status, body["reason"], body["message"]) == (400, "BadRequest", expected)
    else:
        assert (status, [i["metadata"]["name"] for i in body["items"]]) == (200, expected)


def _configuration(url: str) -> kubernetes.client.Configuration:
    configuration = kubernetes.client.Configuration()
    configuration.host = url
    return configuration


def test_field_selectors_on_list(kube: Kube, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/events"
    for name, involved in (("e1", "web"), ("e2", "db")):
        kube.post(path, {"metadata": {"name": name}, "involvedObject": {"kind": "Pod",
                                                                         "name": involved}})
    _, listed = kube.get(f"{path}?fieldSelector=involvedObject.name%3Dweb")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["e1"]
    _, listed = kube.get(f"/api/v1/events?fieldSelector=metadata.namespace%3D{namespace},"
                         "metadata.name!%3De1")
    assert [i["metadata"]["name"] for i in listed["items"]] == ["e2"]
    status, body = kube.get(f"/api/v1/namespaces/{namespace}/configmaps?fieldSelector="
                            "spec.nothing%3Dx")
    assert status == 400 and "field label not supported" in body["message"]


@pytest.mark.parametrize("method,suffix", [("POST", ""), ("PUT", "/w"), ("PATCH", "/w"), ("DELETE", "")])
def test_a_watch_path_serves_only_get(kube: Kube, namespace: str, method: str, suffix: str) -> None:
    """The real server routes /watch/ paths for GET only: any other verb there is a 405, and changes nothing."""
    path = f"/apis/apps/v1/watch/namespaces/{namespace}/deployments{suffix}"
    status, body = kube.request(method, path, {"metadata": {"name": "w"}},
                                "application/merge-patch+json" if method == "PATCH" else "application/json")
    assert (status, body["reason"]) == (405, "MethodNotAllowed")
    assert kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments")[1]["items"] == []


def test_a_scales_selector_is_written_as_the_real_server_writes_it(kube: Kube, namespace: str) -> None:
    """Requirements sorted by key (matchLabels and matchExpressions together) and a set's values sorted, as
    Go's LabelSelectorAsSelector(...).String(): what an HPA or KEDA reads from the Scale."""
    labels = {"zone": "a", "app": "d", "tier": "x"}
    status, body = kube.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", {
        "metadata": {"name": "d"}, "spec": {
            "selector": {"matchLabels": {"zone": "a", "app": "d"}, "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["y", "x"]},
                {"key": "canary", "operator": "DoesNotExist"}]},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "i:1"}]}}}})
    assert status == 201, body
    scale = kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/d/scale")[1]
    assert scale["status"]["selector"] == "app=d,!canary,tier in (x,y),zone=a"


def test_a_put_with_another_objects_uid_is_a_failed_precondition(kube: Kube, namespace: str) -> None:
    """The real server takes a PUT's metadata.uid as a precondition (an object deleted and created again under the
    same name is not overwritten by an update meant for the old one), and a patch may not change it."""
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    _, old = kube.post(path, {"metadata": {"name": "u"}, "data": {"v": "old"}})
    assert kube.delete(f"{path}/u")[0] == 200
    _, new = kube.post(path, {"metadata": {"name": "u"}, "data": {"v": "new"}})
    status, body = kube.put(f"{path}/u", {"metadata": {"name": "u", "uid": old["metadata"]["uid"]},
                                          "data": {"v": "stale"}})
    assert (status, body["reason"]) == (409, "Conflict")
    assert body["message"] == (f"Precondition failed: UID in precondition: {old['metadata']['uid']}, "
                               f"UID in object meta: {new['metadata']['uid']}")
    status, body = kube.patch(f"{path}/u", {"metadata": {"uid": old["metadata"]["uid"]}})
    assert (status, list(_field_causes(body))) == (422, ["metadata.uid"])
    assert kube.get(f"{path}/u")[1]["data"] == {"v": "new"}
    status, body = kube.put(f"{path}/u", {"metadata": {"name": "u", "uid": new["metadata"]["uid"]}, "data": {"v": "2"}})
    assert (status, body["data"]) == (200, {"v": "2"})


def _field_causes(body: dict[str, Any]) -> dict[str, str]:
    return {c["field"]: c["message"] for c in body["details"]["causes"]}


def test_watch_on_one_objects_path_is_a_get(kube: Kube, namespace: str) -> None:
    """?watch on an object's path is a get on the real server (its RequestInfo makes a watch of a collection
    only); the deprecated /watch/ path still watches the one object."""
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    kube.post(path, {"metadata": {"name": "one"}})
    kube.post(path, {"metadata": {"name": "other"}})
    status, body = kube.get(f"{path}/one?watch=true&timeoutSeconds=1")
    assert (status, body["kind"], body["metadata"]["name"]) == (200, "ConfigMap", "one")
    events = list(kube.watch(f"/api/v1/watch/namespaces/{namespace}/configmaps/one?timeoutSeconds=1"))
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "one")]
