"""Evictions and containers killed for memory reach the LLMDeployment as Warning Events, once each, and a
crash-looping container's last exit reaches the Degraded condition."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from foresail.kubetest.testing import start_apiserver
from foresail_operator.status import OOM_HINT, PodSummary, pod_warnings
from tests.helpers import Kube, wait_for
from tests.operator.conftest import CRDS, LLMD, Operator

PODS = "/api/v1/namespaces/default/pods"
EVENTS = "/api/v1/namespaces/default/events"
LABELS = {"app.kubernetes.io/managed-by": "foresail", "foresail.dev/llmdeployment": "tiny"}
EVICTED = {"phase": "Failed", "reason": "Evicted",
           "message": "Pod ephemeral local storage usage exceeds the total limit of containers 20Gi."}


def oom(restarts: int, container_id: str, now: bool = False) -> dict:
    """A container status killed for memory: terminated now (``now``), or restarted since."""
    ended = {"terminated": {"reason": "OOMKilled", "exitCode": 137, "containerID": container_id}}
    return {"name": "server", "restartCount": restarts, "ready": False, "image": "vllm", "imageID": "",
            **({"state": ended} if now else {"state": {"waiting": {"reason": "CrashLoopBackOff",
                                                                   "message": "back-off 10s restarting"}},
                                             "lastState": ended})}


def test_an_eviction_and_each_death_by_memory_are_told_with_what_to_raise():
    pod = {"metadata": {"uid": "u1", "name": "tiny-1"}, "status": EVICTED}
    [(key, reason, message)] = pod_warnings(pod)
    assert (key, reason) == ("u1/evicted", "PodEvicted")
    assert message == f"pod tiny-1 was evicted: {EVICTED['message']}; raise resources.ephemeralStorage"
    dying = {"metadata": {"uid": "u1", "name": "tiny-1"}, "status": {"containerStatuses": [oom(0, "c://a", now=True)]}}
    restarted = {"metadata": {"uid": "u1", "name": "tiny-1"}, "status": {"containerStatuses": [oom(1, "c://a")]}}
    assert [k for k, _, _ in pod_warnings(dying)] == [k for k, _, _ in pod_warnings(restarted)] == ["u1/server/c://a"]
    [(_, reason, message)] = pod_warnings(restarted)
    assert reason == "OOMKilled" and message.endswith(OOM_HINT) and "restarts: 1" in message
    assert pod_warnings({"metadata": {"uid": "u1"}, "status": {"phase": "Running"}}) == []


def test_a_crash_loop_says_how_the_container_last_ended():
    summary = PodSummary.of({"metadata": {"name": "tiny-1"}, "status": {"containerStatuses": [oom(3, "c://b")]}})
    assert summary.problem == ("CrashLoop", "container server: CrashLoopBackOff: back-off 10s restarting "
                                            f"(last exit: OOMKilled, code 137: {OOM_HINT})")


@pytest.fixture
def unsimulated(tmp_path: Path) -> Iterator[tuple[Kube, Operator]]:
    """An API test server that runs no pods (the test writes them, as a kubelet would), the CRDs, and the
    operator."""
    with start_apiserver(tmp_path, simulate_pods=False) as server:
        kube = Kube(server.url)
        for path in CRDS:
            for doc in yaml.safe_load_all(path.read_text()):
                kube.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)
        wait_for(lambda: kube.get("/apis/foresail.dev/v1alpha1"), what="CRD discovery")
        operator = Operator(server.kubeconfig, tmp_path / "operator.log", "--standalone").start()
        try:
            yield kube, operator
        finally:
            operator.kill(signal.SIGTERM)
            print(operator.text()[-4000:])


def test_the_owner_hears_of_each_eviction_and_death_by_memory_once(unsimulated: tuple[Kube, Operator]):
    kube, operator = unsimulated
    kube.create(LLMD.format(ns="default"), {"apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment",
                                            "metadata": {"name": "tiny"}, "spec": {
                                                "model": {"source": "builtin:tiny"}, "autoscaling": {"mode": "off"}}})
    wait_for(lambda: kube.read(f"{LLMD.format(ns='default')}/tiny").get("status"), timeout=30, what="a status")
    for name in ("tiny-a", "tiny-b"):
        kube.create(PODS, {"metadata": {"name": name, "labels": LABELS},
                           "spec": {"containers": [{"name": "server", "image": "vllm"}]}})

    def warnings() -> list[tuple[str, str]]:
        return sorted((e["reason"], e["message"]) for e in kube.read(EVENTS)["items"]  # not Degraded's own
                      if e["involvedObject"]["name"] == "tiny" and e["reason"] in ("PodEvicted", "OOMKilled"))

    kube.merge(f"{PODS}/tiny-a/status", {"status": EVICTED})
    kube.merge(f"{PODS}/tiny-b/status", {"status": {"containerStatuses": [oom(0, "c://1", now=True)]}})
    kube.merge(f"{PODS}/tiny-b/status", {"status": {"containerStatuses": [oom(1, "c://1")]}})  # the same death
    kube.merge(f"{PODS}/tiny-a", {"metadata": {"labels": {"seen": "again"}}})  # another event, same eviction
    kube.merge(f"{PODS}/tiny-b/status", {"status": {"containerStatuses": [oom(2, "c://2")]}})  # a second death
    told = wait_for(lambda: len(w := warnings()) >= 3 and w, timeout=20, what="three warnings")
    assert [reason for reason, _ in told] == ["OOMKilled", "OOMKilled", "PodEvicted"]
    assert "pod tiny-a was evicted: Pod ephemeral local storage usage exceeds" in told[2][1]
    assert operator.text().count("PodEvicted: pod tiny-a") == 1
    # a restarted operator lists what happened before it watched and tells none of it again, only what comes
    operator.kill(signal.SIGTERM)
    operator.start()
    wait_for(lambda: "Resuming is processed" in operator.text(), timeout=30, what="the operator watching again")
    kube.merge(f"{PODS}/tiny-a", {"metadata": {"labels": {"seen": "after-restart"}}})
    kube.merge(f"{PODS}/tiny-b/status", {"status": {"containerStatuses": [oom(3, "c://3")]}})
    after = wait_for(lambda: len(w := warnings()) > 3 and w, timeout=30, what="the new death told")
    assert [reason for reason, _ in after] == ["OOMKilled"] * 3 + ["PodEvicted"]
