"""Admission: CRD schemas (types, required, enum, bounds, pattern, CEL, defaults, pruning),
CRD checks, and the built-in objects' schemas."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.kubetest.helpers import WIDGET_CRD, Kube, widget


def _causes(body: dict[str, Any]) -> dict[str, str]:
    return {c["field"]: c["message"] for c in body["details"]["causes"]}


@pytest.mark.parametrize("spec,field,reason,message_part", [
    ({"replicas": "two"}, "spec.replicas", "FieldValueTypeInvalid", "must be of type integer"),
    ({"mode": "slow"}, "spec.mode", "FieldValueNotSupported", 'supported values: "fast", '
                                                              '"cheap"'),
    ({"replicas": -1}, "spec.replicas", "FieldValueInvalid", "greater than or equal to 0"),
    ({"maxReplicas": 9}, "spec.maxReplicas", "FieldValueInvalid", "less than or equal to 8"),
    ({"model": "Has Spaces"}, "spec.model", "FieldValueInvalid", "should match"),
    # Go's `$` ends the text; Python's also matches before a final newline
    ({"model": "abc\n"}, "spec.model", "FieldValueInvalid", "should match"),
    ({"model": "x" * 21}, "spec.model", "FieldValueTooLong", "may not be more than 20"),
    ({"tags": ["a", "b", "c"]}, "spec.tags", "FieldValueTooMany", "must have at most 2 items"),
    ({"port": 1.5}, "spec.port", "FieldValueTypeInvalid", "integer or string"),
    # past int64 the real server's JSON decoder reads a float (here, CEL overflowed: a 500)
    ({"minReplicas": 1, "maxReplicas": 10**30}, "spec.maxReplicas", "FieldValueTypeInvalid",
     'must be of type integer: "number"'),
    # a map's key joins the path with a dot, as the real server writes it (not as [key])
    ({"labels": {"team": 1}}, "spec.labels.team", "FieldValueTypeInvalid", "spec.labels.team in body must be "
                                                                          "of type string"),
    ({"minReplicas": 5, "maxReplicas": 3}, "spec.minReplicas", "FieldValueInvalid",
     "Invalid value: 5: must be less than or equal to maxReplicas"),
])
def test_invalid_custom_resources_are_refused_with_causes(
        kube: Kube, widgets: str, namespace: str, spec: dict[str, Any], field: str, reason: str,
        message_part: str) -> None:
    status, body = kube.post(f"{widgets}/namespaces/{namespace}/widgets", widget("bad", **spec))
    assert (status, body["reason"]) == (422, "Invalid"), body
    causes = [c for c in body["details"]["causes"] if c["field"] == field]
    assert causes and causes[0]["reason"] == reason, body
    assert message_part in causes[0]["message"]
    assert body["message"].startswith('Widget.kubetest.foresail.dev "bad" is invalid: ')
    assert body["details"]["kind"] == "Widget"
    assert body["details"]["group"] == "kubetest.foresail.dev"


def test_cel_message_matches_the_real_servers_shape(kube: Kube, widgets: str,
                                                    namespace: str) -> None:
    _, body = kube.post(f"{widgets}/namespaces/{namespace}/widgets",
                        widget("bad", minReplicas=5, maxReplicas=3))
    assert body["message"] == ('Widget.kubetest.foresail.dev "bad" is invalid: spec.minReplicas: '
                               "Invalid value: 5: must be less than or equal to maxReplicas")


def test_missing_required_field_and_several_causes(kube: Kube, widgets: str,
                                                   namespace: str) -> None:
    obj = widget("bad", replicas="x", mode="slow")
    del obj["spec"]["model"]
    status, body = kube.post(f"{widgets}/namespaces/{namespace}/widgets", obj)
    assert status == 422
    causes = _causes(body)
    assert causes["spec.model"] == "Required value"
    assert {"spec.replicas", "spec.mode"} <= set(causes)
    assert body["message"].count(", ") >= 2 and "[" in body["message"]


def test_transition_rule_with_old_self(kube: Kube, widgets: str, namespace: str) -> None:
    path = f"{widgets}/namespaces/{namespace}/widgets"
    assert kube.post(path, widget("immutable"))[0] == 201, "transition rules skip on create"
    status, body = kube.patch(f"{path}/immutable", {"spec": {"model": "other"}})
    assert (status, _causes(body).get("spec")) == (
        422, 'Invalid value: "object": model is immutable')
    assert kube.patch(f"{path}/immutable", {"spec": {"replicas": 2}})[0] == 200


def test_defaults_applied_and_unknown_fields_pruned(kube: Kube, widgets: str,
                                                    namespace: str) -> None:
    obj = widget("pruned", extra={"anything": {"goes": 1}}, unknown="dropped")
    obj["topLevelJunk"] = 1
    obj["metadata"]["notMeta"] = 1
    status, created = kube.post(f"{widgets}/namespaces/{namespace}/widgets", obj)
    assert status == 201, created
    assert created["spec"] == {"model": "tiny", "replicas": 1, "minReplicas": 1,
                               "maxReplicas": 4, "mode": "fast",
                               "extra": {"anything": {"goes": 1}}}
    assert "topLevelJunk" not in created and "notMeta" not in created["metadata"]
    status, patched = kube.patch(f"{widgets}/namespaces/{namespace}/widgets/pruned",
                                 {"spec": {"mode": None}})
    assert status == 200 and patched["spec"]["mode"] == "fast", "null is dropped then defaulted"


def test_status_updates_are_validated(kube: Kube, widgets: str, namespace: str) -> None:
    path = f"{widgets}/namespaces/{namespace}/widgets"
    kube.post(path, widget("st"))
    status, body = kube.patch(f"{path}/st/status", {"status": {"replicas": "many"}})
    assert status == 422 and "status.replicas" in _causes(body)


def _crd(**changes: Any) -> dict[str, Any]:
    crd = copy.deepcopy(WIDGET_CRD)
    crd["metadata"]["name"] = "gadgets.kubetest.foresail.dev"
    crd["spec"]["names"] = {"plural": "gadgets", "kind": "Gadget"}
    version = crd["spec"]["versions"][0]
    for key, value in changes.items():
        version[key] = value
    return crd


@pytest.mark.parametrize("change,field", [
    ({"schema": {}}, "spec.versions[0].schema.openAPIV3Schema"),
    ({"schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {}}}}},
     "spec.versions[0].schema.openAPIV3Schema.properties[spec].type"),
    ({"schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-validations": [
        {"rule": "self.a ==== 1"}]}}},
     "spec.versions[0].schema.openAPIV3Schema.x-kubernetes-validations[0].rule"),
    ({"storage": False}, "spec.versions"),
])
def test_broken_crds_are_refused(kube: Kube, change: dict[str, Any], field: str) -> None:
    status, body = kube.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                             _crd(**change))
    assert status == 422, body
    assert field in _causes(body), body


def test_crd_name_must_match_plural_and_group(kube: Kube) -> None:
    crd = _crd()
    crd["metadata"]["name"] = "wrong.kubetest.foresail.dev"
    status, body = kube.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    assert status == 422 and "metadata.name" in _causes(body)


def test_crd_is_established_and_deleting_it_unregisters(kube: Kube) -> None:
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    status, crd = kube.post(path, _crd())
    assert status == 201
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions == {"Established": "True", "NamesAccepted": "True"}
    assert crd["status"]["acceptedNames"]["kind"] == "Gadget"
    assert crd["status"]["acceptedNames"]["listKind"] == "GadgetList"
    gadget = {"apiVersion": "kubetest.foresail.dev/v1alpha1", "kind": "Gadget",
              "metadata": {"name": "g"}, "spec": {"model": "m"}}
    assert kube.post("/apis/kubetest.foresail.dev/v1alpha1/namespaces/default/gadgets",
                     gadget)[0] == 201
    assert kube.delete(f"{path}/gadgets.kubetest.foresail.dev")[0] == 200
    assert kube.get("/apis/kubetest.foresail.dev/v1alpha1/namespaces/default/gadgets")[0] == 404
    assert kube.post(path, _crd())[0] == 201
    _, listed = kube.get("/apis/kubetest.foresail.dev/v1alpha1/namespaces/default/gadgets")
    assert listed["items"] == [], "instances went with their CRD"
    kube.delete(f"{path}/gadgets.kubetest.foresail.dev")


def test_deleting_a_crd_deletes_its_instances_as_a_delete_does(kube: Kube, namespace: str) -> None:
    """As the real CRD finalizer: each instance is deleted (its finalizers honoured, what it owns collected), the
    CRD waits, marked for deletion and refusing new instances, until none is left (docs/install.md, Uninstall)."""
    crd = _crd()
    crd["metadata"]["name"] = "gizmos.kubetest.foresail.dev"
    crd["spec"]["names"] = {"plural": "gizmos", "kind": "Gizmo"}
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gizmos.kubetest.foresail.dev"
    gizmos = f"/apis/kubetest.foresail.dev/v1alpha1/namespaces/{namespace}/gizmos"
    assert kube.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)[0] == 201
    for name, finalizers in (("free", []), ("held", ["example.com/hold"])):
        status, owner = kube.post(gizmos, {"apiVersion": "kubetest.foresail.dev/v1alpha1", "kind": "Gizmo",
                                           "metadata": {"name": name, "finalizers": finalizers},
                                           "spec": {"model": "m"}})
        assert status == 201, owner
        assert kube.post(f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {
            "name": f"of-{name}", "ownerReferences": [{"apiVersion": "kubetest.foresail.dev/v1alpha1",
                                                       "kind": "Gizmo", "name": name,
                                                       "uid": owner["metadata"]["uid"]}]}})[0] == 201

    assert kube.delete(path)[0] == 200
    assert kube.get(f"{gizmos}/free")[0] == 404
    assert kube.get(f"/api/v1/namespaces/{namespace}/configmaps/of-free")[0] == 404, "collected with its owner"
    assert kube.get(f"{gizmos}/held")[1]["metadata"]["deletionTimestamp"]
    assert kube.get(f"/api/v1/namespaces/{namespace}/configmaps/of-held")[0] == 200
    status, terminating = kube.get(path)
    assert status == 200 and terminating["metadata"]["deletionTimestamp"]
    status, body = kube.post(gizmos, {"metadata": {"name": "late"}, "spec": {"model": "m"}})
    assert status == 405 and body["message"] == "create not allowed while custom resource definition is terminating"

    assert kube.patch(f"{gizmos}/held", {"metadata": {"finalizers": None}})[0] == 200
    assert kube.get(f"/api/v1/namespaces/{namespace}/configmaps/of-held")[0] == 404
    assert kube.get(path)[0] == 404
    assert kube.get(gizmos)[0] == 404


def test_objects_stored_before_a_schema_change_are_read_pruned_and_defaulted(kube: Kube, namespace: str) -> None:
    """As the real server decodes what it reads from etcd: a default added to the CRD later, and a field it
    drops, show on get, list and watch, while the stored object (its resourceVersion) stays as it was."""
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    crd = _crd()
    crd["metadata"]["name"] = "doodads.kubetest.foresail.dev"
    crd["spec"]["names"] = {"plural": "doodads", "kind": "Doodad"}
    assert kube.post(crds, crd)[0] == 201
    doodads = f"/apis/kubetest.foresail.dev/v1alpha1/namespaces/{namespace}/doodads"
    try:
        status, created = kube.post(doodads, {"metadata": {"name": "old"}, "spec": {"model": "m", "tags": ["a"]}})
        assert status == 201, created
        status, current = kube.get(f"{crds}/doodads.kubetest.foresail.dev")
        spec_schema = current["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        del spec_schema["properties"]["tags"]
        spec_schema["properties"]["flavor"] = {"type": "string", "default": "plain"}
        assert kube.put(f"{crds}/doodads.kubetest.foresail.dev", current)[0] == 200

        status, read = kube.get(f"{doodads}/old")
        assert status == 200 and read["spec"]["flavor"] == "plain" and "tags" not in read["spec"]
        assert read["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"], "nothing written"
        assert kube.get(doodads)[1]["items"][0]["spec"] == read["spec"]
        event = next(kube.watch(f"{doodads}?watch=true&timeoutSeconds=2"))
        assert (event["type"], event["object"]["spec"]) == ("ADDED", read["spec"])
    finally:
        kube.delete(f"{crds}/doodads.kubetest.foresail.dev")


def _deployment(**template_spec: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": {
                "metadata": {"labels": {"app": "d"}},
                "spec": {"containers": [{"name": "c", "image": "i:1"}], **template_spec}}}}


def test_builtin_objects_are_checked_against_kubernetes_schemas(kube: Kube,
                                                                namespace: str) -> None:
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    bad = _deployment(containers=[{"name": "c", "image": "i:1",
                                   "ports": [{"containerPort": "http"}]}])
    status, body = kube.post(path, bad)
    assert status == 422
    assert "spec.template.spec.containers[0].ports[0].containerPort" in _causes(body)
    mismatched = _deployment()
    mismatched["spec"]["selector"] = {"matchLabels": {"app": "other"}}
    status, body = kube.post(path, mismatched)
    assert status == 422 and "spec.template.metadata.labels" in _causes(body)
    no_image = _deployment(containers=[{"name": "c"}])
    status, body = kube.post(path, no_image)
    assert status == 422 and "spec.template.spec.containers[0].image" in _causes(body)
    status, created = kube.post(path, _deployment())
    assert status == 201 and created["spec"]["replicas"] == 1, "defaulted like the real server"
    assert created["spec"]["strategy"]["type"] == "RollingUpdate"


def test_a_status_the_schema_marks_required_is_not_required_on_create(kube: Kube, namespace: str) -> None:
    """A PodDisruptionBudget's status fields are "required" in the JSON schema, but the real server fills
    them from Go's zero values (the disruption controller sets them): a new one without status is created.
    Its spec is still checked."""
    path = f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets"
    budget = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "b"},
              "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "a"}}}}
    status, created = kube.post(path, budget)
    assert status == 201, created
    status, body = kube.post(path, {**budget, "metadata": {"name": "c"}, "spec": {"maxUnavailable": [1]}})
    assert status == 422 and "spec.maxUnavailable" in _causes(body), body


_PERCENT_ERROR = ("a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or "
                  "'93%', regex used for validation is '[0-9]+%')")


@pytest.mark.parametrize("strategy,field,message", [
    ({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "12.5%", "maxSurge": 1}},
     "spec.strategy.rollingUpdate.maxUnavailable",
     f'Invalid value: intstr.IntOrString{{Type:1, IntVal:0, StrVal:"12.5%"}}: {_PERCENT_ERROR}'),
    ({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "1"}},
     "spec.strategy.rollingUpdate.maxSurge", f'Invalid value: intstr.IntOrString{{Type:1, IntVal:0, StrVal:"1"}}: '
                                             f"{_PERCENT_ERROR}"),
    ({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": -1, "maxSurge": 1}},
     "spec.strategy.rollingUpdate.maxUnavailable", "Invalid value: -1: must be greater than or equal to 0"),
    ({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "0%", "maxSurge": 0}},
     "spec.strategy.rollingUpdate.maxUnavailable",
     'Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:"0%"}: may not be 0 when `maxSurge` is 0'),
    ({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "101%", "maxSurge": 0}},
     "spec.strategy.rollingUpdate.maxUnavailable",
     'Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:"101%"}: must not be greater than 100%'),
    ({"type": "Recreate", "rollingUpdate": {"maxUnavailable": 1}}, "spec.strategy.rollingUpdate",
     "Forbidden: may not be specified when strategy `type` is 'Recreate'"),
])
def test_a_deployment_strategy_is_checked_as_the_real_server_does(
        kube: Kube, namespace: str, strategy: dict[str, Any], field: str, message: str) -> None:
    status, body = kube.post(f"/apis/apps/v1/namespaces/{namespace}/deployments",
                             {**_deployment(), "spec": {**_deployment()["spec"], "strategy": strategy}})
    assert status == 422, body
    assert _causes(body) == {field: message}


@pytest.mark.parametrize("strategy", [
    {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "100%", "maxSurge": "0%"}},
    {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
    {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0}},
    {"type": "Recreate"},
])
def test_a_valid_deployment_strategy_is_accepted(kube: Kube, namespace: str, strategy: dict[str, Any]) -> None:
    status, body = kube.post(f"/apis/apps/v1/namespaces/{namespace}/deployments",
                             {**_deployment(), "spec": {**_deployment()["spec"], "strategy": strategy}})
    assert status == 201, body


def test_a_pod_templates_deletion_cost_must_be_a_32bit_integer(kube: Kube, namespace: str) -> None:
    """ValidatePodTemplateSpec checks the template's annotations as a Pod's: the pods could not be created."""
    deployment = _deployment()
    deployment["spec"]["template"]["metadata"]["annotations"] = {
        "controller.kubernetes.io/pod-deletion-cost": "lots"}
    status, body = kube.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment)
    assert status == 422, body
    assert _causes(body) == {"spec.template.annotations[controller.kubernetes.io/pod-deletion-cost]":
                             'Invalid value: "lots": must be a 32bit integer'}


def _env(value_from: dict[str, Any]) -> dict[str, Any]:
    return {"containers": [{"name": "c", "image": "i:1", "env": [{"name": "E", "valueFrom": value_from}]}]}


_ENV = "spec.template.spec.containers[0].env[0].valueFrom"
_BYTES = "1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei"
_FIELDS = ('"metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName", '
           '"status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs"')


@pytest.mark.parametrize("template_spec,field,message", [
    ({"volumes": [{"name": "cache", "hostPath": {"path": "/data/../etc"}}]},
     "spec.template.spec.volumes[0].hostPath.path", "Invalid value: \"/data/../etc\": must not contain '..'"),
    (_env({"fieldRef": {"fieldPath": "status.podIp"}}), f"{_ENV}.fieldRef.fieldPath",
     f'Unsupported value: "status.podIp": supported values: {_FIELDS}'),
    (_env({"fieldRef": {"fieldPath": "metadata.labels"}}), f"{_ENV}.fieldRef.fieldPath",
     f'Unsupported value: "metadata.labels": supported values: {_FIELDS}'),
    (_env({"fieldRef": {"apiVersion": "v2", "fieldPath": "metadata.name"}}), f"{_ENV}.fieldRef.fieldPath",
     'Invalid value: "metadata.name": error converting fieldPath: unsupported pod version: v2'),
    (_env({"resourceFieldRef": {"resource": "limits.gpu"}}), f"{_ENV}.resourceFieldRef.resource",
     'Unsupported value: "limits.gpu": supported values: "limits.cpu", "limits.ephemeral-storage", '
     '"limits.memory", "requests.cpu", "requests.ephemeral-storage", "requests.memory"'),
    # validateContainerResourceDivisor compares Quantity.String() with a fixed set per resource
    (_env({"resourceFieldRef": {"resource": "limits.memory", "divisor": "1m"}}), f"{_ENV}.resourceFieldRef.divisor",
     f'Invalid value: "limits.memory": only divisor\'s values {_BYTES} are supported with the memory resource'),
    (_env({"resourceFieldRef": {"resource": "requests.cpu", "divisor": 1000}}), f"{_ENV}.resourceFieldRef.divisor",
     'Invalid value: "requests.cpu": only divisor\'s values 1m and 1 are supported with the cpu resource'),
    (_env({"resourceFieldRef": {"resource": "limits.ephemeral-storage", "divisor": "1024"}}),
     f"{_ENV}.resourceFieldRef.divisor", f'Invalid value: "limits.ephemeral-storage": only divisor\'s values '
                                         f"{_BYTES} are supported with the local ephemeral storage resource"),
    (_env({"resourceFieldRef": {"resource": "limits.hugepages-2Mi", "divisor": "1e3"}}),
     f"{_ENV}.resourceFieldRef.divisor", f'Invalid value: "limits.hugepages-2Mi": only divisor\'s values '
                                         f"{_BYTES} are supported with the hugepages resource"),
])
def test_a_pod_templates_paths_and_references_are_checked(kube: Kube, namespace: str, template_spec: dict[str, Any],
                                                          field: str, message: str) -> None:
    """What an LLMDeployment's model.cache.hostPath and env valueFrom can carry into the Deployment the operator
    writes: the real server refuses these (the CRD's schema lets them through)."""
    status, body = kube.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", _deployment(**template_spec))
    assert status == 422, body
    assert _causes(body) == {field: message}


@pytest.mark.parametrize("template_spec", [
    {"volumes": [{"name": "cache", "hostPath": {"path": "/data/..cache/x.."}}]},
    _env({"fieldRef": {"fieldPath": "metadata.labels['app']"}}),
    _env({"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIPs"}}),
    _env({"resourceFieldRef": {"resource": "limits.hugepages-2Mi"}}),
    # the same quantities written otherwise, and 0 (no divisor)
    *[_env({"resourceFieldRef": {"resource": resource, "divisor": divisor}}) for resource, divisor in (
        ("limits.cpu", "1000m"), ("requests.cpu", "0.001"), ("limits.cpu", 1), ("limits.memory", "1024Ki"),
        ("requests.memory", 1000), ("limits.ephemeral-storage", "1Gi"), ("requests.hugepages-1Gi", "1M"),
        ("limits.memory", "0"), ("limits.memory", "1Ei"))],
])
def test_valid_paths_and_references_are_accepted(kube: Kube, namespace: str, template_spec: dict[str, Any]) -> None:
    status, body = kube.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", _deployment(**template_spec))
    assert status == 201, body


