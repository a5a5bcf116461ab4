"""The activator (`foresail activator`, a real process over HTTP) and the operator's answer to it.

Errors the activator answers itself need no inference server: an unknown model, a body without one,
a deployment that never gets a replica, too many held requests, a deployment deleted meanwhile. The
operator's side runs the real operator process against the API test server with simulated pods. The
whole path with real inference processes is tests/e2e/test_activator.py.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from foresail.demo.prometheus import PrometheusServer, free_port
from foresail_operator.activation import HELD_REQUESTS, REQUESTED_AT, requested_at
from foresail_operator.metrics import PrometheusSource, Signals
from tests.helpers import logged_process, wait_for
from tests.operator.conftest import LLMD

TIMEOUT_S = 2


def llmd(name: str, **spec: object) -> dict:
    return {"apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": name},
            "spec": {"model": {"source": "builtin:tiny"}, **spec}}


# nothing will ever start a replica
AT_ZERO_OFF: dict[str, Any] = {"replicas": 0, "autoscaling": {"mode": "off", "scaleToZero": {"enabled": True}}}


@contextlib.contextmanager
def running_activator(cluster, tmp_path: Path, upstream: str, *extra: str) -> Iterator[tuple[str, subprocess.Popen]]:
    """`foresail activator` on a free port, holding requests for TIMEOUT_S at most and one at a time
    (``extra``: more flags): its URL and process."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return requests.get(url + "/healthz", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    with logged_process([sys.executable, "-m", "foresail", "activator", "--kubeconfig", str(cluster.kubeconfig),
                         "--host", "127.0.0.1", "--port", str(port), "--hold-timeout", str(TIMEOUT_S),
                         "--max-held", "1", "--upstream", upstream, *extra], tmp_path / "activator.log") as proc:
        wait_for(healthy, timeout=30, what="the activator's /healthz")
        yield url, proc


@pytest.fixture
def activator(cluster, tmp_path: Path) -> Iterator[str]:
    """The activator with an upstream nothing listens on (port 9)."""
    with running_activator(cluster, tmp_path, "http://127.0.0.1:9") as (url, _):
        yield url


def served(url: str) -> list[str]:
    """The models the activator lists (as its watch last showed the LLMDeployments)."""
    return [m["id"] for m in requests.get(url + "/v1/models", timeout=10).json()["data"]]


def deploy(cluster, url: str, name: str, timeout: float = 1.0, **spec: object) -> None:
    """Create an LLMDeployment and wait until the activator's watch shows it (within a second)."""
    cluster.kube.create(LLMD.format(ns="default"), llmd(name, **spec))
    wait_for(lambda: name in served(url), timeout=timeout, what=f"{name} in the activator's /v1/models")


def chat(url: str, model: str | list[str], timeout: float = 30) -> requests.Response:
    return requests.post(url + "/v1/chat/completions", timeout=timeout,
                         json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})


def metric(url: str, outcome: str) -> float:
    text = requests.get(url + "/metrics", timeout=5).text
    lines = [ln for ln in text.splitlines()
             if ln.startswith("foresail_activator_requests_total{") and f'outcome="{outcome}"' in ln]
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in lines)


def test_a_request_without_a_model_or_for_an_unknown_one_gets_a_clear_error(cluster, activator: str):
    deploy(cluster, activator, "tiny", **AT_ZERO_OFF)
    rsp = requests.post(activator + "/v1/chat/completions", data=b"not json", timeout=10)
    assert rsp.status_code == 400 and '"model" field' in rsp.json()["error"]["message"]
    rsp = chat(activator, ["tiny"])
    assert rsp.status_code == 400
    rsp = chat(activator, "nope")
    assert rsp.status_code == 404, rsp.text
    assert rsp.json()["error"]["message"] == "no LLMDeployment serves model 'nope'; served models: tiny"
    models = requests.get(activator + "/v1/models", timeout=10).json()["data"]
    assert [(m["id"], m["llmdeployment"], m["ready_replicas"]) for m in models] == [("tiny", "default/tiny", 0)]
    assert metric(activator, "bad_request") == 2 and metric(activator, "unknown_model") == 1


