"""Fault injection and the audit log."""

from __future__ import annotations

import urllib.error
import urllib.request

import kubernetes
import pytest

from foresail.kubetest.testing import ApiServerProcess
from tests.kubetest.helpers import Kube


def test_injected_faults_fail_the_next_matching_requests(server: ApiServerProcess, kube: Kube,
                                                        namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    kube.post(path, {"metadata": {"name": "f"}})
    server.faults(method="PATCH", path=f"/namespaces/{namespace}/configmaps/f$", status=409,
                  count=2)
    for _ in range(2):
        status, body = kube.patch(f"{path}/f", {"data": {"a": "1"}})
        assert (status, body["kind"], body["reason"]) == (409, "Status", "Conflict")
    assert kube.get(f"{path}/f")[0] == 200, "other methods are not affected"
    assert kube.patch(f"{path}/f", {"data": {"a": "1"}})[0] == 200, "count is used up"


def test_429_carries_retry_after(server: ApiServerProcess, namespace: str) -> None:
    server.faults(path=f"namespaces/{namespace}/secrets", status=429, retry_after=3)
    request = urllib.request.Request(f"{server.url}/api/v1/namespaces/{namespace}/secrets")
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=5)
    assert error.value.code == 429 and error.value.headers["Retry-After"] == "3"


def test_faults_reach_the_kubernetes_client_and_can_be_cleared(server: ApiServerProcess,
                                                               namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(server.api_client())
    server.faults(method="GET", path=f"namespaces/{namespace}/configmaps", status=500, count=5)
    with pytest.raises(kubernetes.client.ApiException) as error:
        core.list_namespaced_config_map(namespace)
    assert error.value.status == 500 and error.value.reason == "Internal Server Error"
    server.clear_faults()
    assert core.list_namespaced_config_map(namespace).items == []


@pytest.mark.parametrize("spec,message", [
    ({"status": 299}, "unsupported fault status 299"),
    ({"status": [500]}, "unsupported fault status"),
    ({"count": "abc"}, "count must be an integer of at least 1, not 'abc'"),
    ({"count": -1}, "count must be an integer of at least 1, not -1"),
    ({"count": 0}, "count must be an integer of at least 1, not 0"),
    ({"retryAfter": "x"}, "retryAfter must be an integer of at least 0"),
    ({"path": 5}, "invalid path regex"),
    ({"method": 5}, "method and message must be strings"),
])
def test_bad_fault_is_refused(kube: Kube, spec: dict[str, object], message: str) -> None:
    """A bad fault is a 400 that says why (not a 500), and nothing is added."""
    status, body = kube.post("/_kubetest/faults", {"path": "^/never$", **spec})
    assert (status, body["reason"]) == (400, "BadRequest") and message in body["message"], body
    assert all(f["path"] != "^/never$" for f in kube.get("/_kubetest/faults")[1])


def test_audit_records_kubernetes_verbs(server: ApiServerProcess, kube: Kube,
                                        namespace: str) -> None:
    apps = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    server.clear_audit()
    kube.get(f"/api/v1/namespaces/{namespace}/configmaps")
    kube.post(f"/api/v1/namespaces/{namespace}/configmaps", {"metadata": {"name": "a"}})
    kube.get(f"/api/v1/namespaces/{namespace}/configmaps/a")
    kube.put(f"/api/v1/namespaces/{namespace}/configmaps/a", {"metadata": {"name": "a"}})
    kube.patch(f"{apps}/nothing/scale", {"spec": {"replicas": 1}})
    kube.patch(f"{apps}/nothing/status", {"status": {}})
    list(kube.watch(f"/api/v1/namespaces/{namespace}/pods?watch=true&resourceVersion=0"
                    f"&labelSelector=app", max_events=0))
    kube.delete(f"/api/v1/namespaces/{namespace}/configmaps/a")
    kube.delete(f"/api/v1/namespaces/{namespace}/configmaps")
    entries = [{k: e[k] for k in ("verb", "apiGroup", "resource", "subresource", "namespace",
                                  "name")} for e in server.audit(clear=True)]
    ns = namespace
    assert entries == [
        {"verb": "list", "apiGroup": "", "resource": "configmaps", "subresource": "",
         "namespace": ns, "name": ""},
        {"verb": "create", "apiGroup": "", "resource": "configmaps", "subresource": "",
         "namespace": ns, "name": ""},
        {"verb": "get", "apiGroup": "", "resource": "configmaps", "subresource": "",
         "namespace": ns, "name": "a"},
        {"verb": "update", "apiGroup": "", "resource": "configmaps", "subresource": "",
         "namespace": ns, "name": "a"},
        {"verb": "patch", "apiGroup": "apps", "resource": "deployments", "subresource": "scale",
         "namespace": ns, "name": "nothing"},
        {"verb": "patch", "apiGroup": "apps", "resource": "deployments", "subresource": "status",
         "namespace": ns, "name": "nothing"},
        {"verb": "watch", "apiGroup": "", "resource": "pods", "subresource": "",
         "namespace": ns, "name": ""},
        {"verb": "delete", "apiGroup": "", "resource": "configmaps", "subresource": "",
         "namespace": ns, "name": "a"},
        {"verb": "deletecollection", "apiGroup": "", "resource": "configmaps",
         "subresource": "", "namespace": ns, "name": ""},
    ]
    assert server.audit() == []
