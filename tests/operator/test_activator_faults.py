"""The activator (the real `foresail activator` process over HTTP) when a client, a pod or the API server
misbehaves, and the requests and headers it must pass on with care: a client that gives up, a pod that
breaks off mid-answer or never answers the connection, a throttled stamp, compressed bodies, hop-by-hop
headers, bodies over the limit, malformed bodies, the last replica going as a request is sent, and
`GET /v1/models/{model}` (the OpenAI SDK's `models.retrieve`)."""

from __future__ import annotations

import calendar
import contextlib
import gzip
import http.client
import http.server
import json
import select
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import openai
import pytest
import requests

from foresail.demo.prometheus import free_port
from foresail_operator.activation import requested_at
from foresail_operator.activator import _card
from tests.helpers import wait_for
from tests.operator.conftest import LLMD
from tests.operator.test_activator import AT_ZERO_OFF, Answer, chat, deploy, llmd, metric, running_activator, served
from tests.operator.test_activator_balance import SLICES, Pod, endpoint_slice, ready_deployment


def held(url: str) -> float:
    """The requests the activator holds, by its gauge."""
    text = requests.get(url + "/metrics", timeout=5).text
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
               if ln.startswith("foresail_activator_held_requests{"))


def serve(handler: type[http.server.BaseHTTPRequestHandler]) -> http.server.ThreadingHTTPServer:
    """A server standing in for a deployment's Service, serving in a thread."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@contextlib.contextmanager
def behind_activator(cluster: Any, tmp_path: Path, handler: type[http.server.BaseHTTPRequestHandler], *args: str,
                     host: str = "127.0.0.1") -> Iterator[str]:
    """A ready LLMDeployment ``tiny`` whose pod is ``handler``, served on ``host``, and the activator (with ``args``)
    in front of it: the activator's URL."""
    pod = serve(handler)
    cluster.kube.create(LLMD.format(ns="default"), llmd("tiny", **AT_ZERO_OFF))
    cluster.kube.merge(LLMD.format(ns="default") + "/tiny/status", {"status": {"readyReplicas": 1}})
    try:
        with running_activator(cluster, tmp_path, f"http://{host}:{pod.server_address[1]}", *args) as (url, _):
            yield url
    finally:
        pod.shutdown()


class Generating(http.server.ThreadingHTTPServer):
    """Stands in for a pod: counts the requests it gets and answers each once ``go`` is set; while it
    generates (waits) it watches the connection, and stops and counts in ``left`` a request whose
    connection closes, as an inference server aborts a request whose client went."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Generate)
        self.got = self.left = 0
        self.go = threading.Event()
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _Generate(http.server.BaseHTTPRequestHandler):
    server: Generating

    def do_POST(self) -> None:  # noqa: N802 (the http.server convention)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.got += 1
        deadline = time.monotonic() + 30
        while not self.server.go.wait(0.05) and time.monotonic() < deadline:
            if select.select([self.connection], [], [], 0)[0] and not self.connection.recv(1, socket.MSG_PEEK):
                self.server.left += 1
                return
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_: object) -> None:
        pass


def test_a_client_that_leaves_is_neither_held_nor_waited_for(cluster, tmp_path: Path):
    """A held request whose client gives up no longer counts as held (the next one is held, not refused,
    with --max-held 1) and is not sent when a replica is ready; a forwarded one whose client gives up
    closes its connection to the pod, which stops generating. Both count as client_gone."""
    pod = Generating()
    try:
        with running_activator(cluster, tmp_path, f"http://127.0.0.1:{pod.server_address[1]}",
                               "--hold-timeout", "30") as (url, _):
            deploy(cluster, url, "tiny", timeout=10, **AT_ZERO_OFF)
            with pytest.raises(requests.exceptions.ReadTimeout):
                chat(url, "tiny", timeout=1)  # held at zero, then given up
            wait_for(lambda: held(url) == 0, timeout=5, what="the request whose client left no longer held")
            answers: list[requests.Response] = []
            waiting = threading.Thread(target=lambda: answers.append(chat(url, "tiny")))
            waiting.start()
            wait_for(lambda: held(url) == 1, timeout=5, what="the next request held")
            pod.go.set()
            cluster.kube.merge(LLMD.format(ns="default") + "/tiny/status", {"status": {"readyReplicas": 1}})
            waiting.join(timeout=30)
            assert answers[0].status_code == 200, answers[0].text
            assert pod.got == 1  # only the request whose client stayed
            pod.go.clear()
            with pytest.raises(requests.exceptions.ReadTimeout):
                chat(url, "tiny", timeout=1)  # forwarded, the pod generating
            wait_for(lambda: pod.left == 1, timeout=5, what="the pod seeing its connection close")
            assert (metric(url, "client_gone"), metric(url, "held"), metric(url, "forwarded")) == (2, 1, 0)
        assert "Traceback" not in (tmp_path / "activator.log").read_text()
    finally:
        pod.go.set()
        pod.shutdown()


class _BreaksOff(http.server.BaseHTTPRequestHandler):
    """A pod killed mid-answer: 13 bytes of the 1,000 its Content-Length promises, then the connection closes."""

    def do_POST(self) -> None:  # noqa: N802 (the http.server convention)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b'{"choices": [')

    def log_message(self, *_: object) -> None:
        pass


def test_an_answer_the_pod_breaks_off_reaches_the_client_cut_short(cluster, tmp_path: Path):
    """The status line is sent by then, so the client cannot get a 502; its connection closes before the end
    of the body (as the pod's did), so that it cannot take the part for the whole answer."""
    with behind_activator(cluster, tmp_path, _BreaksOff) as url:
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            chat(url, "tiny")
        assert (metric(url, "upstream_error"), metric(url, "forwarded")) == (1, 0)


def test_an_answer_cut_short_shows_so_over_http_1_0(cluster, tmp_path: Path):
    """A client over HTTP/1.0 (as nginx is to an upstream by default) reads an answer without Content-Length until the
    connection closes: the pod's Content-Length goes on, so that one cut short cannot pass for the whole."""
    with behind_activator(cluster, tmp_path, _BreaksOff) as url:
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=30) as connection:
            connection.sendall(b'POST /v1/chat/completions HTTP/1.0\r\nContent-Length: 17\r\n\r\n{"model": "tiny"}')
            answer = http.client.HTTPResponse(connection)
            answer.begin()
            assert (answer.status, answer.headers["Content-Length"]) == (200, "1000")
            with pytest.raises(http.client.IncompleteRead):
                answer.read()
        assert (metric(url, "upstream_error"), metric(url, "forwarded")) == (1, 0)


