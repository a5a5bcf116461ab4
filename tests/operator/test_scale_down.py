"""A scale-down removes the pods with the fewest requests in flight.

The real operator process reads each ready pod's requests in flight from the pod's own /metrics and writes
them as the pod's controller.kubernetes.io/pod-deletion-cost before it lowers the replicas; the API test
server's Deployment controller removes pods in the ReplicaSet controller's order (tested in tests/kubetest),
in which Kubernetes' own tie-breaks would remove the busiest pods here.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import kopf
import pytest

from foresail.demo.prometheus import PrometheusServer, free_port
from foresail.kubetest.controllers import deletion_order
from foresail.kubetest.testing import start_apiserver
from foresail_operator.kube import KubeClient
from foresail_operator.scaler import READ_TIMEOUT_S, deletion_costs, in_flight, mark_idlest, requests_in
from foresail_operator.status import DELETION_COST, PodSummary
from tests.helpers import Kube, wait_for
from tests.operator.conftest import LLMD, Operator
from tests.operator.exporters import pods_in_flight, serving

PODS = "/api/v1/namespaces/default/pods?labelSelector=foresail.dev%2Fllmdeployment%3Dtiny"
SPECS = {
    # spec.replicas lowered by hand: the reconciler scales down
    "off": {"replicas": 3, "autoscaling": {"mode": "off"}},
    # scaled up by hand, then down by the decision loop once Prometheus shows no demand
    "reactive": {"minReplicas": 1, "maxReplicas": 3,
                 "autoscaling": {"mode": "reactive", "intervalSeconds": 5, "scaleDown": {"stabilizationSeconds": 0}}},
}


def pod(name: str, cost: str | None = None, url: str | None = None) -> PodSummary:
    return PodSummary(name, None, 1.0, None, cost, url)


def test_each_pod_costs_its_requests_in_flight_and_only_changes_are_written():
    pods = [pod("new"), pod("same", "3"), pod("huge", "1"), pod("unknown"), pod("unread", "5")]
    figures = {"new": 2.4, "same": 3.0, "huge": 1e12, "not-ours": 8.0}
    # a ready pod without a figure may be busy: ranked last; one not ready goes first whatever its cost
    pods += [PodSummary("starting", None, None, None, "4", None)]
    assert deletion_costs(pods, figures) == {"new": "2", "huge": "2147483647", "unknown": "2147483647",
                                             "unread": "2147483647", "starting": None}


def test_the_requests_in_flight_are_the_runtimes_running_and_queued_samples_added_up():
    text = ('# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name="a"} 3.0\n'
            'vllm:num_requests_running{model_name="b"} 1.0\n# TYPE vllm:num_requests_waiting gauge\n'
            'vllm:num_requests_waiting{model_name="a"} 2.0\n# TYPE other gauge\nother 9.0\n')
    names = {"vllm:num_requests_running", "vllm:num_requests_waiting"}
    assert requests_in(text, names) == 6.0
    assert requests_in("other 9.0\n", names) is None  # no such metric: no figure, not 0
    assert requests_in("vllm:num_requests_running{ 3\n", names) is None  # garbage


async def test_pods_that_cannot_be_read_get_no_figure_a_warning_and_go_last(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    """A ready pod whose /metrics cannot be read may be busy: it gets the highest cost, so the pods known to be
    idle go first; a pod not ready gets none (the ReplicaSet controller removes those first anyway)."""
    closed = f"http://127.0.0.1:{free_port()}/metrics"
    with start_apiserver(tmp_path, simulate_pods=False) as server, \
            socket.create_server(("127.0.0.1", 0)) as silent, serving({"idle": 0}) as urls:  # silent: never answers
        kube = Kube(server.url)
        for name in ("refuses", "no-address", "hangs", "starting", "idle"):
            kube.create("/api/v1/namespaces/default/pods", {"metadata": {"name": name}, "spec": {
                "containers": [{"name": "server", "image": "vllm"}]}})
        hangs = f"http://127.0.0.1:{silent.getsockname()[1]}/metrics"
        pods = [pod("refuses", url=closed), pod("no-address"), pod("hangs", url=hangs),
                PodSummary("starting", None, None, None, None, closed), pod("idle", url=urls["idle"])]
        started = time.monotonic()
        assert await in_flight(pods, "vllm") == {"idle": 0.0}
        assert time.monotonic() - started < 3 * READ_TIMEOUT_S  # bounded, not a hang: the reads run at once
        client = KubeClient(kopf.ConnectionInfo(server=server.url, insecure=True))
        try:
            with caplog.at_level(logging.INFO):
                await mark_idlest(client, ("default", "tiny"), "vllm", pods, logging.getLogger("test"))
        finally:
            await client.close()
        costs = {p["metadata"]["name"]: (p["metadata"].get("annotations") or {}).get(DELETION_COST)
                 for p in kube.read("/api/v1/namespaces/default/pods")["items"]}
    assert costs == {"refuses": "2147483647", "no-address": "2147483647", "hangs": "2147483647", "starting": None,
                     "idle": "0"}
    assert "requests in flight unknown for hangs, no-address, refuses" in caplog.text  # not the pod starting
    assert "ranked last" in caplog.text and "fewest requests in flight first (idle 0)" in caplog.text


async def test_pods_already_terminating_are_neither_read_nor_marked(caplog: pytest.LogCaptureFixture):
    """An earlier scale-down's pod, still ready while its preStop runs, is not one the ReplicaSet controller
    chooses from: reading or annotating it would be wasted, and logging it among the candidates misleading."""
    with serving({"busy": 3, "draining": 0}) as urls:
        meta = {"name": "draining", "deletionTimestamp": "2026-12-04T03:00:00Z",
                "annotations": {"prometheus.io/port": str(urlsplit(urls["draining"]).port)}}
        ready = {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-04T02:00:00Z"}
        draining = PodSummary.of({"metadata": meta, "status": {"podIP": "127.0.0.1", "conditions": [ready]}})
        assert draining.terminating and draining.metrics_url == urls["draining"]
        with caplog.at_level(logging.INFO):
            await mark_idlest(None, ("default", "tiny"), "vllm",  # type: ignore[arg-type]  # nothing to patch
                              [draining, pod("busy", "3", urls["busy"])], logging.getLogger("test"))
    assert "fewest requests in flight first (busy 3)" in caplog.text


async def test_a_pod_gone_is_skipped_and_one_that_may_not_be_annotated_is_reported(
        tmp_path: Path, caplog: pytest.LogCaptureFixture):
    """404: the pod went meanwhile, the others are marked; 403 (no `patch` on pods): a warning, and the
    scale-down is left to Kubernetes' order."""
    with start_apiserver(tmp_path, simulate_pods=False) as server:
        kube = Kube(server.url)
        for name in ("a", "b"):
            kube.create("/api/v1/namespaces/default/pods", {"metadata": {"name": name}, "spec": {
                "containers": [{"name": "server", "image": "vllm"}]}})
        with serving({"gone": 7, "a": 1, "b": 4}) as urls:
            pods = [pod(name, url=url) for name, url in urls.items()]
            server.faults(method="PATCH", path="/pods/b$", status=403, message="pods is forbidden")
            client = KubeClient(kopf.ConnectionInfo(server=server.url, insecure=True))
            try:
                await mark_idlest(client, ("default", "tiny"), "vllm", pods, logging.getLogger("test"))
            finally:
                await client.close()
        assert kube.read("/api/v1/namespaces/default/pods/a")["metadata"]["annotations"] == {DELETION_COST: "1"}
        assert "annotations" not in kube.read("/api/v1/namespaces/default/pods/b")["metadata"]
    assert "cannot mark pod b for the scale-down (403" in caplog.text and "gone" not in caplog.text


