"""The simulated Deployment controller and kubelet."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from foresail.kubetest.api import pod_grace_period
from foresail.kubetest.builtin_admission import DELETION_COST
from foresail.kubetest.controllers import deletion_order
from foresail.kubetest.errors import ApiError
from foresail.kubetest.testing import start_apiserver
from tests.kubetest.helpers import Kube, wait_for, widget


def _deployment(name: str, replicas: int, image: str = "nginx:1.27", **container: Any) -> dict:
    return {"metadata": {"name": name}, "spec": {
        "replicas": replicas, "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}},
                     "spec": {"containers": [{"name": "main", "image": image, **container}]}}}}


def _pods(kube: Kube, namespace: str, app: str) -> list[dict]:
    return kube.get(f"/api/v1/namespaces/{namespace}/pods?labelSelector=app%3D{app}")[1]["items"]


def _status(kube: Kube, namespace: str, name: str) -> dict:
    return kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")[1].get(
        "status") or {}


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _condition(status: dict, kind: str) -> dict:
    return next((c for c in status.get("conditions") or [] if c["type"] == kind), {})


def test_pods_and_status_follow_replicas(kube: Kube, namespace: str) -> None:
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    _, deployment = kube.post(path, _deployment("web", 2))
    status = wait_for(lambda: (s := _status(kube, namespace, "web")).get("readyReplicas") == 2
                      and s)
    assert status["observedGeneration"] == 1
    assert (status["replicas"], status["updatedReplicas"], status["availableReplicas"]) == (
        2, 2, 2)
    assert "unavailableReplicas" not in status
    assert _condition(status, "Available")["status"] == "True"
    assert _condition(status, "Progressing")["reason"] == "NewReplicaSetAvailable"
    pods = _pods(kube, namespace, "web")
    assert len(pods) == 2
    for pod in pods:
        owner = pod["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"], owner["controller"]) == (
            "Deployment", deployment["metadata"]["uid"], True)
        assert pod["metadata"]["name"].startswith("web-" + pod["metadata"]["labels"][
            "pod-template-hash"] + "-")
        assert pod["status"]["phase"] == "Running"
        assert pod["status"]["containerStatuses"][0]["ready"] is True
    kube.patch(f"{path}/web", {"spec": {"replicas": 0}})
    wait_for(lambda: not _pods(kube, namespace, "web"))
    status = wait_for(lambda: (s := _status(kube, namespace, "web")).get(
        "observedGeneration") == 2 and s)
    assert "replicas" not in status and "readyReplicas" not in status


def test_template_change_replaces_pods(kube: Kube, namespace: str) -> None:
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    kube.post(path, _deployment("roll", 2, "app:1"))

    def running() -> list[dict]:
        pods = [p for p in _pods(kube, namespace, "roll") if p["status"]["phase"] == "Running"]
        return pods if len(pods) == 2 else []
    first = {p["metadata"]["name"] for p in wait_for(running)}
    kube.patch(f"{path}/roll", {"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "app:2"}]}}}}, "application/strategic-merge-patch+json")

    def rolled() -> Any:
        pods = _pods(kube, namespace, "roll")
        return len(pods) == 2 and all(
            p["spec"]["containers"][0]["image"] == "app:2" and p["status"]["phase"] == "Running"
            for p in pods) and pods
    second = {p["metadata"]["name"] for p in wait_for(rolled)}
    assert not first & second
    status = wait_for(lambda: (s := _status(kube, namespace, "roll")).get(
        "updatedReplicas") == 2 and s.get("readyReplicas") == 2 and s)
    assert status["observedGeneration"] == 2


def test_unpullable_image_reports_err_image_pull(kube: Kube, namespace: str) -> None:
    kube.post(f"/apis/apps/v1/namespaces/{namespace}/deployments",
              _deployment("broken", 1, "registry.example/doesnotexist:1"))

    def waiting() -> Any:
        pods = _pods(kube, namespace, "broken")
        states = [c["state"] for p in pods for c in p["status"].get("containerStatuses") or []]
        return states and "waiting" in states[0] and states[0]["waiting"]["reason"] in (
            "ErrImagePull", "ImagePullBackOff") and (pods[0], states[0]["waiting"])
    pod, state = wait_for(waiting)
    assert pod["status"]["phase"] == "Pending"
    assert "doesnotexist" in state["message"]
    status = wait_for(lambda: (s := _status(kube, namespace, "broken")).get(
        "unavailableReplicas") == 1 and s)
    assert _condition(status, "Available")["status"] == "False"
    assert _condition(status, "Available")["reason"] == "MinimumReplicasUnavailable"
    assert "readyReplicas" not in status


def test_missing_secret_is_create_container_config_error(kube: Kube, namespace: str) -> None:
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "t"}}}]
    kube.post(f"/apis/apps/v1/namespaces/{namespace}/deployments",
              _deployment("needs-secret", 1, env=env))

    def state() -> Any:
        pods = _pods(kube, namespace, "needs-secret")
        statuses = pods and pods[0]["status"].get("containerStatuses")
        return statuses and statuses[0]["state"]
    waiting = wait_for(lambda: (s := state()) and "waiting" in s and s["waiting"][
        "reason"] == "CreateContainerConfigError" and s["waiting"])
    assert waiting["message"] == 'secret "hf-token" not found'
    kube.post(f"/api/v1/namespaces/{namespace}/secrets",
              {"metadata": {"name": "hf-token"}, "stringData": {"t": "x"}})
    wait_for(lambda: (s := state()) and "running" in s)


def test_a_resource_field_ref_to_no_container_is_create_container_config_error(kube: Kube, namespace: str) -> None:
    """The API server accepts any containerName in an env var's resourceFieldRef; the kubelet finds no such container
    and cannot create this one. A name of the pod's containers works."""
    def deployment(name: str, container_name: str) -> dict:
        env = [{"name": "CPU", "valueFrom": {"resourceFieldRef": {"containerName": container_name,
                                                                  "resource": "limits.cpu"}}}]
        return _deployment(name, 1, env=env)

    def state(name: str) -> Any:
        pods = _pods(kube, namespace, name)
        statuses = pods and pods[0]["status"].get("containerStatuses")
        return statuses and statuses[0]["state"]
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    assert kube.post(path, deployment("elsewhere", "sidecar"))[0] == 201
    assert kube.post(path, deployment("here", "main"))[0] == 201
    waiting = wait_for(lambda: (s := state("elsewhere")) and "waiting" in s and s["waiting"][
        "reason"] == "CreateContainerConfigError" and s["waiting"])
    assert waiting["message"] == "container sidecar not found"
    wait_for(lambda: (s := state("here")) and "running" in s)