def unanswered(listener: socket.socket) -> list[socket.socket]:
    """Connections that fill the accept queue of ``listener`` (which never accepts), so that the kernel drops
    further SYNs, as they are lost to a node that is gone."""
    fillers: list[socket.socket] = []
    for _ in range(16):
        probe = socket.socket()
        probe.settimeout(0.5)
        try:
            probe.connect(listener.getsockname())
        except TimeoutError:
            probe.close()
            return fillers
        fillers.append(probe)
    raise AssertionError("the accept queue never filled")


def test_a_pod_whose_connection_times_out_is_passed_over(cluster, tmp_path: Path):
    """Two requests at once for two ready pods, one of which never answers the connection: the request that
    tries it goes on to the other pod after the connect timeout (10 s; nothing was sent), not a 502; and the
    silent pod is passed over after that (the next two go to the other pod at once, not 10 s later)."""
    ready_deployment(cluster)
    pod = Pod()
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(0)
        fillers = unanswered(silent)
        try:
            for port in (pod.server_address[1], silent.getsockname()[1]):
                cluster.kube.create(SLICES, endpoint_slice("tiny", port))
            with running_activator(cluster, tmp_path, "http://127.0.0.1:9") as (url, _):  # the Service: unreachable
                with ThreadPoolExecutor(2) as pool:
                    answers = [pool.submit(chat, url, "tiny") for _ in range(2)]
                    wait_for(lambda: pod.got == 1, timeout=10, what="a request at the pod")
                    time.sleep(1)  # the other one sent to the silent pod meanwhile: the one with none in flight
                    pod.go.set()
                    assert [a.result().status_code for a in answers] == [200, 200]
                    pod.go.clear()  # the pod holds what it gets: least-loaded would send the next to the other
                    answers = [pool.submit(chat, url, "tiny") for _ in range(2)]
                    wait_for(lambda: pod.got == 4, timeout=5, what="both requests at the answering pod at once")
                    pod.go.set()
                    assert [a.result().status_code for a in answers] == [200, 200]
                assert metric(url, "forwarded") == 4
        finally:
            for filler in fillers:
                filler.close()
            pod.go.set()
            pod.shutdown()