@pytest.mark.parametrize("where", ["object", "template"])
def test_annotations_are_checked_as_the_real_server_does(kube: Kube, namespace: str, where: str) -> None:
    """Keys are qualified names (any case), and keys and values together are at most 256 KiB
    (TotalAnnotationSizeLimitB): a pod template's annotations (an LLMDeployment's podMetadata.annotations) as the
    object's own."""
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    field = "metadata.annotations" if where == "object" else "spec.template.metadata.annotations"

    def post(name: str, annotations: dict[str, str]) -> tuple[int, Any]:
        deployment = _deployment()
        deployment["metadata"]["name"] = name
        meta = deployment["metadata"] if where == "object" else deployment["spec"]["template"]["metadata"]
        meta["annotations"] = annotations
        return kube.post(path, deployment)

    status, body = post("big", {"a": "x" * (256 * 1024)})
    assert status == 422 and _causes(body) == {field: "Too long: may not be more than 262144 bytes"}, body
    status, body = post("badkey", {"no spaces": "1"})
    assert status == 422 and list(_causes(body)) == [field], body
    assert post("fits", {"Example.COM/Some-Key": "x" * (256 * 1024 - 21)})[0] == 201


def test_a_pods_image_has_no_leading_or_trailing_whitespace(kube: Kube, namespace: str) -> None:
    """validateContainersOnlyForPod: the real server refuses such a Pod, not the Deployment (whose pods then fail
    to be created: FailedCreate)."""
    spec = {"containers": [{"name": "c", "image": "vllm/vllm-openai:v0.6 "}],
            "initContainers": [{"name": "i", "image": "\tbusybox"}]}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec}
    status, body = kube.post(f"/api/v1/namespaces/{namespace}/pods", pod)
    assert status == 422, body
    assert _causes(body) == {
        "spec.containers[0].image": 'Invalid value: "vllm/vllm-openai:v0.6 ": must not have leading or trailing '
                                    "whitespace",
        "spec.initContainers[0].image": 'Invalid value: "\\tbusybox": must not have leading or trailing whitespace'}
    status, body = kube.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", _deployment(**spec))
    assert status == 201, body
    pod["spec"] = {"containers": [{"name": "c", "image": "vllm/vllm-openai:v0.6"}]}
    assert kube.post(f"/api/v1/namespaces/{namespace}/pods", pod)[0] == 201
