"""The informer (list, then watch) against the Kubernetes API test server: what it follows, how it resumes
a dropped watch, lists anew after a 410 Gone, and keeps its last state through an outage."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import kopf
import pytest
from aiohttp import web

import foresail_operator.informer as informer_module
from foresail.kubetest.testing import ApiServerProcess, start_apiserver
from foresail_operator.informer import Informer
from foresail_operator.kube import ApiError, KubeClient
from tests.helpers import Kube, http_server

CONFIGMAPS = "/api/v1/namespaces/{ns}/configmaps"


def configmap(name: str, labels: dict[str, str] | None = None, value: str = "1") -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels or {"app": "x"}},
            "data": {"value": value}}


async def until(check: Callable[[], object], timeout: float = 5.0) -> None:
    """Let the informer run until ``check()`` holds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def following(server: ApiServerProcess, *namespaces: str, selector: str | None = "app=x"
                    ) -> AsyncIterator[tuple[Informer, list[tuple[str, str]]]]:
    """An informer of ConfigMaps, running: it and the (event, name) pairs it passed on."""
    seen: list[tuple[str, str]] = []
    client = KubeClient(kopf.ConnectionInfo(server=server.url, insecure=True))
    informer = Informer(client, "v1", "configmaps", namespaces, selector,
                        on_change=lambda kind, obj: seen.append((kind, obj["metadata"]["name"])))
    task = asyncio.create_task(informer.run())
    try:
        yield informer, seen
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.close()


def calls(server: ApiServerProcess) -> list[str]:
    """The informer's calls, in order."""
    return [e["verb"] for e in server.audit()
            if e["resource"] == "configmaps" and e["userAgent"].startswith("foresail")]


