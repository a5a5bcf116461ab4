"""What the activator passes between client and pod (the real `foresail activator` process over HTTP, a real HTTP
server standing in for the pod): an Expect it has answered itself does not go on, and a pod's redirect goes back to
the client, never followed by the activator."""

from __future__ import annotations

import http.client
import http.server
import json
from pathlib import Path

import requests

from tests.operator.test_activator import Answer, metric
from tests.operator.test_activator_faults import behind_activator


def test_a_clients_expect_100_continue_is_answered_by_the_activator_and_does_not_go_on(cluster, tmp_path: Path):
    """curl sends `Expect: 100-continue` with a large body; the activator answers it and reads the whole body, so
    the pod gets none: one that ignores it (Python's http.server, speaking HTTP/1.0) must not leave the request
    waiting for a 100 it never sends (a 504 at the response timeout before)."""
    with behind_activator(cluster, tmp_path, Answer, "--response-timeout", "5") as url:
        rsp = requests.post(url + "/v1/chat/completions", timeout=30, headers={"Expect": "100-continue"},
                            data=json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}))
        assert rsp.status_code == 200, rsp.text
        assert rsp.json()["choices"][0]["message"]["content"] == "hi"
        assert (metric(url, "forwarded"), metric(url, "timeout")) == (1, 0)


class _Redirects(http.server.BaseHTTPRequestHandler):
    """A pod that answers every POST with a 302 to a path outside /v1/, whose GET it would answer too."""

    seen: list[tuple[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802 (the http.server convention)
        self.seen.append(("POST", self.path))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(302)
        self.send_header("Location", "/internal/admin")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802 (the http.server convention)
        self.seen.append(("GET", self.path))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_: object) -> None:
        pass


def test_a_pods_redirect_goes_back_to_the_client_unfollowed(cluster, tmp_path: Path):
    """aiohttp follows redirects unless told not to: the activator turned a POST answered 302 into a GET of a path
    outside /v1/ that the client never asked for, and answered with that. The client gets the 302 as the pod sent
    it, and the pod sees only the POST."""
    _Redirects.seen.clear()
    with behind_activator(cluster, tmp_path, _Redirects) as url:
        rsp = requests.post(url + "/v1/chat/completions", json={"model": "tiny"}, timeout=30,
                            allow_redirects=False)
        assert (rsp.status_code, rsp.headers["Location"]) == (302, "/internal/admin"), rsp.text
        assert _Redirects.seen == [("POST", "/v1/chat/completions")]
        assert metric(url, "forwarded") == 1


class _SetsCookie(http.server.BaseHTTPRequestHandler):
    """A pod that sets a cookie on every answer and notes the Cookie header of each request it gets."""

    cookies: list[str | None] = []

    def do_POST(self) -> None:  # noqa: N802 (the http.server convention)
        self.cookies.append(self.headers.get("Cookie"))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Set-Cookie", "session=alice; Path=/")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_: object) -> None:
        pass


def test_a_cookie_a_pod_sets_for_one_client_never_goes_with_anothers_requests(cluster, tmp_path: Path):
    """The Service by its host name (aiohttp's cookie jar keeps no cookie of an IP address): the activator kept the
    cookie set for the first client and sent it with the second's request. Each client gets the Set-Cookie; the pod
    gets a Cookie only from a client that sends one."""
    _SetsCookie.cookies.clear()
    with behind_activator(cluster, tmp_path, _SetsCookie, host="localhost") as url:
        for _ in range(2):
            rsp = requests.post(url + "/v1/chat/completions", json={"model": "tiny"}, timeout=30)
            assert rsp.status_code == 200 and rsp.headers["Set-Cookie"] == "session=alice; Path=/", rsp.text
        rsp = requests.post(url + "/v1/chat/completions", json={"model": "tiny"}, timeout=30,
                            headers={"Cookie": "session=bob"})
        assert rsp.status_code == 200, rsp.text
        assert _SetsCookie.cookies == [None, None, "session=bob"]


class _Notes(Answer):
    """Stands in for a pod: notes each request's headers, and answers as Answer does."""

    seen: list[dict[str, str]] = []

    def do_POST(self) -> None:  # noqa: N802 (the http.server convention)
        self.seen.append(dict(self.headers.items()))
        super().do_POST()


def test_headers_the_client_did_not_send_are_not_added(cluster, tmp_path: Path):
    """A body without Content-Type reaches the pod without one (aiohttp's client would add application/octet-stream,
    which a FastAPI server, vLLM's or SGLang's, reads as bytes, not JSON: a 422), and without an Accept-Encoding the
    client did not send (the pod could answer compressed), Accept or User-Agent; those a client sends go on."""
    _Notes.seen.clear()
    body = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}).encode()
    sent = {"Content-Type": "application/json", "Accept": "application/json", "Accept-Encoding": "br",
            "User-Agent": "OpenAI/Python 1.0"}
    with behind_activator(cluster, tmp_path, _Notes) as url:
        for headers in ({}, sent):
            connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
            connection.putrequest("POST", "/v1/chat/completions", skip_accept_encoding=True)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                connection.putheader(name, value)
            connection.endheaders(body)
            assert connection.getresponse().status == 200
            connection.close()
    names = ("Accept", "Accept-Encoding", "Content-Type", "User-Agent")
    assert [{n: seen.get(n) for n in names} for seen in _Notes.seen] == [dict.fromkeys(names), sent]
