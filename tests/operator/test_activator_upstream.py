"""The activator's connections to the pods (the real `foresail activator` process over HTTP, real servers on
127.0.0.1 standing in for the pods): a pod that never sends its response headers gets its connection closed and
the client a 504, while a stream whose headers came is never cut; an idle connection is not kept as long as
uvicorn (vLLM's and SGLang's server) keeps it, and a request on a kept connection that the pod closes as it
arrives is sent again on a new one, never a 502."""

from __future__ import annotations

import asyncio
import http.server
import os
import select
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Awaitable, Callable

import pytest
import requests
from aiohttp import web

from tests.helpers import wait_for
from tests.operator.conftest import LLMD
from tests.operator.test_activator import AT_ZERO_OFF, Answer, chat, llmd, metric, running_activator
from tests.operator.test_activator_faults import serve


def ready(cluster) -> None:
    """An LLMDeployment "tiny" whose status says one replica is ready (nothing starts one)."""
    cluster.kube.create(LLMD.format(ns="default"), llmd("tiny", **AT_ZERO_OFF))
    cluster.kube.merge(LLMD.format(ns="default") + "/tiny/status", {"status": {"readyReplicas": 1}})


class AioPod:
    """Stands in for a pod with aiohttp's server, in a thread of its own: ``handler`` answers every POST; a handler
    whose client closes the connection is cancelled, as an inference server aborts the request."""

    def __init__(self, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> None:
        self.loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/{tail:.*}", handler)
        self.runner = web.AppRunner(app, handler_cancellation=True)

        async def start() -> None:
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", 0).start()

        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


def test_a_pod_that_sends_no_headers_gets_a_504_and_a_stream_whose_headers_came_is_not_cut(cluster, tmp_path: Path):
    """--response-timeout 1: a pod that takes the request and never answers: a 504 in OpenAI's error shape after
    1 s (counted as timeout), and the pod's connection closed (it sees its request cancelled); a stream whose
    headers come at once and whose chunks come 1.5 s apart reaches the client whole."""
    seen = {"got": 0, "cancelled": 0}

    async def handle(request: web.Request) -> web.StreamResponse:
        stream = (await request.json()).get("stream")
        seen["got"] += 1
        if not stream:
            try:
                await asyncio.sleep(60)  # generating, never answering
            except asyncio.CancelledError:
                seen["cancelled"] += 1
                raise
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for chunk in range(3):
            await response.write(f"data: {chunk}\n\n".encode())
            await asyncio.sleep(1.5)
        await response.write_eof(b"data: [DONE]\n\n")
        return response

    pod = AioPod(handle)
    ready(cluster)
    try:
        with running_activator(cluster, tmp_path, pod.url, "--response-timeout", "1") as (url, _):
            rsp = chat(url, "tiny", timeout=30)
            assert rsp.status_code == 504, rsp.text
            assert rsp.json()["error"] == {
                "message": f"default/tiny at {pod.url}/v1/chat/completions sent no response within 1 s",
                "type": "service_unavailable", "code": 504}
            wait_for(lambda: seen["cancelled"] == 1, timeout=5, what="the pod's connection closed")
            rsp = requests.post(url + "/v1/chat/completions", timeout=30, json={
                "model": "tiny", "messages": [{"role": "user", "content": "hi"}], "stream": True})
            assert rsp.status_code == 200
            assert rsp.text == "data: 0\n\ndata: 1\n\ndata: 2\n\ndata: [DONE]\n\n"
            assert (metric(url, "timeout"), metric(url, "forwarded"), seen["got"]) == (1, 1, 2)
    finally:
        pod.close()


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_a_response_timeout_below_0_is_refused_at_start(how: str):
    flag, env = (["--response-timeout", "-1"], {}) if how == "flag" else (
        [], {"FORESAIL_ACTIVATOR_RESPONSE_TIMEOUT": "-1"})
    done = subprocess.run([sys.executable, "-m", "foresail", "activator", *flag], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **env})
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr == "error: --response-timeout must be seconds >= 0 (0: no limit), not -1\n"


