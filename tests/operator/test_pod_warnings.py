"""Evictions and containers killed for memory reach the LLMDeployment as Warning Events, once each, and a
crash-looping container's last exit reaches the Degraded condition, which stays while the container tries again."""

from __future__ import annotations

import concurrent.futures
import logging
import signal
import time
from pathlib import Path
from typing import Iterator

import kopf
import pytest

from foresail.kubetest.testing import start_apiserver
from foresail_operator import handlers
from foresail_operator.kube import KubeClient
from foresail_operator.status import OOM_HINT, PodSummary, pod_warnings
from tests.helpers import Kube, KubeServer, condition, wait_for
from tests.operator.conftest import LLMD, Operator

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


def create_tiny(kube: Kube) -> None:
    """An LLMDeployment ``tiny`` in ``default`` with autoscaling off, once the operator has given it a status."""
    kube.create(LLMD.format(ns="default"), {"apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment",
                                            "metadata": {"name": "tiny"}, "spec": {
                                                "model": {"source": "builtin:tiny"}, "autoscaling": {"mode": "off"}}})
    wait_for(lambda: kube.read(f"{LLMD.format(ns='default')}/tiny").get("status"), timeout=30, what="a status")


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


def test_a_failing_init_container_says_what_it_last_said():
    """The fetch-model init container's termination message (FallbackToLogsOnError: its log's end) reaches the
    problem, on one line and cut to its last 200 characters."""
    said = "curl: (60) SSL certificate problem\nfetch-model: uid 10001 cannot write to /models-cache/downloads"
    fetch = {"name": "fetch-model", "restartCount": 2, "ready": False,
             "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 20s"}},
             "lastState": {"terminated": {"reason": "Error", "exitCode": 1, "message": said}}}
    summary = PodSummary.of({"metadata": {"name": "tiny-1"}, "status": {"initContainerStatuses": [fetch]}})
    assert summary.problem == ("CrashLoop", "container fetch-model: CrashLoopBackOff: back-off 20s (last exit: "
                                            "Error, code 1: " + " ".join(said.split()) + ")")
    fetch["lastState"]["terminated"]["message"] = "x" * 300 + "the end"
    assert PodSummary.of({"metadata": {"name": "tiny-1"}, "status": {"initContainerStatuses": [fetch]}}).problem[1] \
        .endswith("x" * 193 + "the end)")


def running(restarts: int, ready: bool = False) -> dict:
    """A container status started again (at 01:00) after it was killed for memory."""
    ended = {"terminated": {"reason": "OOMKilled", "exitCode": 137, "containerID": f"c://{restarts}"}}
    return {"name": "server", "restartCount": restarts, "ready": ready, "image": "vllm", "imageID": "",
            "state": {"running": {"startedAt": "2026-01-01T01:00:00Z"}}, "lastState": ended}


