"""The operator's API client against the Kubernetes API test server: retries, shutdown, the server version."""
from pathlib import Path

import kopf
import pytest
from aiohttp import web
from prometheus_client import REGISTRY

from foresail.kubetest.testing import start_apiserver
from foresail_operator.kube import ApiError, KubeClient
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

    async with http_server("/version", version) as url:
        client = KubeClient(kopf.ConnectionInfo(server=url, insecure=True))
        try:
            if sleeps is ApiError:
                with pytest.raises(ApiError, match="starting"):
                    await kubelet_sleeps(client, choice)
            else:
                assert await kubelet_sleeps(client, choice) is sleeps
        finally:
            await client.close()