class KeepAlivePod(http.server.ThreadingHTTPServer):
    """Stands in for a pod served by uvicorn, which closes a kept-alive connection once it has been idle ``idle_s``
    (5 s in vLLM); counts its connections and the requests it drops. Its close and a request sent at that moment
    cross on the wire (with aiohttp's server closing at 0.5 s, 2 of 60 requests sent at about that idle time got
    a 502 through the activator); here they always cross: a request that comes on a connection idle ``idle_s`` or
    more is dropped unread and the connection closed, as if the close had come first. With ``together`` set, a
    request is answered once that many have come (each on a connection of its own)."""

    def __init__(self, idle_s: float) -> None:
        super().__init__(("127.0.0.1", 0), _KeepAlive)
        self.idle_s = idle_s
        self.connections = self.dropped = 0
        self.together: threading.Barrier | None = None
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _KeepAlive(Answer):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: KeepAlivePod
    answered: float | None = None

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def handle_one_request(self) -> None:
        select.select([self.connection], [], [])  # the next request, or the connection's end
        if self.answered is not None and time.monotonic() - self.answered >= self.server.idle_s:
            self.server.dropped += 1
            self.close_connection = True
            return
        super().handle_one_request()
        self.answered = time.monotonic()

    def do_POST(self) -> None:  # noqa: N802 (the http.server convention)
        if self.server.together is not None:
            self.server.together.wait()
        super().do_POST()


def test_a_request_on_a_kept_connection_the_pod_closes_is_sent_again_on_a_new_one(cluster, tmp_path: Path):
    """A pod that closes connections idle 0.5 s, and requests 0.7 s apart after two at once (two kept connections,
    both closed by then): each that goes on a kept connection finds it closed, and is sent again once, on a new
    connection (not the other kept one): every request answered, none a 502."""
    pod = KeepAlivePod(idle_s=0.5)
    ready(cluster)
    try:
        with running_activator(cluster, tmp_path, f"http://127.0.0.1:{pod.server_address[1]}") as (url, _):
            pod.together = threading.Barrier(2, timeout=10)
            with ThreadPoolExecutor(2) as pool:
                statuses = [answer.status_code for answer in pool.map(lambda _: chat(url, "tiny"), range(2))]
            pod.together = None
            assert pod.connections == 2
            for _ in range(10):
                time.sleep(0.7)
                statuses.append(chat(url, "tiny").status_code)
            assert statuses == [200] * 12 and pod.dropped >= 4
            assert (metric(url, "forwarded"), metric(url, "upstream_error")) == (12, 0)
    finally:
        pod.shutdown()


class _Closes(http.server.BaseHTTPRequestHandler):
    """A pod that reads each request and closes its connection without a byte of answer."""

    got = 0

    def do_POST(self) -> None:  # noqa: N802 (the http.server convention)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).got += 1
        self.close_connection = True

    def log_message(self, *_: object) -> None:
        pass


def test_a_new_connection_closed_before_any_answer_is_a_502_not_sent_again(cluster, tmp_path: Path):
    """The pod had the request (it may be working on it, or have died of it): it is not sent again."""
    pod = serve(_Closes)
    ready(cluster)
    try:
        with running_activator(cluster, tmp_path, f"http://127.0.0.1:{pod.server_address[1]}") as (url, _):
            rsp = chat(url, "tiny")
            assert rsp.status_code == 502 and "failed before answering" in rsp.json()["error"]["message"], rsp.text
            assert (_Closes.got, metric(url, "upstream_error")) == (1, 1)
    finally:
        pod.shutdown()


def test_an_idle_connection_to_a_pod_is_not_kept_as_long_as_uvicorn_keeps_it(cluster, tmp_path: Path):
    """uvicorn closes a connection idle 5 s: one idle 4.5 s is not used again (the activator closed it after 4 s),
    the next request opens a new one."""
    pod = KeepAlivePod(idle_s=5)
    ready(cluster)
    try:
        with running_activator(cluster, tmp_path, f"http://127.0.0.1:{pod.server_address[1]}") as (url, _):
            assert chat(url, "tiny").status_code == 200
            assert chat(url, "tiny").status_code == 200  # at once: on the same connection
            time.sleep(4.5)
            assert chat(url, "tiny").status_code == 200
            assert (pod.connections, pod.dropped) == (2, 0)
    finally:
        pod.shutdown()