def test_deleting_a_deployment_collects_its_pods(kube: Kube, namespace: str) -> None:
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    kube.post(path, _deployment("gone", 2))
    wait_for(lambda: len(_pods(kube, namespace, "gone")) == 2)
    kube.delete(f"{path}/gone")
    wait_for(lambda: _pods(kube, namespace, "gone") == [])


def test_an_annotation_change_is_a_new_generation_of_a_deployment(kube: Kube, widgets: str, namespace: str) -> None:
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    kube.post(path, _deployment("noted", 1))
    wait_for(lambda: _status(kube, namespace, "noted").get("observedGeneration") == 1)
    status, noted = kube.patch(f"{path}/noted", {"metadata": {"annotations": {"team": "a"}}})
    assert status == 200 and noted["metadata"]["generation"] == 2
    wait_for(lambda: _status(kube, namespace, "noted").get("observedGeneration") == 2)
    assert kube.patch(f"{path}/noted", {"metadata": {"labels": {"tier": "x"}}})[1]["metadata"]["generation"] == 2
    assert kube.patch(f"{path}/noted", {"metadata": {"annotations": {"team": "a"}}})[1]["metadata"][
        "generation"] == 2, "the same annotations are no change"
    widget_path = f"{widgets}/namespaces/{namespace}/widgets"
    kube.post(widget_path, widget("noted"))
    status, noted = kube.patch(f"{widget_path}/noted", {"metadata": {"annotations": {"team": "a"}}})
    assert status == 200 and noted["metadata"]["generation"] == 1, "only a Deployment counts its annotations"


def test_a_deployment_held_by_finalizers_has_its_status_brought_up_to_date(kube: Kube, namespace: str) -> None:
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    kube.post(path, {**_deployment("held", 1), "metadata": {"name": "held", "finalizers": ["kubetest/hold"]}})
    wait_for(lambda: _status(kube, namespace, "held").get("readyReplicas") == 1)
    status, marked = kube.delete(f"{path}/held")
    assert status == 200 and marked["metadata"]["generation"] == 2
    wait_for(lambda: _status(kube, namespace, "held").get("observedGeneration") == 2)
    kube.patch(f"{path}/held", {"spec": {"replicas": 3}})
    wait_for(lambda: _status(kube, namespace, "held").get("observedGeneration") == 3)
    assert len(_pods(kube, namespace, "held")) == 1, "a Deployment being deleted is not scaled"
    kube.patch(f"{path}/held", {"metadata": {"finalizers": None}})
    wait_for(lambda: _pods(kube, namespace, "held") == [])