def test_two_deployments_serving_one_model_name_are_refused(cluster, activator: str):
    for name in ("a", "b"):
        cluster.kube.create(LLMD.format(ns="default"), llmd(name, **AT_ZERO_OFF, model={
            "source": "builtin:tiny", "servedModelName": "shared"}))
    wait_for(lambda: served(activator) == ["shared", "shared"], timeout=1, what="both in /v1/models")
    rsp = chat(activator, "shared")
    assert rsp.status_code == 400 and "default/a, default/b" in rsp.json()["error"]["message"], rsp.text


def test_a_held_request_times_out_with_the_reason_and_the_next_one_is_refused_while_it_waits(cluster, activator: str):
    deploy(cluster, activator, "tiny", timeout=10, **AT_ZERO_OFF)  # or the request may come first: unknown model
    cluster.kube.merge(LLMD.format(ns="default") + "/tiny/status", {"status": {"conditions": [
        {"type": "Ready", "status": "False", "reason": "Unschedulable", "message": "0/1 nodes have a free GPU"}]}})
    answers: list[requests.Response] = []
    held = threading.Thread(target=lambda: answers.append(chat(activator, "tiny")))
    started = time.monotonic()
    held.start()
    wait_for(lambda: requested_at(cluster.kube.get(LLMD.format(ns="default") + "/tiny") or {}),
             what="the activator's stamp on the LLMDeployment")
    second = chat(activator, "tiny")  # --max-held 1: refused at once, not held
    assert second.status_code == 503 and "1 requests are already waiting" in second.json()["error"]["message"]
    held.join(timeout=30)
    waited = time.monotonic() - started
    rsp = answers[0]
    assert rsp.status_code == 503 and rsp.headers["Retry-After"] == "30"
    assert rsp.json()["error"]["message"] == (
        f"default/tiny has no ready replica after {TIMEOUT_S} s (Ready: 0/1 nodes have a free GPU)")
    assert TIMEOUT_S <= waited < TIMEOUT_S + 5
    annotations = cluster.kube.get(LLMD.format(ns="default") + "/tiny")["metadata"]["annotations"]
    assert annotations[REQUESTED_AT].endswith("+00:00") and annotations[HELD_REQUESTS] == "1"
    assert metric(activator, "timeout") == 1 and metric(activator, "overloaded") == 1


def test_a_request_held_for_a_deployment_that_is_deleted_gets_a_404(cluster, activator: str):
    deploy(cluster, activator, "tiny", timeout=10, **AT_ZERO_OFF)  # or the request may come first: unknown model
    answers: list[requests.Response] = []
    held = threading.Thread(target=lambda: answers.append(chat(activator, "tiny")))
    held.start()
    wait_for(lambda: requested_at(cluster.kube.get(LLMD.format(ns="default") + "/tiny") or {}), what="the stamp")
    cluster.kube.delete(LLMD.format(ns="default") + "/tiny")
    held.join(timeout=30)
    assert answers[0].status_code == 404
    assert answers[0].json()["error"]["message"] == "default/tiny was deleted while the request waited"