def pod_status(container: dict, ready: bool = False, since: str = "2026-01-01T00:59:00Z") -> dict:
    """A pod's status with this one container, Ready (or not) since `since`."""
    return {"phase": "Running", "containerStatuses": [container], "conditions": [
        {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": since}]}


def test_a_container_started_again_after_a_failure_is_crash_looping_until_it_is_ready():
    def problem(status: dict) -> tuple[str, str] | None:
        return PodSummary.of({"metadata": {"name": "tiny-1"}, "status": status}).problem

    assert problem(pod_status(running(7))) == (
        "CrashLoop", f"container server: not ready again after 7 restarts (last exit: OOMKilled, code 137: {OOM_HINT})")
    assert problem(pod_status(running(7, ready=True), ready=True)) is None
    # ready after its start, then not (a readiness probe failing under load): no crash loop
    assert problem(pod_status(running(7), since="2026-01-01T01:05:00Z")) is None
    clean = {**running(1), "lastState": {"terminated": {"reason": "Completed", "exitCode": 0}}}
    assert problem(pod_status(clean)) is None


@pytest.fixture
def unsimulated(unsimulated: KubeServer, tmp_path: Path) -> Iterator[tuple[Kube, Operator]]:
    """conftest's API test server that runs no pods (the test writes them, as a kubelet would), with the
    operator."""
    operator = Operator(unsimulated.kubeconfig, tmp_path / "operator.log", "--standalone").start()
    try:
        yield unsimulated.kube, operator
    finally:
        operator.kill(signal.SIGTERM)
        print(operator.text()[-4000:])


def test_the_owner_hears_of_each_eviction_and_death_by_memory_once(unsimulated: tuple[Kube, Operator]):
    kube, operator = unsimulated
    create_tiny(kube)
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


def test_a_crash_loop_stays_degraded_between_restarts_with_one_warning(unsimulated: tuple[Kube, Operator]):
    """Degraded stays CrashLoop while the kubelet runs the container again after each death (not ready yet),
    so the owner gets one Warning for the crash loop, and one Recovered once the pod is ready."""
    kube, _ = unsimulated
    path = f"{LLMD.format(ns='default')}/tiny"
    create_tiny(kube)
    kube.create(PODS, {"metadata": {"name": "tiny-a", "labels": LABELS},
                       "spec": {"containers": [{"name": "server", "image": "vllm"}]}})

    def degraded() -> tuple[str, str, str]:
        found = condition(kube.read(path), "Degraded")
        return found.get("status", ""), found.get("reason", ""), found.get("message", "")

    for restarts in (1, 2, 3):
        kube.merge(f"{PODS}/tiny-a/status", {"status": pod_status(oom(restarts, f"c://{restarts}"))})
        wait_for(lambda: "CrashLoopBackOff" in degraded()[2], what="the back-off")
        kube.merge(f"{PODS}/tiny-a/status", {"status": pod_status(running(restarts))})
        wait_for(lambda: degraded()[2].startswith("container server: not ready again after"), what="the next try")
        assert degraded()[:2] == ("True", "CrashLoop")
    kube.merge(f"{PODS}/tiny-a/status", {"status": pod_status(running(3, ready=True), ready=True,
                                                               since="2026-01-01T01:02:00Z")})
    wait_for(lambda: degraded()[0] == "False", what="recovery")

    def told() -> list[str]:
        return [e["reason"] for e in kube.read(EVENTS)["items"]
                if e["involvedObject"]["name"] == "tiny" and e["reason"] in ("CrashLoop", "Recovered")]

    wait_for(lambda: "Recovered" in told(), what="the Recovered event")
    assert sorted(told()) == ["CrashLoop", "Recovered"]  # one each, not a pair per restart


def test_pods_that_change_at_once_tell_each_problem_and_recovery_once(unsimulated: tuple[Kube, Operator]):
    """Six pods crash, then all become ready at once: their handlers run side by side, and each status refresh
    waits for the one before. It used to start from the LLMDeployment as read before the wait (or as the watch had
    not brought back yet), so it wrote again what the one before had written, posting CrashLoop and Recovered
    again: 9 and 14 Events for 3 of each."""
    kube, _ = unsimulated
    path = f"{LLMD.format(ns='default')}/tiny"
    create_tiny(kube)
    names = [f"tiny-{i}" for i in range(6)]
    for name in names:
        kube.create(PODS, {"metadata": {"name": name, "labels": LABELS},
                           "spec": {"containers": [{"name": "server", "image": "vllm"}]}})

    def degraded() -> str:
        return condition(kube.read(path), "Degraded").get("status", "")

    for trial in range(2):
        for name in names:
            kube.merge(f"{PODS}/{name}/status", {"status": pod_status(oom(trial + 1, f"c://{trial}"))})
        wait_for(lambda: degraded() == "True", what="Degraded")
        ready = {"status": pod_status(running(trial + 1, ready=True), ready=True, since="2026-01-01T01:02:00Z")}
        with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:  # every pod ready at once
            list(pool.map(kube.merge, [f"{PODS}/{name}/status" for name in names], [ready] * len(names)))
        wait_for(lambda: degraded() == "False", what="recovery")
        time.sleep(2)  # the refreshes still waiting write nothing, and tell nothing

    told = [e["reason"] for e in kube.read(EVENTS)["items"]
            if e["involvedObject"]["name"] == "tiny" and e["reason"] in ("CrashLoop", "Recovered")]
    assert sorted(told) == ["CrashLoop"] * 2 + ["Recovered"] * 2


async def test_the_warnings_told_for_a_pod_gone_during_a_watch_gap_are_dropped(tmp_path: Path) -> None:
    """A pod deleted while the watch was down never gets its DELETED event: once a LIST finds it gone, the keys of
    the warnings told for it are dropped too (kept for every evicted pod otherwise), those of a pod still there
    kept (it is not told again)."""
    key = ("default", "tiny")
    with start_apiserver(tmp_path, simulate_pods=False) as server:
        kube = Kube(server.url)
        uids = []
        for name in ("tiny-1", "tiny-2"):
            pod = kube.create(PODS, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": LABELS},
                                     "spec": {"containers": [{"name": "server", "image": "i"}]}})
            pod["status"] = EVICTED
            handlers._warn_once(None, kopf.Body(pod), None, logging.getLogger("test"))  # as the first listing
            uids.append(pod["metadata"]["uid"])
        kube.delete(f"{PODS}/tiny-1")
        client = KubeClient(kopf.ConnectionInfo(server=server.url, insecure=True))
        try:
            index = {key: [PodSummary(f"tiny-{i + 1}", None, None, None, uid=uid) for i, uid in enumerate(uids)]}
            pods = await handlers._pods(client, index, key, {"status": {"replicas": 1}})  # type: ignore[arg-type]
        finally:
            await client.close()
            handlers._pods_listed.pop(key, None)
    try:
        assert [p.name for p in pods] == ["tiny-2"]
        assert f"{uids[0]}/evicted" not in handlers._warned and f"{uids[1]}/evicted" in handlers._warned
    finally:
        handlers._warned.clear()