def test_the_simulated_kubelet_registers_its_node_at_the_servers_version(kube: Kube) -> None:
    status, nodes = kube.get("/api/v1/nodes")
    assert status == 200 and [n["metadata"]["name"] for n in nodes["items"]] == ["kubetest-node"], nodes
    _, version = kube.get("/version")
    kubelet = nodes["items"][0]["status"]["nodeInfo"]["kubeletVersion"]
    assert kubelet.startswith(f"v{version['major']}.{version['minor']}."), (kubelet, version)
    assert {c["type"]: c["status"] for c in nodes["items"][0]["status"]["conditions"]} == {"Ready": "True"}


def test_a_deleted_pod_stays_terminating_through_its_prestop_sleep(kube: Kube, namespace: str) -> None:
    """A bound pod's DELETE is graceful: the object stays with deletionTimestamp while the kubelet runs
    preStop; the Deployment replaces it at once; a later DELETE can only shorten the grace period."""
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    deployment = _deployment("graceful", 1, lifecycle={"preStop": {"exec": {"command": ["sleep", "60"]}}})
    deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 60
    kube.post(path, deployment)
    pod = wait_for(lambda: (p := _pods(kube, namespace, "graceful")) and
                   p[0]["status"].get("phase") == "Running" and p[0])
    assert pod["spec"]["nodeName"] == "kubetest-node"
    pod_path = f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}"
    status, deleted = kube.delete(pod_path)
    assert status == 200 and deleted["metadata"]["deletionGracePeriodSeconds"] == 60
    assert deleted["metadata"]["deletionTimestamp"] > pod["metadata"]["creationTimestamp"]
    pods = wait_for(lambda: len(p := _pods(kube, namespace, "graceful")) == 2 and p)
    replacement = next(p for p in pods if not p["metadata"].get("deletionTimestamp"))
    assert replacement["metadata"]["name"] != pod["metadata"]["name"]
    wait_for(lambda: _status(kube, namespace, "graceful").get("readyReplicas") == 1)
    assert _status(kube, namespace, "graceful")["replicas"] == 1, "a terminating pod is not counted"
    status, body = kube.patch(pod_path, {"metadata": {"annotations": {DELETION_COST: "5"}}})
    assert status == 200 and body["metadata"]["deletionTimestamp"], "an update keeps a terminating pod"
    for options in ({"gracePeriodSeconds": 90}, None):  # longer, or none given: the deletion pending stays
        assert kube.delete(pod_path, options)[1]["metadata"] == body["metadata"]
    assert kube.get(pod_path)[0] == 200, "still in its preStop sleep"
    status, shortened = kube.delete(pod_path, {"gracePeriodSeconds": 1})
    assert shortened["metadata"]["deletionGracePeriodSeconds"] == 1
    assert _epoch(shortened["metadata"]["deletionTimestamp"]) == _epoch(deleted["metadata"]["deletionTimestamp"]) - 59
    wait_for(lambda: kube.get(pod_path)[0] == 404)
    assert [p["metadata"]["name"] for p in _pods(kube, namespace, "graceful")] == [
        replacement["metadata"]["name"]]


def test_a_grace_period_of_zero_removes_a_pod_at_once(kube: Kube, namespace: str) -> None:
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    deployment = _deployment("forced", 1, lifecycle={"preStop": {"exec": {"command": ["sleep", "60"]}}})
    kube.post(path, deployment)
    pod = wait_for(lambda: (p := _pods(kube, namespace, "forced")) and p[0]["spec"].get("nodeName") and p[0])
    pod_path = f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}"
    assert kube.delete(pod_path + "?gracePeriodSeconds=0")[0] == 200
    assert kube.get(pod_path)[0] == 404


@pytest.mark.parametrize(("spec", "phase", "options", "grace"), [
    ({}, "Pending", {}, 0),  # not scheduled: removed at once
    ({"nodeName": "n"}, "Running", {}, 30),
    ({"nodeName": "n", "terminationGracePeriodSeconds": 5}, "Running", {}, 5),
    ({"nodeName": "n", "terminationGracePeriodSeconds": 5}, "Running", {"gracePeriodSeconds": "2"}, 2),
    ({"nodeName": "n"}, "Running", {"gracePeriodSeconds": 0}, 0),
    ({"nodeName": "n"}, "Succeeded", {}, 0),
])
def test_the_grace_period_of_a_pod_deletion(spec: dict, phase: str, options: dict, grace: int) -> None:
    assert pod_grace_period({"spec": spec, "status": {"phase": phase}}, options) == grace


