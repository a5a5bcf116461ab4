"""What the activator (the real `foresail activator` process over HTTP) keeps and sends at once: as many
requests to the pods as they take (no pool of 100 connections shared by every deployment), request bodies
held within a byte budget, a request body within its configured limit, and no pods kept for a Service whose
EndpointSlices are gone."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import kopf
import pytest
import requests
from aiohttp import web

from foresail_operator.activation import REQUESTED_AT
from foresail_operator.activator import Activator
from foresail_operator.kube import KubeClient
from tests.helpers import wait_for
from tests.operator.conftest import LLMD
from tests.operator.test_activator import AT_ZERO_OFF, TIMEOUT_S, Answer, chat, deploy, llmd, metric, running_activator
from tests.operator.test_activator_balance import SLICES, Pod, endpoint_slice
from tests.operator.test_activator_faults import held, serve

CONCURRENT = 120  # more than aiohttp's default pool of 100 connections


class RoomyPod(Pod):
    """A pod that takes every request at once (its accept queue holds them all), answering once ``go`` is set."""

    request_queue_size = 2 * CONCURRENT


def test_more_requests_than_aiohttps_default_pool_reach_the_pod_at_once(cluster, tmp_path: Path):
    """Long generations: the 101st request and later must reach the pod, whose queue the operator reads, not wait
    unseen inside the activator for one of the first 100 to end."""
    pod = RoomyPod()
    cluster.kube.create(LLMD.format(ns="default"), llmd("tiny", **AT_ZERO_OFF))
    cluster.kube.merge(LLMD.format(ns="default") + "/tiny/status", {"status": {"readyReplicas": 1}})
    body: dict[str, Any] = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
    try:
        with running_activator(cluster, tmp_path, pod.url, "--routing", "service") as (url, _), \
                ThreadPoolExecutor(CONCURRENT) as pool:
            answers = [pool.submit(requests.post, url + "/v1/chat/completions", json=body, timeout=60)
                       for _ in range(CONCURRENT)]
            wait_for(lambda: pod.got == CONCURRENT, timeout=30, what=f"all {CONCURRENT} requests at the pod at once")
            pod.go.set()
            assert {a.result().status_code for a in answers} == {200}
            assert metric(url, "forwarded") == CONCURRENT
    finally:
        pod.go.set()
        pod.shutdown()


def chat_of(size: int) -> dict:
    """A chat request for "tiny" whose message is ``size`` characters long."""
    return {"model": "tiny", "messages": [{"role": "user", "content": "x" * size}]}


def test_the_bodies_held_are_bounded_in_bytes_for_every_deployment_together(cluster, tmp_path: Path):
    """--max-held-mib 1: a request whose body would take the bodies held past 1 MiB gets a 503 with Retry-After
    in OpenAI's shape (counted as overloaded), whichever deployment it is for, while a small one is still held;
    the held ones go through once a replica is ready."""
    upstream = serve(Answer)
    answers: dict[str, requests.Response] = {}

    def send(name: str, model: str, size: int) -> threading.Thread:
        body = chat_of(size) | {"model": model}
        thread = threading.Thread(target=lambda: answers.setdefault(name, requests.post(
            url + "/v1/chat/completions", json=body, timeout=60)))
        thread.start()
        return thread

    try:
        with running_activator(cluster, tmp_path, f"http://127.0.0.1:{upstream.server_address[1]}", "--hold-timeout",
                               "60", "--max-held", "10", "--max-held-mib", "1") as (url, _):
            deploy(cluster, url, "tiny", timeout=10, **AT_ZERO_OFF)
            deploy(cluster, url, "other", timeout=10, **AT_ZERO_OFF)
            first = send("first", "tiny", 600_000)
            wait_for(lambda: held(url) == 1, timeout=10, what="the first request held")
            refused = requests.post(url + "/v1/chat/completions", json=chat_of(600_000) | {"model": "other"},
                                    timeout=30)
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "30", refused.text
            error = refused.json()["error"]
            assert error["type"] == "service_unavailable" and error["code"] == 503
            assert error["message"] == ("with this request, the requests waiting for replicas would take 1.1 MiB, "
                                        "past the 1 MiB the activator may hold; try again later")
            small = send("small", "tiny", 1_000)
            wait_for(lambda: held(url) == 2, timeout=10, what="a small request held beside the first")
            cluster.kube.merge(LLMD.format(ns="default") + "/tiny/status", {"status": {"readyReplicas": 1}})
            first.join(timeout=30)
            small.join(timeout=30)
            assert (answers["first"].status_code, answers["small"].status_code) == (200, 200)
            assert (metric(url, "overloaded"), metric(url, "held")) == (1, 2)
    finally:
        upstream.shutdown()


def test_a_body_larger_than_the_bytes_it_may_hold_gets_a_413_at_zero_and_goes_on_once_a_replica_is_ready(
        cluster, tmp_path: Path):
    """--max-held-mib 1 under --max-body-mib 4: at zero, a 2-MiB body can never be held, so it gets a 413 naming the
    limit (counted bad_request; it was a 503 "try again later" with Retry-After), is not held and stamps nothing;
    once a replica is ready the same body goes on."""
    upstream = serve(Answer)
    path = LLMD.format(ns="default") + "/tiny"
    try:
        with running_activator(cluster, tmp_path, f"http://127.0.0.1:{upstream.server_address[1]}", "--max-held-mib",
                               "1", "--max-body-mib", "4") as (url, _):
            deploy(cluster, url, "tiny", timeout=10, **AT_ZERO_OFF)
            refused = requests.post(url + "/v1/chat/completions", json=chat_of(2 * 2 ** 20), timeout=30)
            assert refused.status_code == 413 and "Retry-After" not in refused.headers, refused.text
            assert refused.json()["error"] == {
                "message": "the request body (2.0 MiB) is larger than the 1 MiB the activator may hold while "
                           "default/tiny has no ready replica", "type": "invalid_request_error", "code": 413}
            assert REQUESTED_AT not in (cluster.kube.get(path)["metadata"].get("annotations") or {})
            assert (metric(url, "bad_request"), metric(url, "overloaded"), held(url)) == (1, 0, 0)
            cluster.kube.merge(path + "/status", {"status": {"readyReplicas": 1}})
            wait_for(lambda: requests.get(url + "/v1/models/tiny", timeout=5).json()["ready_replicas"] == 1,
                     what="the ready replica in the activator's watch")
            sent = requests.post(url + "/v1/chat/completions", json=chat_of(2 * 2 ** 20), timeout=30)
            assert sent.status_code == 200 and metric(url, "forwarded") == 1, sent.text
    finally:
        upstream.shutdown()


def test_a_body_over_the_configured_limit_gets_a_413_in_openais_shape(cluster, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch):
    """FORESAIL_ACTIVATOR_MAX_BODY_MIB=1: a body of 1 MiB goes on, one a byte over gets a 413 in OpenAI's error
    shape, counted as bad_request."""
    upstream = serve(Answer)
    monkeypatch.setenv("FORESAIL_ACTIVATOR_MAX_BODY_MIB", "1")
    cluster.kube.create(LLMD.format(ns="default"), llmd("tiny", **AT_ZERO_OFF))
    cluster.kube.merge(LLMD.format(ns="default") + "/tiny/status", {"status": {"readyReplicas": 1}})
    padding = 2 ** 20 - len(json.dumps(chat_of(0)))
    try:
        with running_activator(cluster, tmp_path, f"http://127.0.0.1:{upstream.server_address[1]}") as (url, _):
            for size, status in ((padding, 200), (padding + 1, 413)):
                body = json.dumps(chat_of(size)).encode()
                assert len(body) == 2 ** 20 + status // 413
                rsp = requests.post(url + "/v1/chat/completions", data=body, timeout=30)
                assert rsp.status_code == status, rsp.text
            assert rsp.json()["error"] == {"message": "the request body is larger than 1 MiB",
                                           "type": "invalid_request_error", "code": 413}
            assert (metric(url, "forwarded"), metric(url, "bad_request")) == (1, 1)
    finally:
        upstream.shutdown()


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_body_limit_below_1_mib_is_refused_at_start(how: str):
    flag, env = (["--max-body-mib", "0"], {}) if how == "flag" else ([], {"FORESAIL_ACTIVATOR_MAX_BODY_MIB": "0"})
    done = subprocess.run([sys.executable, "-m", "foresail", "activator", *flag], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **env})
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr == "error: --max-body-mib must be at least 1, not 0\n"


def test_a_request_held_again_keeps_the_deadline_of_its_first_hold(cluster, tmp_path: Path):
    """--hold-timeout is the most a request waits for a ready replica: one whose deployment shows a ready replica
    and goes back to zero before the request reaches it is not held (nor the deployment stamped) again for another
    timeout once its first hold's deadline has passed, but answered its timeout."""
    path = LLMD.format(ns="default") + "/tiny"
    answers: list[requests.Response] = []
    with running_activator(cluster, tmp_path, "http://127.0.0.1:9") as (url, _):  # the Service never answers
        deploy(cluster, url, "tiny", **AT_ZERO_OFF)
        client = threading.Thread(target=lambda: answers.append(chat(url, "tiny")))
        client.start()
        wait_for(lambda: held(url) == 1, what="the request held")
        cluster.kube.merge(path + "/status", {"status": {"readyReplicas": 1}})
        wait_for(lambda: held(url) == 0, what="the request sent to the ready replica (in vain: it retries)")
        stamp = cluster.kube.get(path)["metadata"]["annotations"][REQUESTED_AT]
        time.sleep(TIMEOUT_S + 0.5)  # past the first hold's deadline, within the 10 s the Service is retried
        cluster.kube.merge(path + "/status", {"status": {"readyReplicas": 0}})
        client.join(timeout=30)
        rsp = answers[0]
        assert rsp.status_code == 503 and rsp.headers["Retry-After"] == "30", rsp.text
        assert rsp.json()["error"]["message"].startswith(f"default/tiny has no ready replica after {TIMEOUT_S} s")
        assert metric(url, "timeout") == 1
        holds = [ln for ln in requests.get(url + "/metrics", timeout=5).text.splitlines()
                 if ln.startswith("foresail_activator_hold_seconds_count")]
        assert holds == ["foresail_activator_hold_seconds_count 1.0"]  # held once, not twice
    assert cluster.kube.get(path)["metadata"]["annotations"][REQUESTED_AT] == stamp  # no new stamp


async def test_a_service_whose_endpointslices_are_gone_keeps_no_entry(cluster):
    """The pods of each Service are kept while its EndpointSlices list ready ones, not for every Service ever seen."""
    client = KubeClient(kopf.ConnectionInfo(server=cluster.url, insecure=True))
    activator = Activator(client, lambda ns, name: f"http://{name}.{ns}.svc:8000")
    runner = web.AppRunner(activator.app())
    await runner.setup()  # starts the watches
    try:
        for port in (8001, 8002):
            cluster.kube.create(SLICES, endpoint_slice("tiny", port))
        await async_wait(lambda: len(activator._pods.get(("default", "tiny"), [])) == 2, "both pods listed")
        cluster.kube.delete(f"{SLICES}/tiny-8001")
        await async_wait(lambda: activator._pods.get(("default", "tiny")) == ["http://127.0.0.1:8002"], "one left")
        cluster.kube.delete(f"{SLICES}/tiny-8002")
        await async_wait(lambda: activator._pods == {}, "no entry once no slice lists a pod")
    finally:
        await runner.cleanup()


async def async_wait(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll ``check`` while the event loop runs the watches."""
    for _ in range(int(timeout / 0.1)):
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