@pytest.mark.parametrize("mode, woken", [("predictive", 1), ("reactive", 1), ("advisory", 0)])
def test_the_operator_gives_a_stamped_deployment_at_zero_a_replica_at_once(cluster, operator, mode: str, woken: int):
    """A long interval, so that only the stamp's handler (not the decision loop) can act in time."""
    path = LLMD.format(ns="default") + "/tiny"
    cluster.kube.create(LLMD.format(ns="default"), llmd("tiny", replicas=0, minReplicas=1, autoscaling={
        "mode": mode, "intervalSeconds": 600, "scaleToZero": {"enabled": True}}))
    deployment = "/apis/apps/v1/namespaces/default/deployments/tiny"
    wait_for(lambda: cluster.kube.get(deployment), timeout=30, what="the owned Deployment")
    assert cluster.kube.get(deployment)["spec"]["replicas"] == 0
    cluster.kube.merge(path, {"metadata": {"annotations": {REQUESTED_AT: "2026-01-01T00:00:00.000+00:00"}}})
    if woken:
        wait_for(lambda: cluster.kube.get(deployment)["spec"]["replicas"] == 1, timeout=20, what="replicas 1")
        status = wait_for(lambda: (cluster.kube.get(path) or {}).get("status", {}).get("lastScaleReason"), timeout=10)
        assert status == "a request is waiting at the activator: 0 -> 1"
        wait_for(lambda: (cluster.kube.get(path) or {}).get("status", {}).get("readyReplicas") == 1, timeout=20,
                 what="status.readyReplicas 1 (what the activator waits for)")
    else:
        time.sleep(3)
        assert cluster.kube.get(deployment)["spec"]["replicas"] == 0


def test_a_deployment_whose_service_cannot_be_reached_gets_a_502_after_the_retries(cluster, activator: str):
    """Status says one replica is ready, but nothing answers at the upstream (port 9): the request is held
    as at zero (the status read anew says ready), the connection retried for 10 s, then a 502."""
    deploy(cluster, activator, "tiny", timeout=10, **AT_ZERO_OFF)
    cluster.kube.merge(LLMD.format(ns="default") + "/tiny/status", {"status": {"readyReplicas": 1}})
    started = time.monotonic()
    rsp = chat(activator, "tiny")
    assert rsp.status_code == 502, rsp.text
    assert rsp.json()["error"]["message"].startswith(
        "cannot reach default/tiny at http://127.0.0.1:9/v1/chat/completions")
    assert 10 <= time.monotonic() - started < 20
    assert metric(activator, "unreachable") == 1


def test_an_upstream_that_drops_the_connection_gets_a_502_without_a_retry(cluster, tmp_path: Path):
    """The Service accepts and closes at once: the request may have been sent, so it is not sent again."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []

    def drop() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(1)
            conn.close()

    threading.Thread(target=drop, daemon=True).start()
    cluster.kube.create(LLMD.format(ns="default"), llmd("tiny", **AT_ZERO_OFF))
    cluster.kube.merge(LLMD.format(ns="default") + "/tiny/status", {"status": {"readyReplicas": 1}})
    try:
        with running_activator(cluster, tmp_path, f"http://127.0.0.1:{listener.getsockname()[1]}") as (url, _):
            rsp = chat(url, "tiny")
            assert rsp.status_code == 502, rsp.text
            assert "failed before answering" in rsp.json()["error"]["message"]
            assert metric(url, "upstream_error") == 1
    finally:
        listener.close()
    assert len(accepted) == 1


class Answer(http.server.BaseHTTPRequestHandler):
    """Stands in for a deployment's Service: answers every POST with a fixed completion."""

    def do_POST(self) -> None:  # noqa: N802 (the http.server convention)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"object": "chat.completion", "choices": [{"message": {"content": "hi"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def test_while_the_api_server_cannot_be_read_requests_are_routed_on_what_the_watch_last_showed(
        cluster, tmp_path: Path):
    """Fail-static in the data path: an API outage must not turn away requests for a ready deployment, and
    the activator tries the API server again with a backoff (1 s, 2 s, ...), not at every request."""
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    cluster.kube.create(LLMD.format(ns="default"), llmd("tiny", **AT_ZERO_OFF))
    cluster.kube.merge(LLMD.format(ns="default") + "/tiny/status", {"status": {"readyReplicas": 1}})
    llmds = r"^/apis/foresail\.dev/v1alpha1/llmdeployments"  # lists and watches
    try:
        cluster.faults(method="GET", path=llmds, status=503, count=1000)
        with running_activator(cluster, tmp_path, f"http://127.0.0.1:{upstream.server_address[1]}") as (url, _):
            rsp = chat(url, "tiny")  # never listed: a clear 503
            assert rsp.status_code == 503 and rsp.headers["Retry-After"] == "5", rsp.text
            assert rsp.json()["error"]["message"].startswith("cannot look up model 'tiny': ")
            cluster.clear_faults()
            wait_for(lambda: chat(url, "tiny").status_code == 200, timeout=5, what="tiny routed once listed")

            cluster.faults(method="GET", path=llmds, status=503, count=1000)
            assert cluster.drop_watches() >= 1
            cluster.clear_audit()
            started = time.monotonic()
            for _ in range(10):
                assert chat(url, "nope").status_code == 404
                assert chat(url, "tiny").status_code == 200
            time.sleep(max(0.0, 3.5 - (time.monotonic() - started)))
            tries = [e for e in cluster.audit() if e["resource"] == "llmdeployments" and e["verb"] in ("list", "watch")]
            assert 2 <= len(tries) <= 4, tries  # at about 0, 1 and 3 s: not once per request
            cluster.clear_faults()
            deploy(cluster, url, "late", timeout=6, **AT_ZERO_OFF)  # watched again at the next try (about 7 s)
        log = (tmp_path / "activator.log").read_text()
        assert "cannot list or watch llmdeployments" in log and "keeping the last state" in log
        assert "llmdeployments can be listed and watched again" in log
    finally:
        upstream.shutdown()


