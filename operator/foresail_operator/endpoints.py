"""A deployment's ready inference pods, read from its Service's EndpointSlices, and the least-loaded pick.

The activator sends each request to the ready pod that has the fewest of its requests in flight
(KubeAI's LeastLoad): a Service picks a pod at random, blind to the long generations some already
run. The pods are those the cluster's EndpointSlice controller lists for the deployment's Service
(label ``kubernetes.io/service-name``), with the port named as the Service's (``http``).
"""

from __future__ import annotations

import random
from collections import Counter
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Mapping

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
PORT_NAME = "http"  # the Service's port (plan.py)


def ready_urls(slices: Iterable[Mapping[str, Any]]) -> list[str]:
    """``http://address:port`` of every ready endpoint in these EndpointSlices, sorted.

    As the API documents: an endpoint whose ``conditions.ready`` is unset counts as ready, and of
    its addresses (fungible) the first is used. The port is the one named PORT_NAME, else the
    slice's only port; a slice with neither is skipped."""
    urls: set[str] = set()
    for piece in slices:
        ports = piece.get("ports") or []
        port = next((p.get("port") for p in ports if p.get("name") == PORT_NAME), None)
        if port is None and len(ports) == 1:
            port = ports[0].get("port")
        if port is None:
            continue
        for endpoint in piece.get("endpoints") or []:
            addresses = endpoint.get("addresses") or []
            if not addresses or (endpoint.get("conditions") or {}).get("ready") is False:
                continue
            host = f"[{addresses[0]}]" if ":" in addresses[0] else addresses[0]
            urls.add(f"http://{host}:{port}")
    return sorted(urls)


class LeastLoaded:
    """The requests this process has in flight per upstream URL, and the pick of the least loaded."""

    def __init__(self) -> None:
        self.in_flight: Counter[str] = Counter()

    def pick(self, urls: Iterable[str]) -> str | None:
        """The URL with the fewest requests in flight (at random among equals); None for no URL."""
        candidates = list(urls)
        if not candidates:
            return None
        fewest = min(self.in_flight[u] for u in candidates)
        return random.choice([u for u in candidates if self.in_flight[u] == fewest])

    @contextmanager
    def sending(self, url: str) -> Iterator[None]:
        """Count one request in flight to ``url`` for the duration of the block."""
        self.in_flight[url] += 1
        try:
            yield
        finally:
            self.in_flight[url] -= 1
            if self.in_flight[url] <= 0:
                del self.in_flight[url]
