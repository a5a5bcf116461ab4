"""The operator's API client against the Kubernetes API test server: retries, shutdown, the server version."""
import email.utils
import logging
import time
from pathlib import Path

import kopf
import pytest
import requests
from aiohttp import web
from prometheus_client import REGISTRY

from foresail.kubetest.testing import start_apiserver
from foresail_operator.kube import MAX_RETRY_AFTER_S, ApiError, KubeClient, _retry_after
from foresail_operator.reconciler import kubelet_sleeps
from tests.helpers import http_server


async def test_retries_a_conflict_and_fails_clearly_after_close(tmp_path: Path) -> None:
    with start_apiserver(tmp_path, simulate_pods=False) as server:
        client = KubeClient(kopf.ConnectionInfo(server=server.url, insecure=True))
        server.faults(method="GET", path="/api/v1/namespaces/default$", status=500, count=2)
        namespace = await client.get("/api/v1/namespaces/default")
        assert namespace is not None and namespace["metadata"]["name"] == "default"
        gets = [e for e in server.audit() if e["resource"] == "namespaces" and e["userAgent"].startswith("foresail")]
        assert len(gets) == 3, "two server errors, then the answer"
        await client.close()
        with pytest.raises(ApiError) as caught:  # never a bare "Session is closed" from aiohttp
            await client.get("/api/v1/namespaces/default")
        assert caught.value.status == 503 and "shutting down" in str(caught.value)


async def test_counts_writes_that_fail_but_not_reads(tmp_path: Path) -> None:
    def failed(status: str) -> float:
        return REGISTRY.get_sample_value("foresail_api_errors_total", {"status": status}) or 0.0

    with start_apiserver(tmp_path, simulate_pods=False) as server:
        client = KubeClient(kopf.ConnectionInfo(server=server.url, insecure=True))
        path = "/api/v1/namespaces/default"
        before_403, before_500 = failed("403"), failed("500")
        server.faults(method="GET", path=f"{path}$", status=403)
        with pytest.raises(ApiError):
            await client.get(path)
        server.faults(method="PATCH", path=f"{path}$", status=403)
        with pytest.raises(ApiError) as caught:
            await client.merge_patch(path, {"metadata": {"labels": {"a": "b"}}})
        assert caught.value.status == 403
        server.faults(method="PATCH", path=f"{path}$", status=500, count=1)  # retried, then it succeeds
        await client.merge_patch(path, {"metadata": {"labels": {"a": "c"}}})
        assert failed("403") - before_403 == 1, "the failed PATCH counts, the failed GET does not"
        assert failed("500") == before_500, "a write that succeeds on a retry is no failure"
        await client.close()


def _http_date(offset_s: float) -> str:
    return email.utils.formatdate(time.time() + offset_s, usegmt=True)


@pytest.mark.parametrize("retry_after", [
    lambda: _http_date(1), lambda: _http_date(-60), lambda: "Wed, 21 Oct 2015 07:28:00 -0000", lambda: "1",
    lambda: "soon", lambda: "Wed, 32 Oct 2015 07:28:00 GMT", lambda: "nan",
], ids=["date-ahead", "date-passed", "date-utc-unnamed", "seconds", "garbage", "bad-date", "nan"])
async def test_a_throttled_call_is_retried_whatever_form_its_retry_after_takes(retry_after) -> None:
    """429 Too Many Requests, then the answer: a Retry-After as an HTTP date (RFC 9110 allows it; proxies send
    it) or as garbage is a wait or none, never a ValueError out of the call."""
    calls = []

    async def namespaces(_: web.Request) -> web.Response:
        calls.append(time.time())
        if len(calls) == 1:
            return web.json_response({"kind": "Status", "reason": "TooManyRequests", "message": "slow down"},
                                     status=429, headers={"Retry-After": retry_after()})
        return web.json_response({"kind": "NamespaceList", "metadata": {}, "items": []})

    async with http_server("/api/v1/namespaces", namespaces) as url:
        client = KubeClient(kopf.ConnectionInfo(server=url, insecure=True))
        try:
            assert (await client.request("GET", "/api/v1/namespaces"))["items"] == []
        finally:
            await client.close()
    assert len(calls) == 2