def test_a_grace_period_that_is_no_integer_is_a_bad_request() -> None:
    with pytest.raises(ApiError, match="gracePeriodSeconds must be an integer") as raised:
        pod_grace_period({"spec": {"nodeName": "n"}}, {"gracePeriodSeconds": "soon"})
    assert raised.value.code == 400


def test_a_scale_down_removes_pods_in_the_replicaset_controllers_order(kube: Kube, namespace: str) -> None:
    """Not ready first, then the lowest controller.kubernetes.io/pod-deletion-cost, then the most recently
    ready (KEP-2255; ActivePodsWithRanks in the ReplicaSet controller)."""
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    kube.post(path, _deployment("ranked", 4))
    pods = wait_for(lambda: len(p := _pods(kube, namespace, "ranked")) == 4
                    and all(x["status"]["containerStatuses"][0]["ready"] for x in p) and p)
    names = sorted(p["metadata"]["name"] for p in pods)
    costs = {names[0]: "7", names[1]: "-3", names[2]: "100"}  # names[3]: none, read as 0
    for name, cost in costs.items():
        status, body = kube.patch(f"/api/v1/namespaces/{namespace}/pods/{name}",
                                  {"metadata": {"annotations": {DELETION_COST: cost}}})
        assert status == 200, body
    kube.patch(f"{path}/ranked", {"spec": {"replicas": 2}})
    left = wait_for(lambda: len(p := _pods(kube, namespace, "ranked")) == 2 and p)
    assert sorted(p["metadata"]["name"] for p in left) == [names[0], names[2]]
    kube.patch(f"{path}/ranked", {"spec": {"replicas": 1}})
    left = wait_for(lambda: len(p := _pods(kube, namespace, "ranked")) == 1 and p)
    assert left[0]["metadata"]["name"] == names[2]


def test_the_deletion_order_puts_unready_then_cheap_then_newly_ready_pods_first() -> None:
    def pod(name: str, ready_at: str | None, cost: str | None = None, created: str = "2026-01-01T00:00:00Z") -> dict:
        conditions = [{"type": "Ready", "status": "True", "lastTransitionTime": ready_at}] if ready_at else []
        return {"metadata": {"name": name, "creationTimestamp": created,
                             "annotations": {DELETION_COST: cost} if cost else {}},
                "status": {"conditions": conditions}}
    pods = [pod("old", "2026-01-01T00:01:00Z"), pod("new", "2026-01-01T00:05:00Z"),
            pod("busy", "2026-01-01T00:09:00Z", "5"), pod("idle", "2026-01-01T00:00:30Z", "-1"),
            pod("starting", None, "9"), pod("bad-cost", "2026-01-01T00:02:00Z", "+4"),
            pod("newer-twin", "2026-01-01T00:01:00Z", created="2026-01-01T00:00:10Z")]
    order = [p["metadata"]["name"] for p in deletion_order(pods)]
    assert order == ["starting", "idle", "new", "bad-cost", "newer-twin", "old", "busy"]


@pytest.mark.parametrize("cost", ["+4", "007", "-", "1.5", "2147483648", "x"])
def test_a_pod_deletion_cost_that_is_no_32bit_integer_is_refused(kube: Kube, namespace: str, cost: str) -> None:
    status, body = kube.post(f"/api/v1/namespaces/{namespace}/pods", {
        "metadata": {"name": "costly", "annotations": {DELETION_COST: cost}},
        "spec": {"containers": [{"name": "main", "image": "nginx"}]}})
    assert status == 422, body
    assert body["details"]["causes"] == [{
        "reason": "FieldValueInvalid", "field": f"metadata.annotations[{DELETION_COST}]",
        "message": f'Invalid value: "{cost}": must be a 32bit integer'}]


@pytest.mark.parametrize("cost", ["0", "-2147483648", "2147483647", "-007"])
def test_a_32bit_pod_deletion_cost_is_accepted(kube: Kube, namespace: str, cost: str) -> None:
    status, body = kube.post(f"/api/v1/namespaces/{namespace}/pods", {
        "metadata": {"name": "costly", "annotations": {DELETION_COST: cost}},
        "spec": {"containers": [{"name": "main", "image": "nginx"}]}})
    assert status == 201, body


