"""The activator: an OpenAI-compatible front door that holds requests while a deployment is at zero.

Clients send their /v1/* requests here instead of to a deployment's Service. Each request is routed
by its JSON ``model`` field to the LLMDeployment serving that model (``spec.model.servedModelName``,
else its name) and forwarded to the ready pod of that deployment with the fewest of the activator's
requests in flight (endpoints.py: its Service's EndpointSlices; the Service itself where they cannot be
read or list no ready pod), the answer streamed back as it comes. The LLMDeployments and the
EndpointSlices of every Foresail Service are watched (informer.py), not read per request.
Only paths under /v1/ are forwarded (as the client wrote them, never decoded or resolved: a path whose
``..`` segments resolve outside /v1/ gets a 404), over as many connections as the pods take.
While the deployment has no ready replica the request is held (and again should its last replica go as
it is sent): the activator stamps the annotation
``activator.foresail.dev/requested-at`` on the LLMDeployment, with the number of requests held
(again every ``STAMP_EVERY_S`` while requests wait), the operator scales a deployment at zero to one
replica at once and counts the held requests as queued demand, and the request goes through as soon as
a watch shows a ready replica (in the status, or a ready pod in the Service's EndpointSlices, should the
operator be late to write it), or gets a 503 with Retry-After after the hold timeout. A pod that sends no
response headers within the response timeout of the request gets its connection closed, and the client a 504;
an idle connection to a pod is kept ``KEEPALIVE_S``, less than uvicorn's 5 s (vLLM's, SGLang's), and a request
whose kept connection the pod closes before answering is sent again once, on a new connection. A held request keeps
its raw body alone (not the parsed JSON), and the bodies held, all deployments together, are bounded in
bytes (``max_held_bytes``): past it, a 503 with Retry-After (a 413 for a body larger than the whole bound,
which could never be held). It counts the
requests that arrive for each deployment (``foresail_activator_arrivals_total``, from 0 for every
deployment it knows of), which the operator reads from Prometheus as demand while no pod reports any, and
drops a deleted deployment's series once its last request is answered.
The part of Knative's activator and KubeAI's proxy that scale-to-zero needs, and KubeAI's load
balancing: least requests in flight, or (``routing="prefix"``) by prefix with a bound on load.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import posixpath
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any, Callable, Collection, Mapping

import aiohttp
import prometheus_client
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from foresail_operator import GROUP, PLURAL, VERSION
from foresail_operator.activation import ARRIVALS_METRIC, HELD_METRIC, HELD_REQUESTS, REQUESTED_AT, STAMP_EVERY_S
from foresail_operator.endpoints import (
    EJECT_S,
    LOAD_FACTOR,
    ROUTINGS,
    SERVICE_NAME_LABEL,
    LeastLoaded,
    ready_urls,
    routing_key,
)
from foresail_operator.informer import Informer, Key, key_of
from foresail_operator.kube import ApiError, KubeClient, path_for

# A pod's answers that say it did no work: full (429), or told to stop and draining (503) while its
# EndpointSlice still lists it. The request goes on to another pod.
REFUSED_BEFORE_WORK = (429, 503)
RETRY_S = 0.5  # how often a Service that refuses connections is tried again while a request may wait
# how long an idle connection to a pod is kept: less than uvicorn's keep-alive timeout (5 s; vLLM's and SGLang's
# servers), so that the pod never closes one as the activator sends a request on it
KEEPALIVE_S = 4.0
# The EndpointSlice controller copies a Service's labels onto its slices: this one selects Foresail's.
FORESAIL_SLICES = "app.kubernetes.io/managed-by=foresail"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
              "transfer-encoding", "upgrade", "content-length", "host"}
# headers aiohttp's client adds to a request that has none: one the client did not send does not go on (a FastAPI
# server, vLLM's or SGLang's, reads a body without Content-Type as JSON, and one of application/octet-stream as bytes)
AUTO_HEADERS = ("Accept", "Accept-Encoding", "Content-Type", "User-Agent")
MAX_BODY_MIB = 64  # a larger request body gets a 413 (parsed, one of small numbers takes 4 to 5 times its size)
MAX_HELD_MIB = 256  # the request bodies held at once, all deployments together, before new ones get a 503
# of the request's JSON, only these fields are kept as it is parsed: the model, and what the routing key reads
MODEL_FIELD = frozenset({"model"})
ROUTING_FIELDS = MODEL_FIELD | {"prompt", "messages", "role", "content", "text"}

REQUESTS = prometheus_client.Counter(
    "foresail_activator_requests_total", "Requests by outcome: forwarded, held (then forwarded), timeout (held "
    "past the hold timeout, or no response headers within the response timeout), unknown_model, bad_request, "
    "overloaded, api_error, unreachable, upstream_error (failed before answering, or broke off mid-answer), "
    "client_gone (the client closed its connection before its answer was complete)",
    ["namespace", "llmdeployment", "outcome"])
ARRIVALS = prometheus_client.Counter(
    ARRIVALS_METRIC, "Requests for each LLMDeployment as they arrive, whatever their outcome; 0 from the first "
    "listing that shows the deployment, so a quiet one reads 0, not missing (the operator's demand while no pod "
    "reports any)", ["namespace", "llmdeployment"])
HELD = prometheus_client.Gauge(HELD_METRIC, "Requests waiting for a ready replica",
                               ["namespace", "llmdeployment"])
HOLD_SECONDS = prometheus_client.Histogram(
    "foresail_activator_hold_seconds", "How long held requests waited for a ready replica",
    buckets=(1, 5, 15, 30, 60, 120, 180, 300, 450, 600, 900))

log = logging.getLogger("foresail.activator")


def served_name(body: Mapping[str, Any]) -> str:
    """The model name an LLMDeployment's pods answer to."""
    model = (body.get("spec") or {}).get("model") or {}
    return str(model.get("servedModelName") or body["metadata"]["name"])


