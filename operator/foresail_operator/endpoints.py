"""A deployment's ready inference pods, read from its Service's EndpointSlices, and which one gets a request.

The activator sends each request to the ready pod that has the fewest of its requests in flight
(KubeAI's LeastLoad): a Service picks a pod at random, blind to the long generations some already
run. With a routing key (the start of the request's first user message or prompt, or a ``Routing-Key``
header), it sends requests with the same key to the same pod, so that the pod's prefix cache holds
their common start, unless that pod already has more than a load factor (LOAD_FACTOR unless set) times
the mean load (KubeAI's PrefixHash, consistent hashing with bounded loads; here rendezvous hashing, which
moves only the keys of a pod that comes or goes). The pods are those the cluster's EndpointSlice controller
lists for the deployment's Service (label ``kubernetes.io/service-name``), with the port named as the
Service's (``http``). A pod that a connection to failed is passed over for EJECT_S (Envoy's outlier
ejection), unless every pod is: the EndpointSlice still lists a pod on a lost node for up to minutes.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from collections import Counter
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, Mapping

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
PORT_NAME = "http"  # the Service's port (plan.py)
PREFIX_CHARS = 100  # the routing key: this many characters of the first user message or prompt (KubeAI's default)
LOAD_FACTOR = 1.25  # a key's pod is passed over above this times the mean requests in flight (KubeAI's 125 %)
EJECT_S = 30.0  # a pod that a connection failed to is passed over this long (Envoy's base ejection time)
ROUTING_KEY_HEADER = "Routing-Key"
ROUTINGS = ("pods", "prefix", "service")  # least in flight, by routing key, or the Service (no pods read)


def routing_key(body: Mapping[str, Any], headers: Mapping[str, str]) -> str | None:
    """What keeps a request with others on one pod: the ``Routing-Key`` header, else the first PREFIX_CHARS
    characters of a chat's first user message (a system prompt shared by every conversation is left
    out, or all would pile on one pod) or of a completion's prompt; None when there is none."""
    if headers.get(ROUTING_KEY_HEADER):
        return headers[ROUTING_KEY_HEADER]
    text: Any = body.get("prompt")
    messages = body.get("messages")
    if isinstance(messages, list):
        text = next((m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "user"), None)
        if isinstance(text, list):  # content parts: their text, in order (a part's text that is no string: none)
            text = "".join(p["text"] for p in text if isinstance(p, dict) and isinstance(p.get("text"), str))
    if isinstance(text, list) and text and isinstance(text[0], str):  # a batch of prompts: the first
        text = text[0]
    return text[:PREFIX_CHARS] if isinstance(text, str) and text else None


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


def check_load_factor(flag: str, factor: float) -> None:
    """ValueError, naming ``flag``, unless ``factor`` is a finite load factor of at least 1 (the mean load)."""
    if not 1 <= factor < math.inf:
        raise ValueError(f"{flag} must be at least 1 (the mean load), not {factor:g}")


class LeastLoaded:
    """The requests this process has in flight per upstream URL, and the pick of the least loaded."""

    def __init__(self, load_factor: float = LOAD_FACTOR) -> None:
        """``load_factor``: how far above the mean load a key's pod may be and still get the key's requests."""
        check_load_factor("the prefix load factor", load_factor)
        self.load_factor = load_factor
        self.in_flight: Counter[str] = Counter()
        self.ejected: dict[str, float] = {}  # URL -> the monotonic time until which it is passed over

    def eject(self, url: str, seconds: float = EJECT_S) -> None:
        """Pass ``url`` over for ``seconds``: a connection to it failed."""
        now = time.monotonic()
        self.ejected = {u: until for u, until in self.ejected.items() if until > now}
        self.ejected[url] = now + seconds

    def pick(self, urls: Iterable[str], key: str | None = None) -> str | None:
        """The URL with the fewest requests in flight (at random among equals); with a ``key``, the URL
        that ranks first for it among those within the load factor times the mean load, this request
        counted; URLs passed over (``eject``) only if all are. None for no URL."""
        candidates = list(urls)
        if not candidates:
            return None
        now = time.monotonic()
        candidates = [u for u in candidates if self.ejected.get(u, 0.0) <= now] or candidates
        if key is not None:
            bound = math.ceil(self.load_factor * (sum(self.in_flight[u] for u in candidates) + 1) / len(candidates))
            ranked = sorted(candidates, key=lambda u: _rank(key, u), reverse=True)
            return next(u for u in ranked if self.in_flight[u] < bound)
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


def _rank(key: str, url: str) -> int:
    """Rendezvous (highest random weight) hashing: the URL's stable weight for a key."""
    return int.from_bytes(hashlib.blake2b(f"{key}\0{url}".encode(), digest_size=8).digest(), "big")