def _watch_deployment(kube: Kube, namespace: str, name: str, since: str, done: Any) -> list[dict]:
    """The statuses a Deployment's watch from ``since`` shows, up to the first for which ``done`` holds."""
    seen = []
    for event in kube.watch(f"/apis/apps/v1/namespaces/{namespace}/deployments?watch=1&timeoutSeconds=10"
                            f"&fieldSelector=metadata.name%3D{name}&resourceVersion={since}", timeout_s=10):
        seen.append(event["object"].get("status") or {})
        if done(seen[-1]):
            return seen
    pytest.fail(f"the watch ended first: {seen}")


def test_an_object_the_controller_cannot_handle_is_logged_once_and_skipped(tmp_path: Path) -> None:
    """A Deployment the simulated controller fails on (stored unchecked: the real server refuses "12.5%")
    is logged with its traceback while the server runs, and the other Deployments are still served."""
    with start_apiserver(tmp_path, ready_delay_s=0.3, extra_args=("--no-validate-builtins",)) as server:
        kube = Kube(server.url)
        path = "/apis/apps/v1/namespaces/default/deployments"
        bad = _deployment("bad", 1)
        bad["spec"]["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "12.5%"}}
        assert kube.post(path, bad)[0] == 201
        assert kube.post(path, _deployment("good", 1))[0] == 201
        wait_for(lambda: _status(kube, "default", "good").get("readyReplicas") == 1)
        time.sleep(0.5)  # several more passes over the bad one
        log = server.log.read_text()
        assert log.count("the simulated controllers skip Deployment default/bad") == 1, log
        assert "ValueError" in log
        process = server.process
    assert process.returncode == 0, server.log.read_text()


def test_a_ready_time_that_is_no_timestamp_does_not_stop_its_deployment(kube: Kube, namespace: str) -> None:
    """The server stores any string as a condition's lastTransitionTime; the controller reads it as no time."""
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    kube.post(path, _deployment("odd", 1))
    pod = wait_for(lambda: (p := _pods(kube, namespace, "odd")) and _condition(p[0]["status"], "Ready").get(
        "status") == "True" and p[0])
    conditions = [{**c, "lastTransitionTime": "yesterday"} if c["type"] == "Ready" else c
                  for c in pod["status"]["conditions"]]
    status, body = kube.patch(f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}/status",
                              {"status": {"conditions": conditions}})
    assert status == 200, body
    kube.patch(f"{path}/odd", {"spec": {"replicas": 2}})
    wait_for(lambda: _status(kube, namespace, "odd").get("readyReplicas") == 2)


def test_a_scale_up_of_a_completed_deployment_keeps_it_progressed(kube: Kube, namespace: str) -> None:
    """syncRolloutStatus leaves a completed rollout's NewReplicaSetAvailable alone when the Deployment only
    scales, however long ago the rollout was: its progress deadline is no timeout from the last rollout."""
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    kube.post(path, {**_deployment("steady", 1), "spec": {**_deployment("steady", 1)["spec"],
                                                          "progressDeadlineSeconds": 1}})
    wait_for(lambda: _condition(_status(kube, namespace, "steady"), "Progressing").get(
        "reason") == "NewReplicaSetAvailable")
    time.sleep(1.5)
    _, scaled = kube.patch(f"{path}/steady", {"spec": {"replicas": 2}})
    seen = _watch_deployment(kube, namespace, "steady", scaled["metadata"]["resourceVersion"],
                             lambda s: s.get("readyReplicas") == 2)
    assert {(_condition(s, "Progressing")["status"], _condition(s, "Progressing")["reason"]) for s in seen} == {
        ("True", "NewReplicaSetAvailable")}, seen