def ready_replicas(body: Mapping[str, Any]) -> int:
    """Ready replicas as the operator last wrote them in status."""
    return int((body.get("status") or {}).get("readyReplicas") or 0)


class Refusal(Exception):
    """A request the activator answers itself, with an OpenAI-style error and the outcome it counts as."""

    def __init__(self, status: int, outcome: str, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.status, self.outcome, self.message, self.retry_after_s = status, outcome, message, retry_after_s

    def response(self) -> web.Response:
        headers = {"Retry-After": str(round(self.retry_after_s))} if self.retry_after_s else None
        kind = "invalid_request_error" if self.status < 500 else "service_unavailable"
        return web.json_response({"error": {"message": self.message, "type": kind, "code": self.status}},
                                 status=self.status, headers=headers)


@dataclass
class _Hold:
    """The requests held for one deployment and the task that wakes it."""

    waiters: int = 0
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # set when a replica is ready or `gone` is
    task: asyncio.Task | None = None
    gone: bool = False  # the LLMDeployment was deleted meanwhile
    changed: asyncio.Event = field(default_factory=asyncio.Event)  # the watch saw the LLMDeployment change


@dataclass
class _Sending:
    """One sending of a request to a pod, as aiohttp's trace signals report it: whether it went on a connection kept
    from an earlier request; ``timer``, the response timeout's, is set once the request's headers are sent."""

    response_timeout_s: float
    timer: asyncio.Timeout | None = None
    reused: bool = False


async def _on_reused(_: aiohttp.ClientSession, trace: SimpleNamespace, __: object) -> None:
    trace.trace_request_ctx.reused = True


async def _on_headers_sent(_: aiohttp.ClientSession, trace: SimpleNamespace, __: object) -> None:
    sending: _Sending = trace.trace_request_ctx
    if sending.response_timeout_s and sending.timer is not None:
        sending.timer.reschedule(asyncio.get_running_loop().time() + sending.response_timeout_s)


def _pods_session(**connector: Any) -> aiohttp.ClientSession:
    """A session for the pods' connections (``connector``: TCPConnector's options), whose requests report _Sending.
    No cap on the connections (aiohttp's default: 100 for every pod together, and a request past them waits unseen,
    counted in no queue): each pod's own queue decides, which the operator reads. No cookie jar: a cookie a pod sets
    is the client's, and aiohttp's would send it with every other client's requests."""
    trace = aiohttp.TraceConfig()
    trace.on_connection_reuseconn.append(_on_reused)
    trace.on_request_headers_sent.append(_on_headers_sent)
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, **connector), auto_decompress=False,
                                 timeout=aiohttp.ClientTimeout(total=None, sock_connect=10), trace_configs=[trace],
                                 cookie_jar=aiohttp.DummyCookieJar())


