"""Helpers of the API test server's tests: plain HTTP calls, polling, a test CRD."""

from __future__ import annotations

import itertools
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.kubetest.foresail.dev"},
    "spec": {
        "group": "kubetest.foresail.dev",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                  "shortNames": ["wd"]},
        "versions": [{
            "name": "v1alpha1", "served": True, "storage": True,
            "subresources": {"status": {}, "scale": {
                "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
                "labelSelectorPath": ".status.selector"}},
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object",
                        "required": ["model"],
                        "x-kubernetes-validations": [
                            {"rule": "self.minReplicas <= self.maxReplicas",
                             "message": "must be less than or equal to maxReplicas",
                             "fieldPath": ".minReplicas"},
                            {"rule": "self.model == oldSelf.model",
                             "message": "model is immutable"},
                        ],
                        "properties": {
                            "model": {"type": "string", "pattern": "^[a-z0-9-]+$",
                                      "maxLength": 20},
                            "replicas": {"type": "integer", "minimum": 0, "default": 1},
                            "minReplicas": {"type": "integer", "minimum": 0, "default": 1},
                            "maxReplicas": {"type": "integer", "maximum": 8, "default": 4},
                            "mode": {"type": "string", "enum": ["fast", "cheap"],
                                     "default": "fast"},
                            "port": {"x-kubernetes-int-or-string": True},
                            "tags": {"type": "array", "maxItems": 2,
                                     "items": {"type": "string"}},
                            "extra": {"type": "object",
                                      "x-kubernetes-preserve-unknown-fields": True},
                            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        },
                    },
                    "status": {
                        "type": "object",
                        "properties": {
                            "replicas": {"type": "integer", "minimum": 0},
                            "selector": {"type": "string"},
                            "phase": {"type": "string"},
                        },
                    },
                },
            }},
        }],
    },
}


class Kube:
    """Plain HTTP calls to the server: (status code, decoded JSON body)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def request(self, method: str, path: str, body: Any = None,
                content_type: str = "application/json") -> tuple[int, Any]:
        """One request; errors are returned, not raised."""
        data = None if body is None else (
            body if isinstance(body, bytes) else json.dumps(body).encode())
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> tuple[int, Any]:
        return self.request("POST", path, body)

    def put(self, path: str, body: Any) -> tuple[int, Any]:
        return self.request("PUT", path, body)

    def patch(self, path: str, body: Any,
              content_type: str = "application/merge-patch+json") -> tuple[int, Any]:
        return self.request("PATCH", path, body, content_type)

    def delete(self, path: str, body: Any = None) -> tuple[int, Any]:
        return self.request("DELETE", path, body)

    def watch(self, path: str, max_events: int = 100, timeout_s: float = 5.0
              ) -> Iterator[dict[str, Any]]:
        """Watch events of ``path`` (which carries ``?watch=true&...``) as they arrive."""
        with urllib.request.urlopen(self.url + path, timeout=timeout_s) as response:
            assert response.headers["Content-Type"].startswith("application/json")
            for line in itertools.islice(response, max_events):
                yield json.loads(line)


T = TypeVar("T")


def filled(value: T | None) -> T:
    """A field the server fills, read from a kubernetes client model (they type every field Optional)."""
    assert value is not None
    return value


def wait_for(predicate: Callable[[], Any], timeout_s: float = 5.0, interval_s: float = 0.05
             ) -> Any:
    """Poll until ``predicate()`` is truthy; returns its value or fails the test."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout_s} s (last value: {value!r})")
        time.sleep(interval_s)


def widget(name: str, **spec: Any) -> dict[str, Any]:
    """A Widget object."""
    return {"apiVersion": "kubetest.foresail.dev/v1alpha1", "kind": "Widget",
            "metadata": {"name": name}, "spec": {"model": "tiny", **spec}}