def test_a_rollout_without_progress_times_out_after_its_deadline(kube: Kube, namespace: str) -> None:
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    deployment = _deployment("stuck", 1)
    deployment["spec"]["progressDeadlineSeconds"] = 1
    kube.post(path, deployment)
    wait_for(lambda: _status(kube, namespace, "stuck").get("readyReplicas") == 1)
    kube.patch(f"{path}/stuck", {"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "registry.example/doesnotexist:2"}]}}}}, "application/strategic-merge-patch+json")
    progressing = wait_for(lambda: _condition(_status(kube, namespace, "stuck"), "Progressing").get(
        "reason") == "ReplicaSetUpdated" and _condition(_status(kube, namespace, "stuck"), "Progressing"))
    timed_out = wait_for(lambda: (c := _condition(_status(kube, namespace, "stuck"), "Progressing")).get(
        "reason") == "ProgressDeadlineExceeded" and c)
    assert timed_out["status"] == "False"
    assert _epoch(timed_out["lastUpdateTime"]) - _epoch(progressing["lastUpdateTime"]) >= 1


def test_a_pod_the_controller_cannot_create_is_reported_as_a_replica_failure(tmp_path: Path) -> None:
    """The status is still written (observedGeneration follows) with ReplicaFailure/FailedCreate and the API
    error; the condition goes once the pods can be created. (A template label the Pod's own check refuses,
    stored unchecked.)"""
    with start_apiserver(tmp_path, ready_delay_s=0.3, extra_args=("--no-validate-builtins",)) as server:
        kube = Kube(server.url)
        path = "/apis/apps/v1/namespaces/default/deployments"
        kube.post(path, _deployment("failing", 1))
        wait_for(lambda: _status(kube, "default", "failing").get("readyReplicas") == 1)
        kube.patch(f"{path}/failing", {"spec": {"template": {"metadata": {"labels": {"tier": "not ok!"}}}}})
        status = wait_for(lambda: (s := _status(kube, "default", "failing")).get("observedGeneration") == 2 and s)
        failure = _condition(status, "ReplicaFailure")
        assert (failure["status"], failure["reason"]) == ("True", "FailedCreate"), status
        assert 'is invalid: metadata.labels[tier]: Invalid value: "not ok!"' in failure["message"]
        assert status["readyReplicas"] == 1, "the old pod stays"
        kube.patch(f"{path}/failing", {"spec": {"template": {"metadata": {"labels": {"tier": "ok"}}}}})
        status = wait_for(lambda: (s := _status(kube, "default", "failing")).get("observedGeneration") == 3 and
                          s.get("updatedReplicas") == 1 and s)
        assert not _condition(status, "ReplicaFailure"), status


def test_a_recreate_deployment_replaces_every_old_pod_before_starting_new_ones(kube: Kube, namespace: str) -> None:
    """Recreate allows no unavailable pod (3 ready of 4 is not available) and starts the new template's pods only
    once every old one is gone, terminating ones included."""
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    deployment = _deployment("again", 3, lifecycle={"preStop": {"exec": {"command": ["sleep", "1"]}}})
    deployment["spec"]["strategy"] = {"type": "Recreate"}
    kube.post(path, deployment)
    wait_for(lambda: _status(kube, namespace, "again").get("readyReplicas") == 3)
    _, scaled = kube.patch(f"{path}/again", {"spec": {"replicas": 4}})
    seen = _watch_deployment(kube, namespace, "again", scaled["metadata"]["resourceVersion"],
                             lambda s: s.get("readyReplicas") == 4)
    assert {_condition(s, "Available")["reason"] for s in seen if s.get("readyReplicas") == 3} == {
        "MinimumReplicasUnavailable"}, seen
    _, changed = kube.patch(f"{path}/again", {"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "nginx:1.28"}]}}}}, "application/strategic-merge-patch+json")
    events = []
    for event in kube.watch(f"/api/v1/namespaces/{namespace}/pods?watch=1&timeoutSeconds=10&labelSelector=app%3D"
                            f"again&resourceVersion={changed['metadata']['resourceVersion']}", 1000, 10):
        image = event["object"]["spec"]["containers"][0]["image"]
        events.append((event["type"], image))
        if events.count(("ADDED", "nginx:1.28")) == 4:
            break
    first_new = events.index(("ADDED", "nginx:1.28"))
    assert events[:first_new].count(("DELETED", "nginx:1.27")) == 4, events
    assert ("DELETED", "nginx:1.27") not in events[first_new:], events


def test_a_rollout_counts_its_new_pods_that_are_not_ready_as_unavailable(kube: Kube, namespace: str) -> None:
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments"
    kube.post(path, _deployment("half", 2))
    wait_for(lambda: _status(kube, namespace, "half").get("readyReplicas") == 2)
    kube.patch(f"{path}/half", {"spec": {"template": {"spec": {"containers": [
        {"name": "main", "image": "registry.example/doesnotexist:2"}]}}}}, "application/strategic-merge-patch+json")
    status = wait_for(lambda: (s := _status(kube, namespace, "half")).get("updatedReplicas") == 2 and s)
    assert (status["replicas"], status["readyReplicas"], status["unavailableReplicas"]) == (4, 2, 2), status