class Activator:
    """Routes, holds and forwards requests; see the module docstring."""

    def __init__(self, client: KubeClient, upstream: Callable[[str, str], str], namespaces: tuple[str, ...] = (),
                 hold_timeout_s: float = 600.0, max_held: int = 1000, routing: str = "pods",
                 prefix_load_factor: float = LOAD_FACTOR, max_held_bytes: int = MAX_HELD_MIB * 2 ** 20,
                 max_body_bytes: int = MAX_BODY_MIB * 2 ** 20, response_timeout_s: float = 600.0) -> None:
        """``upstream(namespace, name)``: the base URL of a deployment's Service; ``routing``: ``pods``
        (the least loaded ready pod), ``prefix`` (the pod for the request's routing key, unless it has more
        than ``prefix_load_factor`` times the mean load) or ``service`` (always the Service); ``max_held``:
        requests held per deployment, ``max_held_bytes``: their bodies' bytes, all deployments together;
        ``max_body_bytes``: a request's body, past which it gets a 413; ``response_timeout_s``: how long a pod may
        take to send its response headers once the request's are sent (0: no limit), past which the client gets a
        504."""
        if routing not in ROUTINGS:
            raise ValueError(f"routing must be one of {', '.join(ROUTINGS)}, not {routing!r}")
        self.client, self.namespaces, self.upstream = client, namespaces, upstream
        self.hold_timeout_s, self.max_held, self.max_held_bytes = hold_timeout_s, max_held, max_held_bytes
        self.max_body_bytes, self.response_timeout_s = max_body_bytes, response_timeout_s
        self._held_bytes = 0
        self.to_pods, self.by_prefix = routing != "service", routing == "prefix"
        self._deployments = Informer(client, f"{GROUP}/{VERSION}", PLURAL, namespaces, on_change=self._deployment_event)
        self._slices = Informer(client, "discovery.k8s.io/v1", "endpointslices", namespaces, FORESAIL_SLICES,
                                on_change=self._slice_event)
        self._pods: dict[Key, list[str]] = {}  # ready pod URLs by (namespace, Service)
        self._load = LeastLoaded(prefix_load_factor)
        self._holds: dict[Key, _Hold] = {}
        self._active: Counter[Key] = Counter()  # requests being answered, by deployment
        self._watches: list[asyncio.Task] = []
        # to the pods: one keeping idle connections KEEPALIVE_S, one opening a new connection for each request
        self._sessions: tuple[aiohttp.ClientSession, aiohttp.ClientSession] | None = None

    def app(self) -> web.Application:
        """The aiohttp application: /v1/models, /v1/models/{model}, /healthz, /metrics, and /v1/* (routed;
        any other path gets a 404)."""
        app = web.Application(client_max_size=self.max_body_bytes)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/v1/models/{model:.+}", self._model)
        app.router.add_route("*", "/{tail:.*}", self._route)
        app.on_startup.append(self._start)
        app.on_cleanup.append(self._close)
        return app

    async def _start(self, _: web.Application) -> None:
        informers = [self._deployments, self._slices] if self.to_pods else [self._deployments]
        self._watches = [asyncio.create_task(informer.run()) for informer in informers]

    # ---- what the watches show -------------------------------------------------------------
    def _deployment_event(self, kind: str, body: dict[str, Any]) -> None:
        """Export a deployment's arrivals from 0 while it exists (its series go with it, once no request for it
        is being answered), and wake what is held for it."""
        key = key_of(body)
        if kind == "DELETED":
            if key not in self._active:
                _forget(key)
        else:
            ARRIVALS.labels(*key)  # exported from 0 (a no-op once it exists)
        if key in self._holds:
            self._holds[key].changed.set()

    def _slice_event(self, kind: str, piece: dict[str, Any]) -> None:
        """Recompute the ready pods of the Service whose EndpointSlice was added, changed or deleted."""
        ns, service = key_of(piece)[0], _service_of(piece)
        if service:
            urls = ready_urls([s for s in self._slices.objects.values()
                               if key_of(s)[0] == ns and _service_of(s) == service])
            if urls:
                self._pods[(ns, service)] = urls
            else:
                self._pods.pop((ns, service), None)
            if (ns, service) in self._holds:  # a pod ready before the status says so wakes what is held
                self._holds[(ns, service)].changed.set()

    def _pods_of(self, key: Key) -> list[str]:
        """The ready pods of the deployment's Service as the watch shows them; [] with ``to_pods`` off or
        while the EndpointSlices of its namespace cannot be read (other namespaces' keep their pods)."""
        return [] if not self.to_pods or self._slices.error_in(key[0]) else self._pods.get(key, [])

    def _at_zero(self, key: Key) -> bool:
        """Whether the watch shows the deployment gone, or with no ready replica in its status and no ready pod
        in its Service's EndpointSlices."""
        body = self._deployments.objects.get(key)
        return (body is None or ready_replicas(body) == 0) and not self._pods_of(key)

    async def _listed(self) -> list[dict[str, Any]]:
        """The LLMDeployments in the watched namespaces, as the watch last showed them (while the API server
        cannot be read, the last it showed: fail-static); ApiError when they were never listed."""
        await self._deployments.synced()
        return list(self._deployments.objects.values())

    # ---- routing ------------------------------------------------------------------------
    async def _find(self, model: str) -> dict[str, Any]:
        """The one LLMDeployment serving ``model``; Refusal when none or several do."""
        items = await self._listed()
        matches = [d for d in items if served_name(d) == model]
        if not matches:
            known = sorted({served_name(d) for d in items})
            raise Refusal(404, "unknown_model", f"no LLMDeployment serves model {model!r}; served models: "
                               f"{', '.join(known) or 'none'}")
        if len(matches) > 1:
            where = ", ".join(f"{d['metadata']['namespace']}/{d['metadata']['name']}" for d in matches)
            raise Refusal(400, "bad_request", f"model {model!r} is served by several LLMDeployments ({where}); "
                               "give each a distinct spec.model.servedModelName")
        return matches[0]

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _models(self, _: web.Request) -> web.Response:
        try:
            items = await self._listed()
        except ApiError as exc:
            return Refusal(503, "api_error", f"cannot list LLMDeployments: {exc.message}", 5).response()
        return web.json_response({"object": "list", "data": [_card(d) for d in items]})

    async def _model(self, request: web.Request) -> web.Response:
        """One model's card as /v1/models lists it (the OpenAI SDK's ``models.retrieve``)."""
        model = request.match_info["model"]
        try:
            return web.json_response(_card(await self._find(model)))
        except ApiError as exc:
            return Refusal(503, "api_error", f"cannot look up model {model!r}: {exc.message}", 5).response()
        except Refusal as refusal:
            return refusal.response()

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=prometheus_client.generate_latest(),
                            headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST})

    async def _route(self, request: web.Request) -> web.StreamResponse:
        labels = ("", "")
        try:
            if not posixpath.normpath(request.path).startswith("/v1/"):  # decoded, its ".." resolved
                raise Refusal(404, "bad_request", f"the activator serves /v1/* only, not {request.path!r}")
            body, model, affinity = await _read(request, self.by_prefix)
            try:
                target = await self._find(model)
            except ApiError as exc:
                raise Refusal(503, "api_error", f"cannot look up model {model!r}: {exc.message}", 5) from exc
            labels = key_of(target)
            self._active[labels] += 1
            ARRIVALS.labels(*labels).inc()
            response, outcome = await self._send(request, body, labels, affinity)
            REQUESTS.labels(*labels, outcome).inc()
            return response
        except Refusal as refusal:
            REQUESTS.labels(*labels, refusal.outcome).inc()
            return refusal.response()
        except asyncio.CancelledError:  # the client closed its connection (handler_cancellation, activator_cli.py)
            REQUESTS.labels(*labels, "client_gone").inc()
            raise
        finally:
            self._done(labels)

    async def _send(self, request: web.Request, body: bytes, key: Key,
                    affinity: str | None) -> tuple[web.StreamResponse, str]:
        """Forward the request, held first while the deployment has no ready replica, and held again should its
        last replica go as it is sent (nothing answers, and then the watch shows none ready); the answer and its
        outcome, ``held`` for a request held, then forwarded. Its holds together last the hold timeout at most."""
        held = self._at_zero(key)
        deadline: float | None = None
        while True:
            if held:
                if deadline is None:
                    deadline = time.monotonic() + self.hold_timeout_s
                elif time.monotonic() >= deadline:
                    raise Refusal(503, "timeout", self._timeout_message(key), 30)
                await self._hold(key, len(body), max(deadline - time.monotonic(), 0.0))
            try:
                # once held, the Service's endpoints may trail the status by a moment
                response, outcome = await self._forward(request, body, key, retry_s=10.0 if held else 0.0,
                                                        affinity=affinity)
            except Refusal as refusal:
                if refusal.outcome != "unreachable" or (held and not self._at_zero(key)):
                    raise
                held = True  # its replicas may have just gone: held, the watch shows it in a moment
                continue
            return response, "held" if held and outcome == "forwarded" else outcome

    def _done(self, key: Key) -> None:
        """A request for ``key`` is answered: the deployment's series go if it was deleted meanwhile."""
        if key in self._active:
            self._active[key] -= 1
            if not self._active[key]:
                del self._active[key]
                if key not in self._deployments.objects:
                    _forget(key)

    # ---- holding ------------------------------------------------------------------------
    async def _hold(self, key: Key, size: int, timeout_s: float) -> None:
        """Wait until the deployment has a ready replica, waking it, with a body of ``size`` bytes; Refusal after
        ``timeout_s``, or at once past ``max_held`` requests for it or ``max_held_bytes`` for all (a 413 for a body
        larger than ``max_held_bytes`` alone: it can never be held)."""
        if size > self.max_held_bytes:
            raise Refusal(413, "bad_request", f"the request body ({size / 2 ** 20:.1f} MiB) is larger than the "
                                              f"{self.max_held_bytes / 2 ** 20:g} MiB the activator may hold while "
                                              f"{key[0]}/{key[1]} has no ready replica")
        if self._held_bytes + size > self.max_held_bytes:
            raise Refusal(503, "overloaded", "with this request, the requests waiting for replicas would take "
                               f"{(self._held_bytes + size) / 2 ** 20:.1f} MiB, past the "
                               f"{self.max_held_bytes / 2 ** 20:.0f} MiB the activator may hold; try again later", 30)
        hold = self._holds.setdefault(key, _Hold())
        if hold.waiters >= self.max_held:
            raise Refusal(503, "overloaded", f"{self.max_held} requests are already waiting for {key[0]}/{key[1]} to "
                               "start a replica; try again later", 30)
        hold.waiters += 1
        self._held_bytes += size
        HELD.labels(*key).inc()
        if hold.task is None:
            hold.task = asyncio.create_task(self._wake(key, hold))
        started = time.monotonic()
        try:
            await asyncio.wait_for(hold.ready.wait(), timeout_s)
            if hold.gone:
                raise Refusal(404, "unknown_model", f"{key[0]}/{key[1]} was deleted while the request waited")
        except asyncio.TimeoutError:
            raise Refusal(503, "timeout", self._timeout_message(key), 30) from None
        finally:
            hold.waiters -= 1
            self._held_bytes -= size
            HELD.labels(*key).dec()
            HOLD_SECONDS.observe(time.monotonic() - started)

    async def _wake(self, key: Key, hold: _Hold) -> None:
        """While anyone waits: stamp the deployment (``_stamp``, beside this, so that a slow or throttled PATCH
        does not keep the requests from a ready replica) until the watch shows a ready replica, in its status
        or (routing to pods) in its Service's EndpointSlices, whichever comes first."""
        stamping = asyncio.create_task(self._stamp(key, hold))
        try:
            while hold.waiters > 0:
                body = self._deployments.objects.get(key)
                if body is None or ready_replicas(body) > 0 or self._pods_of(key):
                    hold.gone = body is None
                    hold.ready.set()
                    return
                hold.changed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(hold.changed.wait(), STAMP_EVERY_S)
        finally:
            stamping.cancel()
            if self._holds.get(key) is hold:
                del self._holds[key]

    async def _stamp(self, key: Key, hold: _Hold) -> None:
        """Stamp the deployment with the number of requests held, again every STAMP_EVERY_S (every RETRY_S
        while it fails), until cancelled; never with none held."""
        ns, name = key
        path = path_for(f"{GROUP}/{VERSION}", PLURAL, ns, name)
        stamped = failing = False
        while True:
            if hold.waiters > 0:
                try:
                    stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
                    await self.client.merge_patch(path, {"metadata": {"annotations": {
                        REQUESTED_AT: stamp, HELD_REQUESTS: str(hold.waiters)}}})
                    if not stamped:
                        log.info("%s/%s has no ready replica: holding requests and asking for one", ns, name)
                    stamped, failing = True, False
                except ApiError as exc:
                    if not failing:  # once per spell, not at every try
                        log.warning("%s/%s: cannot stamp the LLMDeployment: %s", ns, name, exc)
                    failing = True
            await asyncio.sleep(RETRY_S if failing else STAMP_EVERY_S)

    def _timeout_message(self, key: Key) -> str:
        """Why a held request gave up, with the deployment's Ready condition as the watch last showed it."""
        text = f"{key[0]}/{key[1]} has no ready replica after {self.hold_timeout_s:.0f} s"
        body = self._deployments.objects.get(key) or {}
        conditions: list[dict[str, Any]] = (body.get("status") or {}).get("conditions") or []
        message = next((c.get("message") for c in conditions if c.get("type") == "Ready"), None)
        return f"{text} (Ready: {message})" if message else text

    # ---- forwarding ---------------------------------------------------------------------
    async def _ready_pods(self, key: Key) -> list[str]:
        """The URLs of the deployment's ready pods from its Service's EndpointSlices, as the watch shows
        them; [] (the Service) while those of its namespace cannot be read or with ``to_pods`` off."""
        if not self.to_pods:
            return []
        try:
            await self._slices.synced(key[0])
        except ApiError:
            return []
        return self._pods_of(key)

    async def _forward(self, request: web.Request, body: bytes, key: Key, retry_s: float = 0.0,
                       affinity: str | None = None) -> tuple[web.StreamResponse, str]:
        """Send the request to the deployment's least-loaded ready pod (else its Service) and stream the
        answer back; the answer and its outcome (``_relay``). A connection refused or timed out (nothing
        was sent) goes on to the next pod (the pod is passed over for EJECT_S), then the Service, and is
        retried for ``retry_s``; a pod's 429 or 503 (full, or draining: it refused the request before any
        work) goes on to the next pod, the last one's refusal being the answer; ``unreachable`` at once once
        the watch shows no ready replica. A kept connection that fails before the answer's headers (the pod closed
        it as the request was sent) is tried again once, on a new connection; no response headers within the
        response timeout: a 504 (``timeout``). ``affinity``: the routing key, if any. The path and query go on as
        the client wrote them (percent-encoded, ``..`` unresolved)."""
        if self._sessions is None:
            self._sessions = _pods_session(keepalive_timeout=KEEPALIVE_S), _pods_session(force_close=True)
        # aiohttp has decoded the body: it goes on without its Content-Encoding; and it has answered the client's
        # Expect: 100-continue, a pod that ignores it (HTTP/1.0) would leave aiohttp waiting for a 100 that never comes
        headers = _end_to_end(request.headers, drop={"content-encoding", "expect"})
        unsent = [name for name in AUTO_HEADERS if name not in headers]
        service = self.upstream(*key)
        deadline = time.monotonic() + retry_s
        refused: set[str] = set()
        fresh = False
        while True:
            base = self._load.pick((u for u in await self._ready_pods(key) if u not in refused), affinity) or service
            url = URL(base.rstrip("/") + request.rel_url.raw_path_qs, encoded=True)
            sending = _Sending(self.response_timeout_s)
            with self._load.sending(base):
                try:
                    async with asyncio.timeout(None) as sending.timer:  # set once the headers are sent
                        upstream = await self._sessions[fresh].request(  # a redirect is the client's to follow
                            request.method, url, data=body, headers=headers, trace_request_ctx=sending,
                            allow_redirects=False, skip_auto_headers=unsent)
                except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:  # nothing was sent
                    refused.add(base)
                    if base != service:
                        log.warning("%s/%s: cannot connect to %s (%s); passing it over for %.0f s", key[0], key[1],
                                    base, exc, EJECT_S)
                        self._load.eject(base)
                        continue
                    if time.monotonic() >= deadline or self._at_zero(key):
                        raise Refusal(502, "unreachable", f"cannot reach {key[0]}/{key[1]} at {url}: {exc}",
                                      5) from exc
                    refused.clear()
                    await asyncio.sleep(RETRY_S)
                    continue
                except aiohttp.ClientError as exc:  # sent, maybe: not retried, but on a kept connection the pod closed
                    if sending.reused and isinstance(exc, aiohttp.ClientConnectionError):
                        fresh = True  # closed as the request went on it (keep-alive): once more, on a new connection
                        continue
                    raise Refusal(502, "upstream_error", f"{key[0]}/{key[1]} at {url} failed before answering: "
                                                         f"{exc}", 5) from exc
                except TimeoutError:  # the response timeout's (aiohttp's own are ClientErrors): the connection closed
                    raise Refusal(504, "timeout", f"{key[0]}/{key[1]} at {url} sent no response within "
                                                  f"{self.response_timeout_s:g} s") from None
                async with upstream:
                    if upstream.status in REFUSED_BEFORE_WORK and base != service:
                        refused.add(base)
                        if any(u not in refused for u in self._pods_of(key)):
                            continue  # another pod may have room
                    return await self._relay(request, upstream, key)

    async def _relay(self, request: web.Request, upstream: aiohttp.ClientResponse,
                     key: Key) -> tuple[web.StreamResponse, str]:
        """Stream an upstream answer back as it comes; the response and its outcome: ``forwarded``,
        ``client_gone`` or ``upstream_error`` (the pod broke off: the client's connection is closed without
        the body's end, so that the client sees the answer cut short, not complete). The pod's Content-Length goes
        on (its body goes on as sent, undecoded): without it, a client over HTTP/1.0 (nginx's default to an
        upstream) reads an answer until the connection closes, and would take one cut short for the whole."""
        headers = _end_to_end(upstream.headers)
        if upstream.content_length is not None and "Transfer-Encoding" not in upstream.headers:
            headers["Content-Length"] = str(upstream.content_length)
        response = web.StreamResponse(status=upstream.status, headers=headers)
        try:
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
        except aiohttp.ClientError as exc:
            if request.transport is None or request.transport.is_closing():
                return response, "client_gone"
            log.warning("%s/%s: the answer broke off: %s", key[0], key[1], exc)
            request.transport.close()
            return response, "upstream_error"
        return response, "forwarded"

    async def _close(self, _: web.Application) -> None:
        for task in self._watches:
            task.cancel()
        for hold in self._holds.values():
            if hold.task is not None:
                hold.task.cancel()
        for session in self._sessions or ():
            await session.close()
        await self.client.close()