def test_retry_after_is_read_as_seconds_or_a_date_and_capped() -> None:
    assert _retry_after("3") == 3.0 and _retry_after(None) == _retry_after("") == 0.0
    assert 25 < _retry_after(_http_date(30)) <= 30  # the date has whole seconds
    assert _retry_after(_http_date(-30)) == _retry_after("-4") == 0.0  # passed: no wait
    assert _retry_after(_http_date(24 * 3600)) == _retry_after("86400") == MAX_RETRY_AFTER_S  # a day: cut short
    assert _retry_after("soon") == _retry_after("inf") == _retry_after("Wed, 21 Oct") == 0.0


async def test_reads_the_server_version_once(tmp_path: Path) -> None:
    with start_apiserver(tmp_path, simulate_pods=False) as server:
        client = KubeClient(kopf.ConnectionInfo(server=server.url, insecure=True))
        assert await client.server_version() == (1, 32)
        server.stop()  # read once: no call after the first
        assert await client.server_version() == (1, 32)
        await client.close()


@pytest.mark.parametrize("status, body, expected", [
    (200, {"major": "1", "minor": "29+", "gitVersion": "v1.29.4-gke.100"}, (1, 29)),  # GKE's and EKS's minor
    (200, {"major": "1", "minor": "30"}, (1, 30)),
    (200, {"major": "", "minor": ""}, "cannot read the server version"),
    (200, ["not", "a", "version"], "cannot read the server version"),
    (503, {"kind": "Status", "reason": "ServiceUnavailable", "message": "starting"}, "starting"),
])
async def test_a_providers_version_counts_and_an_unreadable_one_is_an_error(status, body, expected) -> None:
    """Other servers' /version answers (aiohttp, as kube-apiserver would write them): the version is never
    guessed, so a Deployment is not planned once with one preStop hook and then with the other."""
    async def version(_: web.Request) -> web.Response:
        return web.json_response(body, status=status)

    async with http_server("/version", version) as url:
        client = KubeClient(kopf.ConnectionInfo(server=url, insecure=True))
        try:
            if isinstance(expected, tuple):
                assert await client.server_version() == expected
            else:
                with pytest.raises(ApiError, match=expected):
                    await client.server_version()
        finally:
            await client.close()


@pytest.mark.parametrize("minor, choice, sleeps", [
    ("29+", "auto", False), ("30", "auto", True), ("29+", "sleep", True), ("30", "exec", False),
    ("broken", "exec", False), ("broken", "sleep", True), ("broken", "auto", ApiError),
])
async def test_the_pre_stop_hook_follows_the_setting_and_auto_the_server_version(minor, choice, sleeps) -> None:
    """`auto` reads /version (and fails while it is unreadable); `sleep` and `exec` never read it, so a cluster
    whose kubelets lag its API server keeps the image's `sleep`."""
    async def version(_: web.Request) -> web.Response:
        if minor == "broken":
            return web.json_response({"kind": "Status", "message": "starting"}, status=503)
        return web.json_response({"major": "1", "minor": minor})

    async def no_nodes(_: web.Request) -> web.Response:
        return web.json_response({"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": []})

    async with http_server("/version", version, {"/api/v1/nodes": no_nodes}) as url:
        client = KubeClient(kopf.ConnectionInfo(server=url, insecure=True))
        try:
            if sleeps is ApiError:
                with pytest.raises(ApiError, match="starting"):
                    await kubelet_sleeps(client, choice)
            else:
                assert await kubelet_sleeps(client, choice) is sleeps
        finally:
            await client.close()


def _node(name: str, kubelet: str) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "status": {"nodeInfo": {"kubeletVersion": kubelet}}}