def test_a_deployment_created_while_the_activator_runs_is_routed_at_once(cluster, activator: str):
    """The watch shows it within a second (the old listing every 10 s did not)."""
    deploy(cluster, activator, "tiny", **AT_ZERO_OFF)
    assert chat(activator, "late").status_code == 404
    deploy(cluster, activator, "late", **AT_ZERO_OFF)
    rsp = chat(activator, "late")  # found, held, and given up: it never gets a replica
    assert rsp.status_code == 503 and "default/late has no ready replica" in rsp.json()["error"]["message"], rsp.text


def test_a_stopping_activator_answers_the_requests_it_holds_before_it_exits(cluster, tmp_path: Path):
    """SIGTERM (a rollout): no new connections, but what is held keeps its hold timeout and gets its answer."""
    cluster.kube.create(LLMD.format(ns="default"), llmd("tiny", **AT_ZERO_OFF))
    with running_activator(cluster, tmp_path, "http://127.0.0.1:9") as (url, proc):
        answers: list[requests.Response] = []
        held = threading.Thread(target=lambda: answers.append(chat(url, "tiny")))
        held.start()
        wait_for(lambda: requested_at(cluster.kube.get(LLMD.format(ns="default") + "/tiny") or {}), what="the stamp")
        proc.terminate()
        held.join(timeout=30)
        assert answers and answers[0].status_code == 503, answers  # its timeout answer, not a dropped connection
        assert "has no ready replica after" in answers[0].json()["error"]["message"]
        assert proc.wait(timeout=15) == 0


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus (make install)")
def test_the_arrivals_it_counts_reach_the_operators_metrics_path_through_a_real_prometheus(cluster, tmp_path: Path):
    """The activator exports a count of arrivals from 0 for every deployment it lists; a real Prometheus
    scraping it as the chart does keeps their labels, and the operator's `PrometheusSource` reads them:
    the instant rate (a quiet deployment at zero reads 0, not missing) and the backfill's history where no
    pod reported. A deleted deployment's count goes at the next listing."""
    upstream = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    path = LLMD.format(ns="default")
    cluster.kube.create(path, llmd("busy", **AT_ZERO_OFF))
    cluster.kube.merge(path + "/busy/status", {"status": {"readyReplicas": 1}})
    cluster.kube.create(path, llmd("quiet", **AT_ZERO_OFF))
    try:
        with running_activator(cluster, tmp_path, f"http://127.0.0.1:{upstream.server_address[1]}") as (url, _), \
                PrometheusServer(tmp_path / "prometheus") as prometheus:
            prometheus.scrape_activator(url.removeprefix("http://"))
            source = PrometheusSource(prometheus.url, timeout_s=5.0, window="5s")
            stop = threading.Event()

            def send() -> None:  # 4 req/s for "busy"
                while not stop.wait(0.25):
                    chat(url, "busy")

            sender = threading.Thread(target=send, daemon=True)
            sender.start()
            try:
                wait_for(lambda: (source.snapshot(["foresail"]).get(("default", "busy")) or Signals()).arrivals,
                         timeout=40, what="busy's arrivals in Prometheus")
                time.sleep(6)  # a 5-s rate() reads low until the series is older than its window
                snapshot = source.snapshot(["foresail"])
            finally:
                stop.set()
                sender.join()
            assert snapshot[("default", "busy")].arrivals == pytest.approx(4.0, rel=0.5)
            assert snapshot[("default", "quiet")].arrivals == 0 and snapshot[("default", "quiet")].requests is None
            now = time.time()
            times, values = source.demand_history(("default", "quiet"), "foresail", now - 30, now, 1.0)
            assert times and set(values) == {0.0}  # watched and quiet, not a gap
            _, busy = source.demand_history(("default", "busy"), "foresail", now - 30, now, 1.0)
            _, tokens = source.demand_history(("default", "busy"), "foresail", now - 30, now, 1.0, unit="tokens",
                                              tokens_per_request=100.0)
            assert max(busy) > 2 and tokens == pytest.approx([100 * v for v in busy])  # no pod counted tokens

            cluster.kube.delete(path + "/quiet")
            wait_for(lambda: 'llmdeployment="quiet"' not in requests.get(url + "/metrics", timeout=5).text
                     .split("foresail_activator_arrivals_total", 1)[1].split("# HELP", 1)[0],
                     timeout=30, what="quiet's count gone after its deletion")
    finally:
        upstream.shutdown()