def ready_pods(cluster) -> list[dict]:
    items = cluster.kube.get(PODS)["items"]
    return [p for p in items if any(c["type"] == "Ready" and c["status"] == "True"
                                    for c in (p.get("status") or {}).get("conditions") or [])]


@contextlib.contextmanager
def running_operator(cluster, tmp_path: Path, spec: dict) -> Iterator[tuple[Operator, PrometheusServer]]:
    """The real operator process with a Prometheus of its own, and the LLMDeployment ``tiny`` with ``spec``;
    prints the end of the operator's log when done."""
    with PrometheusServer(tmp_path / "prometheus") as prometheus:
        operator = Operator(cluster.kubeconfig, tmp_path / "operator.log", "--standalone",
                            "--prometheus-url", prometheus.url).start()
        try:
            cluster.kube.create(LLMD.format(ns="default"), {
                "apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "tiny"},
                "spec": {"model": {"source": "builtin:tiny"}, **spec}})
            yield operator, prometheus
        finally:
            operator.kill(signal.SIGTERM)
            print(operator.text()[-4000:])


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus (make install)")
@pytest.mark.parametrize("mode", SPECS)
def test_a_scale_down_removes_the_pods_with_the_fewest_requests_in_flight(cluster, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch, mode: str):
    monkeypatch.setenv("FORESAIL_COLLECT_PERIOD", "1")
    monkeypatch.setenv("FORESAIL_RATE_WINDOW", "5s")
    llmds = LLMD.format(ns="default")
    with running_operator(cluster, tmp_path, SPECS[mode]) as (operator, prometheus):
        if mode == "reactive":  # no series in Prometheus yet: the decision loop holds what it finds
            wait_for(lambda: cluster.kube.get(f"{llmds}/tiny").get("status"), what="a status")
            cluster.kube.merge(f"{llmds}/tiny/scale", {"spec": {"replicas": 3}})
        pods = wait_for(lambda: len(p := ready_pods(cluster)) == 3 and p, timeout=30, what="3 ready pods")
        kubernetes_order = [p["metadata"]["name"] for p in deletion_order(pods)]
        running = dict(zip(kubernetes_order, (5, 2, 0), strict=True))  # Kubernetes would remove the busiest
        with pods_in_flight(cluster.kube, "default", running, prometheus, "tiny"):
            if mode == "off":
                time.sleep(1.0)  # the operator's pod index follows the pods' new addresses (a watch)
                cluster.kube.merge(f"{llmds}/tiny", {"spec": {"replicas": 1}})
            left = wait_for(lambda: len(p := cluster.kube.get(PODS)["items"]) == 1 and p, timeout=60,
                            what="one pod left")
    assert left[0]["metadata"]["name"] == kubernetes_order[0]
    assert left[0]["metadata"]["annotations"][DELETION_COST] == "5"
    assert f"fewest requests in flight first ({kubernetes_order[2]} 0, {kubernetes_order[1]} 2, " \
           f"{kubernetes_order[0]} 5)" in operator.text()


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus (make install)")
def test_a_scale_down_during_another_ones_prestop_marks_only_the_live_pods(cluster, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch):
    """The API test server deletes a pod gracefully: it stays, terminating and ready, through its 5 s preStop
    sleep. A second scale-down meanwhile ranks only the two pods the ReplicaSet controller still chooses from."""
    monkeypatch.setenv("FORESAIL_COLLECT_PERIOD", "1")
    llmds = LLMD.format(ns="default")
    with running_operator(cluster, tmp_path, SPECS["off"]) as (operator, prometheus):
        pods = wait_for(lambda: len(p := ready_pods(cluster)) == 3 and p, timeout=30, what="3 ready pods")
        idle, light, busy = [p["metadata"]["name"] for p in deletion_order(pods)]
        with pods_in_flight(cluster.kube, "default", {busy: 5, light: 2, idle: 0}, prometheus, "tiny"):
            time.sleep(1.0)  # the operator's pod index follows the pods' new addresses (a watch)
            cluster.kube.merge(f"{llmds}/tiny", {"spec": {"replicas": 2}})
            going = wait_for(lambda: [p["metadata"]["name"] for p in cluster.kube.get(PODS)["items"]
                                      if p["metadata"].get("deletionTimestamp")], timeout=30, interval=0.05,
                             what="a pod terminating")
            assert going == [idle]
            cluster.kube.merge(f"{llmds}/tiny", {"spec": {"replicas": 1}})
            wait_for(lambda: f"fewest requests in flight first ({light} 2, {busy} 5)" in operator.text(),
                     timeout=30, what="the second scale-down's ranking, without the terminating pod")
            left = wait_for(lambda: len(p := cluster.kube.get(PODS)["items"]) == 1 and p, timeout=60,
                            what="one pod left")
    assert left[0]["metadata"]["name"] == busy