async def test_it_lists_then_follows_every_change_in_its_namespaces_and_selector(tmp_path: Path) -> None:
    with start_apiserver(tmp_path, simulate_pods=False) as server:
        kube = Kube(server.url)
        for ns in ("one", "two"):
            kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        kube.create(CONFIGMAPS.format(ns="one"), configmap("a"))
        async with following(server, "one") as (informer, seen):
            await informer.synced()
            assert list(informer.objects) == [("one", "a")] and seen == [("ADDED", "a")]
            kube.create(CONFIGMAPS.format(ns="one"), configmap("b"))
            kube.create(CONFIGMAPS.format(ns="one"), configmap("other", {"app": "y"}))
            kube.create(CONFIGMAPS.format(ns="two"), configmap("elsewhere"))
            kube.merge(CONFIGMAPS.format(ns="one") + "/a", {"data": {"value": "2"}})
            kube.delete(CONFIGMAPS.format(ns="one") + "/b")
            await until(lambda: len(seen) == 4)
            await asyncio.sleep(0.3)  # nothing more comes
            assert seen == [("ADDED", "a"), ("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
            assert list(informer.objects) == [("one", "a")]
            assert informer.objects[("one", "a")]["data"] == {"value": "2"}
            assert calls(server) == ["list", "watch"] and informer.error is None


async def test_a_dropped_watch_resumes_where_it_was_and_an_expired_version_lists_again(tmp_path: Path) -> None:
    """The server keeps its last 5 events: a watch that resumes after more than that gets a 410 Gone."""
    with start_apiserver(tmp_path, simulate_pods=False, extra_args=("--event-log-size", "5")) as server:
        kube = Kube(server.url)
        path = CONFIGMAPS.format(ns="default")
        async with following(server) as (informer, seen):
            await informer.synced()
            assert server.drop_watches() == 1
            kube.create(path, configmap("a"))  # while no watch is open: replayed from the version it had
            await until(lambda: ("default", "a") in informer.objects)
            assert calls(server) == ["list", "watch", "watch"]
            # The loop is blocked by these calls: the informer only resumes once 10 events have gone by.
            server.drop_watches()
            kube.delete(path + "/a")
            for i in range(9):
                kube.create(path, configmap(f"c{i}"))
            await until(lambda: len(informer.objects) == 9, timeout=0.9)  # at once, not after a backoff
            assert calls(server) == ["list", "watch", "watch", "watch", "list", "watch"]
            assert ("DELETED", "a") in seen and informer.error is None


async def test_through_an_outage_it_keeps_its_last_state_then_reports_what_changed(tmp_path: Path) -> None:
    with start_apiserver(tmp_path, simulate_pods=False) as server:
        kube = Kube(server.url)
        path = CONFIGMAPS.format(ns="default")
        kube.create(path, configmap("a"))
        kube.create(path, configmap("b"))
        async with following(server) as (informer, seen):
            await informer.synced()
            server.faults(method="GET", path="configmaps", status=503, count=1000)
            server.drop_watches()
            kube.delete(path + "/b")
            await until(lambda: informer.error is not None)
            assert informer.error is not None
            assert informer.error.status == 503 and len(informer.objects) == 2  # fail-static
            await informer.synced()  # listed once: no error for its readers
            server.clear_faults()
            await until(lambda: informer.error is None, timeout=6)  # the next try, 1 or 2 s later
            assert list(informer.objects) == [("default", "a")] and seen[-1] == ("DELETED", "b")


async def test_until_it_has_listed_readers_get_the_failure(tmp_path: Path) -> None:
    with start_apiserver(tmp_path, simulate_pods=False) as server:
        server.faults(method="GET", path="configmaps", status=403, count=1000, message="configmaps is forbidden")
        async with following(server) as (informer, _):
            with pytest.raises(ApiError) as caught:
                await informer.synced()
            assert caught.value.status == 403 and "configmaps is forbidden" in caught.value.message
            server.clear_faults()
            await until(lambda: informer.error is None, timeout=4)
            await informer.synced()
            assert informer.objects == {}


async def test_a_namespace_it_may_not_read_fails_for_that_namespace_only(tmp_path: Path) -> None:
    """Two namespaces, one of them forbidden (a Role missing there): readers of the other one are served and
    told nothing fails; those of the forbidden one, or of every namespace, get its failure. A cluster-wide
    informer's failure is every namespace's."""
    with start_apiserver(tmp_path, simulate_pods=False) as server:
        kube = Kube(server.url)
        for ns in ("one", "two"):
            kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        kube.create(CONFIGMAPS.format(ns="one"), configmap("a"))
        server.faults(method="GET", path="namespaces/two/configmaps", status=403, count=1000,
                      message="configmaps is forbidden in two")
        async with following(server, "one", "two") as (informer, _):
            await informer.synced("one")
            assert list(informer.objects) == [("one", "a")] and informer.error_in("one") is None
            for namespace in ("two", None):
                with pytest.raises(ApiError, match="forbidden in two"):
                    await informer.synced(namespace)
            failure = informer.error_in("two")
            assert failure is not None and failure.status == 403
        server.clear_faults()
        server.faults(method="GET", path="configmaps", status=403, count=1000, message="configmaps is forbidden")
        async with following(server) as (everywhere, _):
            with pytest.raises(ApiError, match="configmaps is forbidden"):
                await everywhere.synced("one")
            assert everywhere.error_in("one") is everywhere.error_in("two") is not None


async def test_a_watch_it_may_not_open_keeps_the_listed_state_and_says_why(tmp_path: Path) -> None:
    """A service account with list but not watch (an RBAC left from an older chart): the list serves its
    readers, the error stays until a watch opens, and the tries back off."""
    with start_apiserver(tmp_path, simulate_pods=False) as server:
        Kube(server.url).create(CONFIGMAPS.format(ns="default"), configmap("a"))
        server.faults(method="GET", path="watch=true", status=403, count=1000, message="configmaps is forbidden")
        async with following(server) as (informer, _):
            await informer.synced()
            assert list(informer.objects) == [("default", "a")]
            await until(lambda: informer.error is not None)
            assert informer.error is not None
            assert informer.error.status == 403
            await asyncio.sleep(4.5)
            assert calls(server) == ["list", "watch"] * 3  # at 0, 1 and 3 s; the next at 7 s
            assert informer.error is not None
            server.clear_faults()
            await until(lambda: informer.error is None, timeout=6)


async def test_a_version_too_old_again_and_again_lists_again_less_often(tmp_path: Path,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    """A server whose watches keep answering 410 Gone (its watch cache behind the versions its lists give): the
    first 410 lists again at once, the next ones back off (1 s, doubling), with one warning."""
    with start_apiserver(tmp_path, simulate_pods=False) as server:
        Kube(server.url).create(CONFIGMAPS.format(ns="default"), configmap("a"))
        server.faults(method="GET", path="watch=true", status=410, count=100000, message="too old resource version")
        with caplog.at_level(logging.INFO, logger="foresail.informer"):
            async with following(server) as (informer, _):
                await informer.synced()
                await asyncio.sleep(4.5)
                assert calls(server) == ["list", "watch"] * 4  # at 0, 0, 1 and 3 s; the next at 7 s
                assert informer.error is not None and informer.error.status == 410
                assert list(informer.objects) == [("default", "a")]
                server.clear_faults()
                await until(lambda: informer.error is None, timeout=6)
        assert [r.levelname for r in caplog.records] == ["WARNING", "INFO"], caplog.text
        assert "410" in caplog.records[0].getMessage()


async def test_a_watch_that_opens_then_fails_backs_off_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    """No API test server fails a watch it has opened, so a small HTTP server stands in: each watch opens, then
    sends an ERROR event. That is a failure until a watch delivers an event: the tries back off (1 s, doubling)
    and the spell is logged once, not once a second with a "works again" between."""
    lists = 0

    async def handle(request: web.Request) -> web.StreamResponse:
        nonlocal lists
        if request.query.get("watch") != "true":
            lists += 1
            return web.json_response({"metadata": {"resourceVersion": "2"}, "items": [
                {"metadata": {"name": "a", "namespace": "default", "resourceVersion": "1"}}]})
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b'{"type": "ERROR", "object": {"kind": "Status", "code": 500, "reason": "InternalError", '
                             b'"message": "etcdserver: request timed out"}}\n')
        return response

    async with http_server("/api/v1/configmaps", handle) as url:
        client = KubeClient(kopf.ConnectionInfo(server=url, insecure=True))
        informer = Informer(client, "v1", "configmaps")
        with caplog.at_level(logging.INFO, logger="foresail.informer"):
            task = asyncio.create_task(informer.run())
            try:
                await informer.synced()
                await asyncio.sleep(4.5)
                assert lists == 3  # at 0, 1 and 3 s; the next at 7 s
                assert informer.error is not None and informer.error.status == 500
                assert list(informer.objects) == [("default", "a")]
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await client.close()
        assert [r.levelname for r in caplog.records] == ["WARNING"], caplog.text
        assert "etcdserver: request timed out" in caplog.records[0].getMessage()


async def test_garbage_from_the_server_is_an_error_it_recovers_from(monkeypatch: pytest.MonkeyPatch) -> None:
    """No API server sends these, so a small HTTP server stands in: a list with a nameless item, then
    watches that send a line that is not JSON, a JSON array, an event without an object and a nameless
    object. Each is a failure (listed again after the backoff), never a crash; a good event then lands."""
    monkeypatch.setattr(informer_module, "BACKOFF_S", (0.01, 0.02))
    lists: list[dict[str, Any]] = [{"items": [{"metadata": {}}]}]  # then good ones
    watches = [b"not json\n", b"[1, 2]\n", b'{"type": "ADDED"}\n', b'{"type": "ADDED", "object": {"metadata": {}}}\n',
               b'{"type": "ADDED", "object": {"metadata": {"name": "b", "namespace": "default", '
               b'"resourceVersion": "3"}}}\n']

    stop = asyncio.Event()

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "true":
            body = lists.pop(0) if lists else {"metadata": {"resourceVersion": "2"}, "items": [
                {"metadata": {"name": "a", "namespace": "default", "resourceVersion": "1"}}]}
            return web.json_response(body)
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(watches.pop(0) if watches else b"")
        if not watches:  # the good event sent: keep the watch open until the test ends
            await stop.wait()
        return response

    async with http_server("/api/v1/configmaps", handle) as url:
        client = KubeClient(kopf.ConnectionInfo(server=url, insecure=True))
        seen: list[str] = []
        informer = Informer(client, "v1", "configmaps", on_change=lambda kind, obj: seen.append(kind))
        task = asyncio.create_task(informer.run())
        try:
            await until(lambda: ("default", "b") in informer.objects)
            assert ("default", "a") in informer.objects and not watches and not task.done()
            assert seen == ["ADDED", "ADDED"] and informer.error is None
        finally:
            stop.set()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await client.close()