def series(url: str, name: str) -> list[str]:
    """The activator's series of one deployment (requests by outcome, held, arrivals)."""
    return [ln for ln in requests.get(url + "/metrics", timeout=5).text.splitlines()
            if ln.startswith("foresail_activator_") and f'llmdeployment="{name}"' in ln]


def test_a_deleted_deployments_series_go_once_its_requests_are_answered(cluster, tmp_path: Path):
    """Its requests by outcome and its held gauge go as its arrivals do: those of one deleted while idle at once,
    those of one deleted while a request waits once that request has its 404 (counted, then gone)."""
    with running_activator(cluster, tmp_path, "http://127.0.0.1:9", "--hold-timeout", "30") as (url, _):
        deploy(cluster, url, "idle", timeout=10, **AT_ZERO_OFF)
        deploy(cluster, url, "busy", timeout=10, **AT_ZERO_OFF)
        cluster.kube.merge(LLMD.format(ns="default") + "/idle/status", {"status": {"readyReplicas": 1}})
        wait_for(lambda: chat(url, "idle").status_code == 502, timeout=30, what="idle's request answered")
        answers: list[requests.Response] = []
        waiting = threading.Thread(target=lambda: answers.append(chat(url, "busy")))
        waiting.start()
        wait_for(lambda: requested_at(cluster.kube.get(LLMD.format(ns="default") + "/busy") or {}), what="the stamp")
        families = {"foresail_activator_requests_total", "foresail_activator_held_requests"}
        assert families <= {s.split("{")[0] for s in series(url, "idle")}
        assert "foresail_activator_held_requests" in {s.split("{")[0] for s in series(url, "busy")}
        for name in ("idle", "busy"):
            cluster.kube.delete(LLMD.format(ns="default") + f"/{name}")
        waiting.join(timeout=30)
        assert answers[0].status_code == 404, answers[0].text
        wait_for(lambda: not series(url, "idle") and not series(url, "busy"), timeout=10,
                 what="no series of the deleted deployments")
        assert metric(url, "unknown_model") == 0  # gone with busy's series
