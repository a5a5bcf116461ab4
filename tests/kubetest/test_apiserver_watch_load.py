"""Watches under concurrent writes: every event, in order, and a clean end of the stream.

Regression: a watch with ``allowWatchBookmarks`` stalled for good once a bookmark fell due while
events were queued (``asyncio.wait_for(queue.get(), 0)`` times out even with a queued event),
so the operator and any other watcher stopped seeing changes.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from foresail.kubetest.patch import JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH
from foresail.kubetest.testing import start_apiserver
from tests.kubetest.helpers import WIDGET_CRD, Kube, widget

_NS = "default"
_PATHS = {
    "configmaps": f"/api/v1/namespaces/{_NS}/configmaps",
    "deployments": f"/apis/apps/v1/namespaces/{_NS}/deployments",
    "widgets": f"/apis/kubetest.foresail.dev/v1alpha1/namespaces/{_NS}/widgets",
}
_OBJECTS_PER_KIND = 6
_READ_TIMEOUT_S = 10.0


def _deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [
                         {"name": "main", "image": "registry.example/model:1"}]}}}}


def _writes(kind: str, name: str) -> list[tuple[str, str, Any, str]]:
    """(method, path suffix, body, content type) for one object's life; each changes it."""
    if kind == "configmaps":
        return [("POST", "", {"metadata": {"name": name}, "data": {"a": "0"}}, ""),
                ("PATCH", f"/{name}", {"data": {"a": "1"}}, MERGE_PATCH),
                ("PATCH", f"/{name}", [{"op": "add", "path": "/data/b", "value": "2"}],
                 JSON_PATCH),
                ("PATCH", f"/{name}", {"data": {"c": "3"}}, STRATEGIC_PATCH),
                ("PUT", f"/{name}", {"metadata": {"name": name}, "data": {"d": "4"}}, ""),
                ("DELETE", f"/{name}", None, "")]
    if kind == "deployments":
        return [("POST", "", _deployment(name), ""),
                ("PATCH", f"/{name}", {"metadata": {"labels": {"x": "1"}}}, MERGE_PATCH),
                ("PATCH", f"/{name}", [{"op": "replace", "path": "/spec/replicas", "value": 2}],
                 JSON_PATCH),
                ("PATCH", f"/{name}/status", {"status": {"replicas": 2, "readyReplicas": 1}},
                 MERGE_PATCH),
                ("PATCH", f"/{name}/scale", {"spec": {"replicas": 3}}, MERGE_PATCH),
                ("PATCH", f"/{name}/status", [{"op": "add", "path": "/status/readyReplicas",
                                               "value": 3}], JSON_PATCH),
                ("DELETE", f"/{name}", None, "")]
    return [("POST", "", widget(name), ""),
            ("PATCH", f"/{name}", {"spec": {"replicas": 2}}, MERGE_PATCH),
            ("PATCH", f"/{name}/status", {"status": {"phase": "Up", "replicas": 2}}, MERGE_PATCH),
            ("PATCH", f"/{name}/scale", [{"op": "replace", "path": "/spec/replicas",
                                          "value": 3}], JSON_PATCH),
            ("PATCH", f"/{name}", [{"op": "add", "path": "/spec/tags", "value": ["t"]}],
             JSON_PATCH),
            ("DELETE", f"/{name}", None, "")]


def _write_all(kube: Kube, kind: str, name: str) -> list[tuple[str, str, int]]:
    """Run one object's writes; returns the event each should cause: (type, name, version)."""
    expected = []
    for method, suffix, body, content_type in _writes(kind, name):
        status, answer = kube.request(method, _PATHS[kind] + suffix, body,
                                      content_type or "application/json")
        assert status in (200, 201), (method, suffix, status, answer)
        kind_of_event = {"POST": "ADDED", "DELETE": "DELETED"}.get(method, "MODIFIED")
        expected.append((kind_of_event, name, int(answer["metadata"]["resourceVersion"])))
    return expected


class _Reader(threading.Thread):
    """Reads one watch stream to its end, keeping every event (or the error that ended it)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.connected = threading.Event()
        self.events: list[dict[str, Any]] = []
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            with urllib.request.urlopen(self.url, timeout=_READ_TIMEOUT_S) as response:
                self.connected.set()
                for line in response:  # an early end raises IncompleteRead
                    self.events.append(json.loads(line))
        except Exception as exc:  # reported by the test
            self.error = exc
        finally:
            self.connected.set()


def _summary(events: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return [(e["type"], e["object"]["metadata"]["name"],
             int(e["object"]["metadata"]["resourceVersion"]))
            for e in events if e["type"] != "BOOKMARK"]


def test_watches_deliver_every_event_in_order_under_concurrent_writes(tmp_path: Path) -> None:
    with start_apiserver(tmp_path, simulate_pods=False,
                         extra_args=("--bookmark-interval", "0.01")) as server:
        kube = Kube(server.url)
        status, body = kube.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                                 WIDGET_CRD)
        assert status == 201, body
        since = kube.get(_PATHS["configmaps"])[1]["metadata"]["resourceVersion"]
        readers = {(kind, bookmarks): _Reader(
            f"{server.url}{path}?watch=true&resourceVersion={since}"
            + ("&allowWatchBookmarks=true" if bookmarks else ""))
            for kind, path in _PATHS.items() for bookmarks in (False, True)}
        for reader in readers.values():
            reader.start()
        for reader in readers.values():
            assert reader.connected.wait(_READ_TIMEOUT_S)
            assert reader.error is None, reader.error

        jobs = [(kind, f"{kind[0]}{i}") for i in range(_OBJECTS_PER_KIND) for kind in _PATHS]
        with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
            results = list(pool.map(lambda job: _write_all(kube, *job), jobs))
        expected = {kind: sorted((e for (k, _), events in zip(jobs, results, strict=True) if k == kind
                                  for e in events), key=lambda e: e[2]) for kind in _PATHS}

        assert server.drop_watches() >= len(readers), "a watch ended before it was dropped"
        for reader in readers.values():
            reader.join(_READ_TIMEOUT_S + 5)
        for (kind, bookmarks), reader in readers.items():
            where = f"{kind} watch (bookmarks: {bookmarks})"
            assert reader.error is None, f"{where} ended early: {reader.error!r}"
            live = _summary(reader.events)
            assert live == expected[kind], f"{where}: {len(live)} of {len(expected[kind])} events"
            _check_bookmarks(reader.events, bookmarks, where)


def _check_bookmarks(events: list[dict[str, Any]], wanted: bool, where: str) -> None:
    """Bookmarks only when asked for, and none claims a version an undelivered event has."""
    marks = [i for i, e in enumerate(events) if e["type"] == "BOOKMARK"]
    assert bool(marks) == wanted, f"{where}: {len(marks)} bookmarks"
    for i in marks:
        mark = int(events[i]["object"]["metadata"]["resourceVersion"])
        later = [int(e["object"]["metadata"]["resourceVersion"]) for e in events[i + 1:]
                 if e["type"] != "BOOKMARK"]
        assert all(rv > mark for rv in later), f"{where}: bookmark {mark} before older events"
