"""The paths the activator (the real `foresail activator` process over HTTP) forwards: only those under /v1/, as
the client wrote them. A pod's other endpoints (vLLM's /sleep, /reset_prefix_cache, /collective_rpc; SGLang's
/flush_cache, /update_weights_from_disk) are for the cluster's inside only, and the activator may face the
world; a path that a pod, not the activator, would decode or resolve could reach them."""

from __future__ import annotations

import http.client
import http.server
import json
from pathlib import Path

import pytest

from tests.operator.test_activator import metric
from tests.operator.test_activator_faults import behind_activator

BODY = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}]})


class _Paths(http.server.BaseHTTPRequestHandler):
    """Stands in for a pod: notes each request's path as it came (the request line's target) and answers {}."""

    seen: list[str] = []

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = _answer  # noqa: N815 (the http.server convention)

    def log_message(self, *_: object) -> None:
        pass


def send(url: str, method: str, target: str) -> tuple[int, dict]:
    """A request with this exact target (http.client sends it as written: no client resolves its "..")."""
    connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=30)
    try:
        connection.request(method, target, body=BODY, headers={"Content-Type": "application/json"})
        answer = connection.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        connection.close()


@pytest.fixture
def forwarding(cluster, tmp_path: Path):
    """The activator in front of a ready deployment whose pod notes the paths it gets."""
    _Paths.seen.clear()
    with behind_activator(cluster, tmp_path, _Paths) as url:
        yield url


def test_paths_outside_v1_are_refused_in_openais_shape_and_never_reach_a_pod(forwarding: str):
    outside = ["/v1/../reset_prefix_cache", "/v1/%2e%2e/sleep?level=1", "/v1/..%2Fcollective_rpc",
               "/v1/chat/../../flush_cache", "/sleep", "/update_weights_from_disk", "/v1/", "/v1/chat/.."]
    for target in outside:
        for method in ("POST", "GET"):
            status, body = send(forwarding, method, target)
            assert status == 404, (target, body)
            assert body["error"]["type"] == "invalid_request_error" and body["error"]["code"] == 404, body
            assert body["error"]["message"].startswith("the activator serves /v1/* only, not "), body
    assert _Paths.seen == []
    assert metric(forwarding, "bad_request") == 2 * len(outside)


def test_a_path_under_v1_goes_on_as_the_client_wrote_it(forwarding: str):
    """Neither decoded (%2F stays, %3F does not start a query) nor resolved (a ".." that stays under /v1/)."""
    kept = ["/v1/chat/completions", "/v1/files/a%2Fb", "/v1/chat/completions%3Fx=1", "/v1/completions?a=%2F&b",
            "/v1/x/../chat/completions"]
    for target in kept:
        assert send(forwarding, "POST", target) == (200, {}), target
    assert _Paths.seen == kept
    assert metric(forwarding, "forwarded") == len(kept)