def test_a_throttled_stamp_does_not_keep_a_held_request_from_a_ready_replica(cluster, tmp_path: Path):
    """The API server throttles the stamp's PATCH (429 with Retry-After: 8, which the API client honours, for
    it and its 3 retries): the held request goes through as soon as the watch shows a ready replica."""
    upstream = serve(Answer)
    path = LLMD.format(ns="default") + "/tiny"
    cluster.kube.create(LLMD.format(ns="default"), llmd("tiny", **AT_ZERO_OFF))
    cluster.faults(method="PATCH", path=r"/llmdeployments/tiny$", status=429, count=4, retry_after=8)
    cluster.clear_audit()
    try:
        with running_activator(cluster, tmp_path, f"http://127.0.0.1:{upstream.server_address[1]}",
                               "--hold-timeout", "60") as (url, _):
            answers: list[requests.Response] = []
            waiting = threading.Thread(target=lambda: answers.append(chat(url, "tiny")))
            waiting.start()
            wait_for(lambda: [e for e in cluster.audit() if e["verb"] == "patch" and e["name"] == "tiny"],
                     timeout=10, what="the stamp's first PATCH (throttled)")
            cluster.kube.merge(path + "/status", {"status": {"readyReplicas": 1}})
            ready = time.monotonic()
            waiting.join(timeout=60)
            assert answers[0].status_code == 200, answers[0].text
            assert time.monotonic() - ready < 3  # not after the retries (8 s at the first)
            assert metric(url, "held") == 1
    finally:
        cluster.clear_faults()
        upstream.shutdown()


class _Echo(http.server.BaseHTTPRequestHandler):
    """Stands in for a pod: notes each request's headers and body, and answers with headers of its own: one
    that its Connection header names (hop-by-hop) and two cookies."""

    seen: list[tuple[list[tuple[str, str]], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 (the http.server convention)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append((list(self.headers.items()), body))
        self.send_response(200)
        for name, value in (("Connection", "close, X-Pod-Hop"), ("X-Pod-Hop", "1"), ("Set-Cookie", "a=1"),
                            ("Set-Cookie", "b=2"), ("Content-Length", "2")):
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_: object) -> None:
        pass


def test_headers_go_on_end_to_end_and_a_compressed_body_goes_on_decoded(cluster, tmp_path: Path):
    """aiohttp decodes a gzip body: it goes on without its Content-Encoding (the pod would read the plain
    body as gzip). Headers that a Connection header names are hop-by-hop (RFC 9110 7.6.1): neither the
    client's nor the pod's go on; a header that comes twice (Set-Cookie) comes twice. A gzip body that
    is not gzip gets a 400 (and aiohttp logs the decoding error as it drains the body)."""
    _Echo.seen.clear()
    body = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}).encode()
    with behind_activator(cluster, tmp_path, _Echo) as url:
        rsp = requests.post(url + "/v1/chat/completions", data=gzip.compress(body), timeout=30, headers={
            "Content-Encoding": "gzip", "Content-Type": "application/json", "Authorization": "Bearer sk-1",
            "Connection": "keep-alive, X-Client-Hop", "X-Client-Hop": "1"})
        assert rsp.status_code == 200, rsp.text
        assert "X-Pod-Hop" not in rsp.headers and rsp.raw.headers.getlist("Set-Cookie") == ["a=1", "b=2"]
        headers, received = _Echo.seen[-1]
        names = {name.lower() for name, _ in headers}
        assert received == body and "content-encoding" not in names and "x-client-hop" not in names
        assert ("Authorization", "Bearer sk-1") in headers
        rsp = requests.post(url + "/v1/chat/completions", data=body, timeout=30,
                            headers={"Content-Encoding": "gzip"})
        assert rsp.status_code == 400 and "cannot read the request body" in rsp.json()["error"]["message"]
        assert len(_Echo.seen) == 1
        assert (metric(url, "forwarded"), metric(url, "bad_request")) == (1, 1)


def test_one_model_is_retrieved_and_an_oversized_body_is_refused_in_openais_shape(cluster, tmp_path: Path):
    """`GET /v1/models/{model}` as the OpenAI SDK sends it (a "/" in the name percent-encoded): the card
    /v1/models lists (``created``: the LLMDeployment's creationTimestamp), or a 404; a body over 64 MiB: a 413 in
    OpenAI's error shape, counted as bad_request."""
    with running_activator(cluster, tmp_path, "http://127.0.0.1:9") as (url, _):
        created = cluster.kube.create(LLMD.format(ns="default"), llmd("tiny", **AT_ZERO_OFF, model={
            "source": "builtin:tiny", "servedModelName": "org/tiny"}))["metadata"]["creationTimestamp"]
        wait_for(lambda: served(url) == ["org/tiny"], timeout=10, what="org/tiny in /v1/models")
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        card = client.models.retrieve("org/tiny")
        assert (card.id, card.object, card.owned_by, card.model_extra) == (
            "org/tiny", "model", "foresail", {"llmdeployment": "default/tiny", "ready_replicas": 0})
        assert card.created == calendar.timegm(time.strptime(created, "%Y-%m-%dT%H:%M:%SZ")) > 0
        assert requests.get(url + "/v1/models/org/tiny", timeout=10).json() == requests.get(
            url + "/v1/models", timeout=10).json()["data"][0]
        with pytest.raises(openai.NotFoundError, match="no LLMDeployment serves model 'gpt-4'"):
            client.models.retrieve("gpt-4")
        rsp = requests.post(url + "/v1/chat/completions", data=b"{" + b" " * (64 * 2 ** 20) + b"}", timeout=60)
        assert rsp.status_code == 413
        assert rsp.json()["error"] == {"message": "the request body is larger than 64 MiB",
                                       "type": "invalid_request_error", "code": 413}
        assert metric(url, "bad_request") == 1