async def _read(request: web.Request, by_prefix: bool) -> tuple[bytes, str, str | None]:
    """The request's body, the model it names and (``by_prefix``) its routing key; Refusal when it cannot be read
    or names no model. Of the parsed JSON, only the fields these read are built (MODEL_FIELD, ROUTING_FIELDS),
    and none is kept."""
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = request.client_max_size / 2 ** 20
        raise Refusal(413, "bad_request", f"the request body is larger than {limit:g} MiB") from None
    except web.RequestPayloadError as exc:  # a body its Content-Encoding or chunks do not describe
        raise Refusal(400, "bad_request", f"cannot read the request body: {exc.__cause__ or exc}") from None
    fields = ROUTING_FIELDS if by_prefix else MODEL_FIELD
    try:
        parsed = json.loads(body or b"{}", object_pairs_hook=lambda pairs: {k: v for k, v in pairs if k in fields}
                            or None)  # an object without any of the fields: None
        model = parsed.get("model")
    except RecursionError:
        raise Refusal(400, "bad_request", "the request body's JSON is nested too deeply") from None
    except (ValueError, AttributeError):
        parsed, model = {}, None
    if not isinstance(model, str) or not model:
        raise Refusal(400, "bad_request", "the request body must be a JSON object with a \"model\" "
                                          "field naming the model (GET /v1/models lists them)")
    return body, model, routing_key(parsed, request.headers) if by_prefix else None


