"""Watches: initial events, resume from a resourceVersion, 410, bookmarks, timeouts, selectors."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from foresail.kubetest.testing import ApiServerProcess, start_apiserver
from tests.kubetest.helpers import Kube


def _names(events: Iterable[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"].get("name", "")) for e in events]


def test_watch_without_version_lists_existing_objects_first(kube: Kube, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    kube.post(path, {"metadata": {"name": "old"}})
    events = list(kube.watch(f"{path}?watch=true", max_events=1))
    assert _names(events) == [("ADDED", "old")]
    assert events[0]["object"]["kind"] == "ConfigMap"


def test_watch_resumes_after_a_resource_version(kube: Kube, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    kube.post(path, {"metadata": {"name": "before"}})
    _, listed = kube.get(path)
    since = listed["metadata"]["resourceVersion"]
    kube.post(path, {"metadata": {"name": "after"}})
    kube.patch(f"{path}/before", {"data": {"x": "1"}})
    kube.delete(f"{path}/after")
    events = list(kube.watch(f"{path}?watch=1&resourceVersion={since}", max_events=3))
    assert _names(events) == [("ADDED", "after"), ("MODIFIED", "before"), ("DELETED", "after")]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions) and versions[0] > int(since)


def test_watch_streams_live_events_and_honours_timeout(kube: Kube, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    _, listed = kube.get(path)
    timer = threading.Timer(0.3, lambda: kube.post(path, {"metadata": {"name": "live"}}))
    timer.start()
    started = time.monotonic()
    events = list(kube.watch(
        f"{path}?watch=true&timeoutSeconds=1&resourceVersion="
        f"{listed['metadata']['resourceVersion']}"))
    elapsed = time.monotonic() - started
    assert _names(events) == [("ADDED", "live")]
    assert 0.9 <= elapsed < 3


def test_watch_bookmarks(kube: Kube, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    events = list(kube.watch(f"{path}?watch=true&allowWatchBookmarks=true&timeoutSeconds=1"))
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert len(bookmarks) >= 2
    assert bookmarks[0]["object"]["kind"] == "ConfigMap"
    assert int(bookmarks[-1]["object"]["metadata"]["resourceVersion"]) > 0
    kube.post(path, {"metadata": {"name": "b"}})
    assert _names(kube.watch(f"{path}?watch=true&timeoutSeconds=1")) == [("ADDED", "b")], \
        "no bookmarks unless asked for"


@pytest.mark.parametrize("value", ["True", "t", "yes"])
def test_boolean_parameters_are_read_as_the_real_server_reads_them(kube: Kube, namespace: str, value: str) -> None:
    """Any value but "0" or "false" (any case) is true (Convert_Slice_string_To_bool): ?watch=True is a watch."""
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    kube.post(path, {"metadata": {"name": "one"}})
    events = list(kube.watch(f"{path}?watch={value}&allowWatchBookmarks={value}&timeoutSeconds=1"))
    assert _names(events[:1]) == [("ADDED", "one")]
    assert "BOOKMARK" in {e["type"] for e in events}
    assert kube.get(f"{path}?watch=FALSE")[1]["kind"] == "ConfigMapList"


def test_watch_with_label_selector_sees_objects_enter_and_leave(kube: Kube,
                                                                namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    _, listed = kube.get(path)
    since = listed["metadata"]["resourceVersion"]
    kube.post(path, {"metadata": {"name": "m", "labels": {"app": "web"}}})
    kube.post(path, {"metadata": {"name": "n", "labels": {"app": "db"}}})
    kube.patch(f"{path}/n", {"metadata": {"labels": {"app": "web"}}})
    kube.patch(f"{path}/m", {"metadata": {"labels": {"app": "gone"}}})
    events = list(kube.watch(f"{path}?watch=true&labelSelector=app%3Dweb&resourceVersion={since}",
                             max_events=3))
    assert _names(events) == [("ADDED", "m"), ("ADDED", "n"), ("DELETED", "m")]
    kube.post(path, {"metadata": {"name": "z"}})
    events = list(kube.watch(f"{path}?watch=true&fieldSelector=metadata.name%3Dn"
                             f"&resourceVersion={since}", max_events=2))
    assert _names(events) == [("ADDED", "n"), ("MODIFIED", "n")]


def test_watch_of_all_namespaces_and_with_kubernetes_client(server: ApiServerProcess,
                                                           namespace: str) -> None:
    core = kubernetes.client.CoreV1Api(server.api_client())
    # a dict body works (the client's validate_call builds the model), though its types ask for the model
    core.create_namespaced_secret(namespace, {"metadata": {"name": "s1"}})  # type: ignore[arg-type]
    seen = []
    for event in kubernetes.watch.Watch().stream(
            core.list_secret_for_all_namespaces, timeout_seconds=1,
            field_selector=f"metadata.namespace={namespace}"):
        seen.append((event["type"], event["object"].metadata.name))
    assert seen == [("ADDED", "s1")]


def test_too_old_resource_version_is_gone(tmp_path: Path) -> None:
    with start_apiserver(tmp_path, simulate_pods=False,
                         extra_args=("--event-log-size", "5")) as small:
        kube = Kube(small.url)
        for index in range(8):
            kube.post("/api/v1/namespaces/default/configmaps", {"metadata": {"name": f"c{index}"}})
        events = list(kube.watch("/api/v1/namespaces/default/configmaps?watch=true"
                                 "&resourceVersion=1&timeoutSeconds=5"))
        assert len(events) == 1 and events[0]["type"] == "ERROR"
        status = events[0]["object"]
        assert status["kind"] == "Status" and status["code"] == 410
        assert status["reason"] == "Expired" and "too old resource version" in status["message"]
        _, listed = kube.get("/api/v1/namespaces/default/configmaps")
        recent = int(listed["metadata"]["resourceVersion"]) - 2
        events = list(kube.watch("/api/v1/namespaces/default/configmaps?watch=true"
                                 f"&resourceVersion={recent}", max_events=2))
        assert _names(events) == [("ADDED", "c6"), ("ADDED", "c7")]


def test_drop_watches_ends_open_streams(server: ApiServerProcess, kube: Kube,
                                        namespace: str) -> None:
    threading.Timer(0.3, server.drop_watches).start()
    started = time.monotonic()
    events = list(kube.watch(f"/api/v1/namespaces/{namespace}/configmaps?watch=true"
                             "&timeoutSeconds=10", timeout_s=10))
    assert events == [] and time.monotonic() - started < 5


def test_an_object_leaving_the_selector_is_deleted_as_it_was_selected(kube: Kube, namespace: str) -> None:
    """The real cacheWatcher sends the object's previous state (which matched) at the event's resourceVersion."""
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    _, created = kube.post(path, {"metadata": {"name": "tiered", "labels": {"tier": "gold"}}})
    _, moved = kube.patch(f"{path}/tiered", {"metadata": {"labels": {"tier": "silver"}}})
    events = list(kube.watch(f"{path}?watch=1&labelSelector=tier%3Dgold"
                             f"&resourceVersion={created['metadata']['resourceVersion']}", max_events=1))
    assert _names(events) == [("DELETED", "tiered")]
    gone = events[0]["object"]["metadata"]
    assert (gone["labels"], gone["resourceVersion"]) == ({"tier": "gold"}, moved["metadata"]["resourceVersion"])


def test_a_watch_from_a_resource_version_still_to_come_waits_for_it(kube: Kube, namespace: str) -> None:
    """As with the real watch cache: events up to the asked-for version are not sent, later ones are."""
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    since = int(kube.get(path)[1]["metadata"]["resourceVersion"]) + 2
    created: list[tuple[str, int]] = []

    def create() -> None:
        for name in ("c1", "c2", "c3"):
            created.append((name, int(kube.post(path, {"metadata": {"name": name}})[1]["metadata"][
                "resourceVersion"])))
    threading.Timer(0.3, create).start()
    events = list(kube.watch(f"{path}?watch=1&timeoutSeconds=2&resourceVersion={since}"))
    assert _names(events) == [("ADDED", name) for name, version in created if version > since], created
    assert created[-1][1] > since


@pytest.mark.parametrize("timeout", ["nan", "1.5", "abc", "1e3"])
def test_watch_timeout_seconds_must_be_an_integer(kube: Kube, namespace: str, timeout: str) -> None:
    status, body = kube.get(f"/api/v1/namespaces/{namespace}/configmaps?watch=1&timeoutSeconds={timeout}")
    assert (status, body["reason"]) == (400, "BadRequest"), body
    assert body["message"] == f'strconv.ParseInt: parsing "{timeout}": invalid syntax'


def test_a_negative_watch_timeout_ends_the_stream_at_once(kube: Kube, namespace: str) -> None:
    started = time.monotonic()
    assert list(kube.watch(f"/api/v1/namespaces/{namespace}/configmaps?watch=1&timeoutSeconds=-1")) == []
    assert time.monotonic() - started < 1


def test_watch_from_a_version_still_to_come_waits_for_it(kube: Kube, namespace: str) -> None:
    """As the real watch cache: no error and no bookmark older than the version asked for (a client would move
    back to it), and the events after that version once the store reaches it."""
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    since = int(kube.get(path)[1]["metadata"]["resourceVersion"]) + 2
    timer = threading.Timer(0.5, lambda: [kube.post(path, {"metadata": {"name": f"c{i}"}}) for i in range(3)])
    timer.start()
    events = list(kube.watch(f"{path}?watch=1&resourceVersion={since}&allowWatchBookmarks=true&timeoutSeconds=3"))
    timer.join()
    assert [e for e in events if int(e["object"]["metadata"]["resourceVersion"]) < since] == []
    assert ("ADDED", "c2") in _names(events) and "BOOKMARK" in {e["type"] for e in events}


def test_get_and_list_at_a_version_still_to_come(server: ApiServerProcess, kube: Kube, namespace: str) -> None:
    """A read "not older than" a resourceVersion the server has not reached waits for it (up to 3 s, as the real
    watch cache), then fails: 504 Timeout, cause ResourceVersionTooLarge, Retry-After 1."""
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    wanted = int(kube.get(path)[1]["metadata"]["resourceVersion"]) + 1
    timer = threading.Timer(0.3, lambda: kube.post(path, {"metadata": {"name": "soon"}}))
    timer.start()
    status, listed = kube.get(f"{path}?resourceVersion={wanted}")
    timer.join()
    assert status == 200 and [o["metadata"]["name"] for o in listed["items"]] == ["soon"]
    assert int(listed["metadata"]["resourceVersion"]) >= wanted
    assert kube.get(f"{path}/soon?resourceVersion={wanted}")[0] == 200
    core = kubernetes.client.CoreV1Api(server.api_client())
    with pytest.raises(kubernetes.client.ApiException) as raised:
        core.list_namespaced_config_map(namespace, resource_version=str(wanted + 1000))
    assert raised.value.status == 504 and (raised.value.headers or {}).get("Retry-After") == "1"
    body = json.loads(raised.value.body or "null")
    assert (body["reason"], body["details"]["retryAfterSeconds"]) == ("Timeout", 1)
    assert body["message"].startswith(f"Timeout: Too large resource version: {wanted + 1000}, current: ")
    assert body["details"]["causes"] == [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}]