@pytest.mark.parametrize("stamp,created", [(None, 0), ("yesterday", 0), ("2026-01-02T03:04:05Z", 1767323045)])
def test_a_cards_created_is_the_creation_time_in_unix_seconds_or_0(stamp: str | None, created: int):
    meta = {"name": "tiny", "namespace": "default", **({"creationTimestamp": stamp} if stamp else {})}
    assert _card({"metadata": meta})["created"] == created


def arrivals(url: str) -> float:
    """The requests that arrived at the activator for a deployment, by its counter."""
    text = requests.get(url + "/metrics", timeout=5).text
    return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
               if ln.startswith("foresail_activator_arrivals_total{"))


@pytest.mark.parametrize("routing", ["service", "pods"])
def test_a_request_sent_as_the_last_replica_goes_is_held_and_wakes_the_deployment(cluster, tmp_path: Path,
                                                                                 routing: str):
    """The status still says one replica is ready (the operator is a moment late) but nothing answers: the request
    is sent and its connection retried; once the watch shows no ready replica it is held as at zero, the
    LLMDeployment stamped, and it goes through once a replica is ready, not a 502 after the retries."""
    port = free_port()  # the Service: nothing listens there until a replica is ready again
    path = LLMD.format(ns="default") + "/tiny"
    cluster.kube.create(LLMD.format(ns="default"), llmd("tiny", **AT_ZERO_OFF))
    cluster.kube.merge(path + "/status", {"status": {"readyReplicas": 1}})
    with running_activator(cluster, tmp_path, f"http://127.0.0.1:{port}", "--hold-timeout", "60",
                           "--routing", routing) as (url, _):
        wait_for(lambda: served(url) == ["tiny"], timeout=10, what="tiny in /v1/models")
        answers: list[requests.Response] = []
        waiting = threading.Thread(target=lambda: answers.append(chat(url, "tiny", timeout=90)))
        waiting.start()
        wait_for(lambda: arrivals(url) == 1, timeout=10, what="the request at the activator")
        time.sleep(0.5)  # its connection refused, and retried
        cluster.kube.merge(path + "/status", {"status": {"readyReplicas": 0}})  # the operator catches up
        wait_for(lambda: requested_at(cluster.kube.get(path) or {}), timeout=8, what="the stamp asking for a replica")
        assert held(url) == 1 and not answers
        upstream = http.server.ThreadingHTTPServer(("127.0.0.1", port), Answer)
        threading.Thread(target=upstream.serve_forever, daemon=True).start()
        try:
            cluster.kube.merge(path + "/status", {"status": {"readyReplicas": 1}})
            waiting.join(timeout=60)
            assert answers[0].status_code == 200, answers[0].text
            assert (metric(url, "held"), metric(url, "unreachable")) == (1, 0)
        finally:
            upstream.shutdown()


def test_malformed_bodies_get_a_400_or_go_on_never_a_crash(cluster, tmp_path: Path):
    """With prefix routing, a content part whose text is null, a number or an object gives the routing key no text
    (the request goes on: the pod judges it); JSON nested deeper than the parser recurses gets a 400 in OpenAI's
    shape, counted as bad_request. Never aiohttp's bare 500 and a traceback."""
    with behind_activator(cluster, tmp_path, Answer, "--routing", "prefix") as url:
        wait_for(lambda: served(url) == ["tiny"], timeout=10, what="tiny in /v1/models")
        for text in (None, 5, {"a": 1}):
            body: dict[str, Any] = {"model": "tiny", "messages": [
                {"role": "user", "content": [{"type": "text", "text": text}]}]}
            rsp = requests.post(url + "/v1/chat/completions", json=body, timeout=30)
            assert rsp.status_code == 200, (text, rsp.text)
        for nested in (b'{"model": "tiny", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                       b'{"model": "tiny", "x": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5000 + b"}"):
            rsp = requests.post(url + "/v1/chat/completions", data=nested, timeout=30)
            assert rsp.status_code == 400, rsp.text
            assert rsp.json()["error"] == {"message": "the request body's JSON is nested too deeply",
                                           "type": "invalid_request_error", "code": 400}
        assert (metric(url, "forwarded"), metric(url, "bad_request")) == (3, 2)
    assert "Traceback" not in (tmp_path / "activator.log").read_text()