def _card(body: Mapping[str, Any]) -> dict[str, Any]:
    """The model an LLMDeployment serves, as OpenAI's /v1/models lists a model (``created``: when the
    LLMDeployment was, in seconds since the epoch; 0 when its metadata does not say)."""
    return {"id": served_name(body), "object": "model", "created": _created(body), "owned_by": "foresail",
            "llmdeployment": f"{body['metadata']['namespace']}/{body['metadata']['name']}",
            "ready_replicas": ready_replicas(body)}


def _created(body: Mapping[str, Any]) -> int:
    """An object's creationTimestamp (RFC 3339) in seconds since the epoch; 0 when missing or unreadable."""
    stamp = body["metadata"].get("creationTimestamp")
    try:
        return int(datetime.fromisoformat(stamp).timestamp()) if isinstance(stamp, str) else 0
    except ValueError:
        return 0


def _end_to_end(headers: CIMultiDictProxy[str], drop: Collection[str] = ()) -> CIMultiDict[str]:
    """``headers`` less the hop-by-hop ones (HOP_BY_HOP, those their Connection header names: RFC 9110 7.6.1)
    and ``drop``; a header that comes several times (Set-Cookie) is kept each time."""
    named = {token.strip().lower() for value in headers.getall("Connection", ()) for token in value.split(",")}
    left_out = HOP_BY_HOP | named | set(drop)
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in left_out)


def _forget(key: Key) -> None:
    """Drop a deleted deployment's series."""
    labels = {"namespace": key[0], "llmdeployment": key[1]}
    for metric in (ARRIVALS, HELD, REQUESTS):
        metric.remove_by_labels(labels)


def _service_of(piece: dict[str, Any]) -> str | None:
    """The Service an EndpointSlice belongs to."""
    return (piece["metadata"].get("labels") or {}).get(SERVICE_NAME_LABEL)