async def test_auto_takes_the_kubelets_sleep_only_where_every_node_has_it(tmp_path: Path, caplog) -> None:
    """On a 1.32 API server, `auto` reads the nodes once: none (or no right to list them, 403) leaves the
    server's version to decide; one kubelet older than 1.30 (GPU node pools often lag their control
    plane) keeps the image's `sleep`; another failure to list them is an ApiError, nothing guessed."""
    async def sleeps() -> bool:
        client = KubeClient(kopf.ConnectionInfo(server=server.url, insecure=True))
        try:
            first, second = await kubelet_sleeps(client, "auto"), await kubelet_sleeps(client, "auto")
            assert first == second
            return first
        finally:
            await client.close()

    def node_lists() -> int:
        return sum(e["resource"] == "nodes" and e["verb"] == "list" for e in server.audit(clear=True))

    with start_apiserver(tmp_path, simulate_pods=False) as server:
        assert await sleeps() is True and node_lists() == 1  # no nodes; each client reads them once for two calls
        nodes = f"{server.url}/api/v1/nodes"
        for name, kubelet in (("gpu-a", "v1.31.2"), ("gpu-b", "v1.29.4-eks-1a2b3c")):
            assert requests.post(nodes, json=_node(name, kubelet), timeout=5).status_code == 201
            assert requests.put(f"{nodes}/{name}/status", json=requests.get(f"{nodes}/{name}", timeout=5).json()
                                | {"status": _node(name, kubelet)["status"]}, timeout=5).status_code == 200
        with caplog.at_level(logging.INFO, logger="foresail.kube"):
            assert await sleeps() is False and node_lists() == 1
        assert "the oldest kubelet of 2 nodes is 1.29" in caplog.text
        for status in (403, 404):
            server.faults(method="GET", path="/api/v1/nodes", status=status)
            assert await sleeps() is True
        server.faults(method="GET", path="/api/v1/nodes", status=500, count=4)  # the first try and 3 retries
        with pytest.raises(ApiError, match="500"):
            await sleeps()


async def test_the_nodes_are_read_a_page_at_a_time() -> None:
    """A cluster of many nodes answers in pages (`limit`, then `continue` until none is given)."""
    asked: list[dict] = []

    async def nodes(request: web.Request) -> web.Response:
        asked.append(dict(request.query))
        if request.query.get("continue") == "page-2":
            return web.json_response({"kind": "NodeList", "metadata": {}, "items": [_node("c", "v1.28.15")]})
        return web.json_response({"kind": "NodeList", "metadata": {"continue": "page-2"},
                                  "items": [_node("a", "v1.31.0"), _node("b", "v1.30.1"), _node("vk", "virtual")]})

    async with http_server("/api/v1/nodes", nodes) as url:
        client = KubeClient(kopf.ConnectionInfo(server=url, insecure=True))
        try:
            assert await client.oldest_kubelet() == (1, 28)
        finally:
            await client.close()
    assert asked == [{"limit": "500"}, {"limit": "500", "continue": "page-2"}]


async def test_a_rotated_service_account_token_is_read_again(tmp_path: Path) -> None:
    """The kubelet replaces a projected token before it expires, and the API server then refuses the old one: the
    client sends the file's new token from the next call on, calls and watches alike (as client-go does)."""
    token = tmp_path / "token"
    token.write_text("token-A\n")
    accepted = {"token": "token-A"}

    async def namespaces(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {accepted['token']}":
            return web.json_response({"kind": "Status", "reason": "Unauthorized", "message": "Unauthorized",
                                      "code": 401}, status=401)
        if request.query.get("watch") == "true":
            return web.Response(text="")  # a watch the server ends at once
        return web.json_response({"kind": "NamespaceList", "metadata": {"resourceVersion": "1"}, "items": []})

    async with http_server("/api/v1/namespaces", namespaces) as url:
        client = KubeClient(kopf.ConnectionInfo(server=url, token="token-A"), token_file=str(token))
        try:
            assert (await client.request("GET", "/api/v1/namespaces"))["items"] == []
            rotated = tmp_path / "token.new"  # written beside, then swapped in, as the kubelet's atomic writer does
            rotated.write_text("token-B\n")
            rotated.replace(token)
            accepted["token"] = "token-B"
            assert (await client.request("GET", "/api/v1/namespaces"))["items"] == []
            async with client.watch("/api/v1/namespaces", {}, timeout_s=5) as events:
                assert [event async for event in events] == []
        finally:
            await client.close()
