"""The activator's load balancing: each request to the ready pod with the fewest of its requests in
flight, the pods read from the deployment's Service's EndpointSlices (the real `foresail activator`
process over HTTP, the API test server, and real HTTP servers standing in for the pods), and the
Service where the EndpointSlices cannot be read."""

from __future__ import annotations

import functools
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import pytest
import requests

from foresail_operator.activation import requested_at
from foresail_operator.endpoints import PREFIX_CHARS, LeastLoaded, ready_urls, routing_key
from tests.helpers import wait_for
from tests.operator.conftest import LLMD
from tests.operator.test_activator import AT_ZERO_OFF, Answer, chat, llmd, metric, running_activator

SLICES = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"


class Pod(http.server.ThreadingHTTPServer):
    """Stands in for one inference pod: counts the requests it gets, answers once ``go`` is set (with
    ``refusing`` when set: 429 as a full inference server answers, 503 as a draining one does)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.got = 0
        self.refusing: int | None = None
        self.go = threading.Event()
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(Answer):
    server: Pod

    def do_POST(self) -> None:  # noqa: N802 (the http.server convention)
        with self.server.lock:
            self.server.got += 1
        self.server.go.wait(30)
        status = self.server.refusing
        if status is None:
            super().do_POST()
            return
        body = json.dumps({"error": {"message": "the server is overloaded or shutting down", "code": status}}).encode()
        self.send_response(status)
        self.send_header("Retry-After", "1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def pods() -> Iterator[list[Pod]]:
    started = [Pod() for _ in range(4)]
    yield started
    for pod in started:
        pod.go.set()
        pod.shutdown()


def endpoint_slice(service: str, port: int, ready: bool | None = True, suffix: str = "") -> dict:
    """An EndpointSlice as the EndpointSlice controller writes it for a Foresail Service (whose labels it
    copies): one endpoint on 127.0.0.1."""
    conditions = {} if ready is None else {"ready": ready}
    labels = {"kubernetes.io/service-name": service, "app.kubernetes.io/managed-by": "foresail"}
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{service}-{port}{suffix}", "labels": labels},
            "addressType": "IPv4", "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["127.0.0.1"], "conditions": conditions}]}


def ready_deployment(cluster) -> None:
    cluster.kube.create(LLMD.format(ns="default"), llmd("tiny", **AT_ZERO_OFF))
    cluster.kube.merge(LLMD.format(ns="default") + "/tiny/status", {"status": {"readyReplicas": 2}})


def test_ready_urls_follow_the_endpointslice_conventions():
    slices = [
        {"ports": [{"name": "metrics", "port": 9000}, {"name": "http", "port": 8000}], "endpoints": [
            {"addresses": ["10.0.0.1", "10.0.0.9"], "conditions": {"ready": True}},
            {"addresses": ["10.0.0.2"]},  # ready unset: counts as ready
            {"addresses": ["10.0.0.3"], "conditions": {"ready": False, "terminating": True}},
            {"addresses": []}]},
        {"ports": [{"port": 8001}], "endpoints": [{"addresses": ["fd00::1"], "conditions": {"ready": True}}]},
        {"ports": [{"name": "grpc", "port": 1}, {"name": "other", "port": 2}], "endpoints": [{"addresses": ["x"]}]},
        {"endpoints": None, "ports": None}]
    assert ready_urls(slices) == ["http://10.0.0.1:8000", "http://10.0.0.2:8000", "http://[fd00::1]:8001"]


def test_least_loaded_picks_the_url_with_fewest_in_flight():
    load = LeastLoaded()
    assert load.pick([]) is None
    with load.sending("a"), load.sending("a"), load.sending("b"):
        assert load.pick(["a", "b", "c"]) == "c"
        assert load.pick(["a", "b"]) == "b"
    assert load.in_flight == {}  # nothing left counted once the requests are done


def test_a_url_passed_over_is_picked_only_when_all_are_or_once_its_time_is_up():
    load = LeastLoaded()
    load.eject("a", seconds=60)
    with load.sending("b"), load.sending("b"):
        assert {load.pick(["a", "b"]) for _ in range(20)} == {"b"}
        assert load.pick(["a", "b"], key="k") == "b"
    load.eject("b", seconds=60)
    assert load.pick(["a", "b"]) in {"a", "b"} and load.pick(["a"]) == "a"
    load.eject("a", seconds=0)
    assert load.pick(["a", "b"]) == "a" and set(load.ejected) == {"a", "b"}
    load.eject("c", seconds=60)
    assert set(load.ejected) == {"b", "c"}  # a URL whose time is up is forgotten


def test_requests_are_spread_over_the_ready_pods_by_requests_in_flight(cluster, tmp_path: Path, pods: list[Pod]):
    """20 requests at once for a deployment with two ready pods, one not ready, and a pod of another
    Service: 10 each to the ready pods (drawn at random, 10/10 would come one time in six), the
    EndpointSlices listed once and then watched, not read per request."""
    ready_deployment(cluster)
    a, b, not_ready, other = pods
    for piece in (endpoint_slice("tiny", a.server_address[1]), endpoint_slice("tiny", b.server_address[1], ready=None),
                  endpoint_slice("tiny", not_ready.server_address[1], ready=False),
                  endpoint_slice("other", other.server_address[1])):
        cluster.kube.create(SLICES, piece)
    cluster.clear_audit()
    with running_activator(cluster, tmp_path, "http://127.0.0.1:9") as (url, _):  # the Service: unreachable
        with ThreadPoolExecutor(20) as pool:
            answers = [pool.submit(chat, url, "tiny") for _ in range(20)]
            wait_for(lambda: a.got + b.got == 20, timeout=20, what="20 requests at the pods")
            assert (a.got, b.got, not_ready.got, other.got) == (10, 10, 0, 0)
            for pod in pods:
                pod.go.set()
            assert [f.result().status_code for f in answers] == [200] * 20
        assert metric(url, "forwarded") == 20
        reads = [e["verb"] for e in cluster.audit() if e["resource"] == "endpointslices"]
        assert reads == ["list", "watch"], reads  # every namespace's Foresail slices at once


def test_the_pods_follow_the_endpointslices_as_they_change(cluster, tmp_path: Path, pods: list[Pod]):
    """A pod that becomes ready while the activator runs gets requests within a second; one whose
    endpoint goes gets none."""
    ready_deployment(cluster)
    a, b = pods[0], pods[1]
    a.go.set()
    b.go.set()
    cluster.kube.create(SLICES, endpoint_slice("tiny", a.server_address[1]))
    with running_activator(cluster, tmp_path, "http://127.0.0.1:9") as (url, _):
        assert [chat(url, "tiny").status_code for _ in range(4)] == [200] * 4
        assert (a.got, b.got) == (4, 0)
        cluster.kube.create(SLICES, endpoint_slice("tiny", b.server_address[1]))
        wait_for(lambda: chat(url, "tiny").status_code == 200 and b.got > 0, timeout=1, interval=0.05,
                 what="a request at the new pod")
        cluster.kube.delete(f"{SLICES}/tiny-{a.server_address[1]}")
        time.sleep(1)
        asked = a.got
        assert [chat(url, "tiny").status_code for _ in range(4)] == [200] * 4
        assert a.got == asked


def test_a_pod_that_refuses_the_connection_is_passed_over(cluster, tmp_path: Path, pods: list[Pod]):
    """A ready endpoint nothing listens on (a pod just gone): its requests go to the other pod at once,
    forwarded rather than held and retried."""
    ready_deployment(cluster)
    pods[0].go.set()
    cluster.kube.create(SLICES, endpoint_slice("tiny", pods[0].server_address[1]))
    # bound but never listening: connections to it are refused, and no process started later (the activator,
    # on a free port of its own) can be handed the same port
    with socket.socket() as gone:
        gone.bind(("127.0.0.1", 0))
        cluster.kube.create(SLICES, endpoint_slice("tiny", gone.getsockname()[1]))
        with running_activator(cluster, tmp_path, "http://127.0.0.1:9") as (url, _):
            assert [chat(url, "tiny").status_code for _ in range(6)] == [200] * 6
            assert pods[0].got == 6
            assert (metric(url, "forwarded"), metric(url, "held"), metric(url, "unreachable")) == (6, 0, 0)


def test_a_held_request_goes_to_a_pod_as_soon_as_its_endpointslice_shows_it_ready(cluster, tmp_path: Path,
                                                                                 pods: list[Pod]):
    """The status still says no replica is ready (the operator may be late, or restarting): a ready
    endpoint in the deployment's Service's EndpointSlice is enough to send the held request there."""
    cluster.kube.create(LLMD.format(ns="default"), llmd("tiny", **AT_ZERO_OFF))  # nothing writes its status
    pod = pods[0]
    pod.go.set()
    with running_activator(cluster, tmp_path, "http://127.0.0.1:9") as (url, _):
        answers: list[requests.Response] = []
        held = threading.Thread(target=lambda: answers.append(chat(url, "tiny")))
        held.start()
        wait_for(lambda: requested_at(cluster.kube.get(LLMD.format(ns="default") + "/tiny") or {}), what="the stamp")
        cluster.kube.create(SLICES, endpoint_slice("tiny", pod.server_address[1]))
        held.join(timeout=30)
        assert answers[0].status_code == 200, answers[0].text  # within the 2-s hold timeout
        assert pod.got == 1 and metric(url, "held") == 1
        assert chat(url, "tiny").status_code == 200 and metric(url, "forwarded") == 1  # not held again


@pytest.mark.parametrize("routing", ["pods", "service"])
def test_without_readable_endpointslices_requests_go_to_the_service(cluster, tmp_path: Path, pods: list[Pod],
                                                                      routing: str):
    """EndpointSlices the activator may not read (403), or --routing service: the Service gets every
    request, and with pods routing the slices are read again only after a while, not per request."""
    ready_deployment(cluster)
    service, pod = pods[0], pods[1]
    service.go.set()
    cluster.kube.create(SLICES, endpoint_slice("tiny", pod.server_address[1]))
    cluster.faults(method="GET", path="endpointslices", status=403, count=1000,
                   message='endpointslices.discovery.k8s.io is forbidden')
    cluster.clear_audit()
    with running_activator(cluster, tmp_path, service.url, "--routing", routing) as (url, _):
        assert [chat(url, "tiny").status_code for _ in range(5)] == [200] * 5
        assert (service.got, pod.got) == (5, 0)
        reads = [e for e in cluster.audit() if e["resource"] == "endpointslices"]
        assert 1 <= len(reads) <= 2 if routing == "pods" else not reads, reads  # tried again after 1 s, 2 s, ...
    cluster.clear_faults()
    logged = "cannot list or watch endpointslices" in (tmp_path / "activator.log").read_text()
    assert logged == (routing == "pods")


@pytest.mark.parametrize("when", ["from-the-start", "after-a-list"])
def test_endpointslices_forbidden_in_one_namespace_send_only_that_namespaces_requests_to_the_service(
        cluster, tmp_path: Path, pods: list[Pod], when: str):
    """Two watched namespaces, the EndpointSlices of one forbidden (403, from the start or once listed): the
    deployments of the other one still get their requests sent to their ready pods."""
    cluster.kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "b"}})
    ready_deployment(cluster)
    service, pod = pods[0], pods[1]
    service.go.set()
    pod.go.set()
    cluster.kube.create(SLICES, endpoint_slice("tiny", pod.server_address[1]))
    forbid = functools.partial(cluster.faults, method="GET", path="namespaces/b/endpointslices", status=403,
                               count=100000, message="endpointslices.discovery.k8s.io is forbidden in b")
    if when == "from-the-start":
        forbid()
    log = tmp_path / "activator.log"
    with running_activator(cluster, tmp_path, service.url, "--namespace", "default", "--namespace", "b") as (url, _):
        if when == "after-a-list":
            assert chat(url, "tiny").status_code == 200
            forbid()
            cluster.drop_watches()
        wait_for(lambda: "cannot list or watch endpointslices in b" in log.read_text(), what="b's failure")
        served = service.got, pod.got
        assert [chat(url, "tiny").status_code for _ in range(4)] == [200] * 4
        assert (service.got - served[0], pod.got - served[1]) == (0, 4)
    cluster.clear_faults()


@pytest.mark.parametrize("status", [429, 503], ids=["full", "draining"])
def test_a_pod_that_refuses_before_any_work_passes_the_request_on(cluster, tmp_path: Path, pods: list[Pod],
                                                                    status: int):
    """A pod that answers 429 (full) or 503 (draining: told to stop, not yet out of the EndpointSlice), both
    before any work: the request is sent on to the other ready pod; when every pod refuses, the client gets
    the last refusal, each pod having been asked once."""
    ready_deployment(cluster)
    full, room = pods[0], pods[1]
    full.refusing = status
    for pod in (full, room):
        pod.go.set()
        cluster.kube.create(SLICES, endpoint_slice("tiny", pod.server_address[1]))
    with running_activator(cluster, tmp_path, "http://127.0.0.1:9") as (url, _):
        assert [chat(url, "tiny").status_code for _ in range(10)] == [200] * 10  # 1 in 1,024 without going on
        assert room.got == 10
        room.refusing = status
        asked = full.got, room.got
        rsp = chat(url, "tiny")
        assert rsp.status_code == status and rsp.headers["Retry-After"] == "1"
        assert (full.got - asked[0], room.got - asked[1]) == (1, 1)


def test_a_bad_routing_from_the_environment_is_a_clear_error():
    done = subprocess.run([sys.executable, "-m", "foresail", "activator", "--kubeconfig", "/dev/null"],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, FORESAIL_ACTIVATOR_ROUTING="random"))
    assert done.returncode == 1
    assert "FORESAIL_ACTIVATOR_ROUTING must be one of pods, prefix, service, not 'random'" in done.stderr


def test_the_routing_key_is_the_start_of_the_first_user_message_or_prompt_or_the_header():
    system = {"role": "system", "content": "You are a helpful assistant."}
    assert routing_key({"messages": [system, {"role": "user", "content": "x" * 150},
                                     {"role": "user", "content": "later"}]}, {}) == "x" * PREFIX_CHARS
    parts = [{"type": "text", "text": "Hi "}, {"type": "image_url"}, {"type": "text", "text": "there"}]
    assert routing_key({"messages": [{"role": "user", "content": parts}]}, {}) == "Hi there"
    assert routing_key({"prompt": "Once upon a time"}, {}) == "Once upon a time"
    assert routing_key({"prompt": ["first", "second"]}, {}) == "first"
    assert routing_key({"prompt": "Once"}, {"Routing-Key": "session-7"}) == "session-7"
    for body in ({"messages": [system]}, {"prompt": ""}, {"prompt": 3}, {"messages": "hi"}, {}):
        assert routing_key(body, {}) is None, body


def test_a_key_stays_on_its_pod_within_the_load_bound_and_moves_only_when_its_pod_goes():
    load = LeastLoaded()
    urls = [f"http://10.0.0.{i}:8000" for i in range(4)]
    keys = [f"conversation {i}" for i in range(400)]
    home = {k: load.pick(urls, k) for k in keys}
    assert all(load.pick(urls, k) == home[k] for k in keys)  # stable
    assert all(50 <= list(home.values()).count(u) <= 150 for u in urls)  # spread over the pods
    # the pod of a key with more than 1.25 x the mean in flight is passed over for the key's next pod
    key = keys[0]
    others = [u for u in urls if u != home[key]]
    with load.sending(home[key]), load.sending(home[key]):
        assert load.pick(urls, key) != home[key]  # 2 of 3 in flight, counting this one: over 1.25 x 3/4
    with load.sending(home[key]), load.sending(others[0]), load.sending(others[1]), load.sending(others[2]):
        assert load.pick(urls, key) == home[key]  # as loaded as every pod: within the bound
    # 2 in flight on the key's pod and 1 on each other, 6 counting this one: the bound is ceil(1.25 x 6/4) = 2,
    # and ceil(2 x 6/4) = 3 with a load factor of 2
    looser = LeastLoaded(load_factor=2.0)
    for counter in (load, looser):
        counter.in_flight.update([home[key], home[key], *others])
    assert load.pick(urls, key) != home[key] and looser.pick(urls, key) == home[key]
    for bad in (0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="the prefix load factor must be at least 1"):
            LeastLoaded(bad)
    # a pod that goes takes only its own keys with it
    gone = urls[0]
    moved = {k for k in keys if load.pick(urls[1:], k) != home[k]}
    assert moved == {k for k in keys if home[k] == gone}


def test_the_prefix_load_factor_flag_sets_how_busy_a_keys_pod_may_get(cluster, tmp_path: Path, pods: list[Pod]):
    """Three requests with one key at once to two held pods: the third finds 2 of 3 in flight on the key's pod,
    above ceil(1.25 x 3/2) = 2 by default and within ceil(3 x 3/2) = 5 with --prefix-load-factor 3."""
    ready_deployment(cluster)
    for pod in pods[:2]:
        cluster.kube.create(SLICES, endpoint_slice("tiny", pod.server_address[1]))

    def arrived(count: int) -> bool:
        return sum(p.got for p in pods[:2]) == count

    spreads = []
    for extra in ((), ("--prefix-load-factor", "3")):
        before = [p.got for p in pods[:2]]
        with running_activator(cluster, tmp_path, "http://127.0.0.1:9", "--routing", "prefix", *extra) as (url, _):
            with ThreadPoolExecutor(3) as pool:
                answers = []
                for sent in range(sum(before) + 1, sum(before) + 4):  # one at a time, each in flight before the next
                    answers.append(pool.submit(chat, url, "tiny"))  # one key: "hi"
                    wait_for(functools.partial(arrived, sent), timeout=10, what="the request at a pod")
                spreads.append(sorted(p.got - b for p, b in zip(pods[:2], before, strict=True)))
                for pod in pods[:2]:
                    pod.go.set()
                assert [a.result().status_code for a in answers] == [200] * 3
            for pod in pods[:2]:
                pod.go.clear()
    assert spreads == [[1, 2], [0, 3]]


def test_with_prefix_routing_a_conversation_stays_on_one_pod_and_conversations_spread(
        cluster, tmp_path: Path, pods: list[Pod]):
    ready_deployment(cluster)
    for pod in pods[:2]:
        pod.go.set()
        cluster.kube.create(SLICES, endpoint_slice("tiny", pod.server_address[1]))

    def ask(first: str, turns: int = 1) -> int:
        messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": first}]
        messages += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "and?"}] * (turns - 1)
        return requests.post(url + "/v1/chat/completions", json={"model": "tiny", "messages": messages},
                             timeout=30).status_code

    # 20 conversations whose key ranks each pod first (the pods' ports are drawn anew each run), one at a time
    homes: dict[str, list[str]] = {pod.url: [] for pod in pods[:2]}
    questions = iter([f"Question number {i}" for i in range(1000)])
    while min(len(q) for q in homes.values()) < 10:
        question = next(questions)
        home = homes[str(LeastLoaded().pick(homes, question))]
        if len(home) < 10:
            home.append(question)
    with running_activator(cluster, tmp_path, "http://127.0.0.1:9", "--routing", "prefix") as (url, _):
        assert [ask("Tell me about the sea", turns) for turns in range(1, 7)] == [200] * 6
        assert sorted(p.got for p in pods[:2]) == [0, 6]  # every turn of the conversation on one pod
        for pod in pods[:2]:
            before = [p.got for p in pods[:2]]
            assert [ask(question) for question in homes[pod.url]] == [200] * 10
            assert [p.got - b for p, b in zip(pods[:2], before, strict=True)] == [10 * (p is pod) for p in pods[:2]]
