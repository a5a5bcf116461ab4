"""The aiohttp application: URL routing, discovery, the verbs, and the test-only endpoints."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import yaml
from aiohttp import web

from .api import Api, ApiConfig
from .errors import ApiError, bad_request, too_large_resource_version
from .faults import AuditLog, Faults
from .patch import PATCH_TYPES, parse_body
from .resources import ResourceType
from .tables import to_table, wants_table
from .watch import flag, serve_watch

log = logging.getLogger(__name__)

KUBERNETES_VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0-foresail-kubetest",
                      "gitCommit": "", "gitTreeState": "clean", "buildDate": "2024-12-11T00:00:00Z",
                      "goVersion": "go1.23", "compiler": "gc", "platform": "linux/amd64"}
_NAMESPACE_SUBRESOURCES = ("status", "finalize")
# application/octet-stream is what aiohttp reports when a client sends no Content-Type.
_BODY_TYPES = ("application/json", "application/yaml", "application/octet-stream")
# dryRun is not emulated: refused, so that a dry run (kubectl --dry-run=server, kubectl diff) never changes anything
_NO_DRY_RUN = "dryRun is not supported by the Kubernetes API test server"
_FRESH_WAIT_S = 3.0  # how long a get or list waits for a resourceVersion still to come (the watch cache's)


@dataclass
class ServerConfig:
    """Options of one API test server."""

    event_log_size: int = 1000
    validate_builtins: bool = True
    bookmark_interval_s: float = 1.0


@dataclass
class ServerState:
    """Mutable test-only state of a running server."""

    config: ServerConfig
    faults: Faults = field(default_factory=Faults)
    audit: AuditLog = field(default_factory=AuditLog)


_API = web.AppKey("api", Api)
_STATE = web.AppKey("state", ServerState)


@dataclass
class RequestInfo:
    """What a resource request addresses, as Kubernetes' RequestInfo describes it."""

    group: str
    version: str
    plural: str
    namespace: str
    name: str
    subresource: str
    watch: bool

    def verb(self, method: str) -> str:
        """The Kubernetes verb (get, list, watch, create, update, patch, delete, ...)."""
        if method == "GET":
            return "watch" if self.watch else ("get" if self.name else "list")
        if method == "DELETE":
            return "delete" if self.name else "deletecollection"
        return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(method, method.lower())


def parse_resource_path(parts: list[str], query: Any) -> RequestInfo:
    """Parse ``[watch/][namespaces/NS/]PLURAL[/NAME[/SUB]]`` after the group/version; ``?watch`` makes a watch of
    a collection only (on one object's path the real server ignores it: a get)."""
    group, version, rest = parts[0], parts[1], parts[2:]
    watch_path = bool(rest) and rest[0] == "watch"
    if watch_path:
        rest = rest[1:]
    namespace = ""
    if len(rest) > 2 and rest[0] == "namespaces" and rest[2] not in _NAMESPACE_SUBRESOURCES:
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        raise ApiError(404, "the server could not find the requested resource")
    name = rest[1] if len(rest) > 1 else ""
    return RequestInfo(group, version, rest[0], namespace, name, rest[2] if len(rest) > 2 else "",
                       watch_path or (not name and flag(query, "watch")))


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json",
                        headers=headers)


@web.middleware
async def status_errors(request: web.Request,
                        handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                        ) -> web.StreamResponse:
    """Answer every error as a Kubernetes Status object."""
    try:
        return await handler(request)
    except ApiError as exc:
        return _json(exc.status(), exc.code, exc.headers)
    except web.HTTPException as exc:
        error = ApiError(exc.status, exc.reason)
        return _json(error.status(), error.code)
    except Exception as exc:  # an internal error must still be a Status, and logged
        log.exception("internal error on %s %s", request.method, request.path)
        error = ApiError(500, f"Internal error occurred: {exc}")
        return _json(error.status(), 500)


async def _body(request: web.Request) -> Any:
    """A JSON or YAML request body; 415 for other media types (protobuf is not served)."""
    raw = await request.read()
    if not raw:
        return None
    content_type = request.content_type
    if content_type not in _BODY_TYPES:
        raise ApiError(415, f"the body of the request was in an unknown format - accepted media "
                            f"types include: {', '.join(_BODY_TYPES[:2])}")
    try:
        return yaml.safe_load(raw) if content_type == "application/yaml" else json.loads(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise bad_request(f"the body of the request could not be decoded: {exc}") from exc


# -- discovery ---------------------------------------------------------------------------


async def version(request: web.Request) -> web.Response:
    """``/version``."""
    return _json(KUBERNETES_VERSION)


async def healthz(request: web.Request) -> web.Response:
    """``/healthz``, ``/readyz``, ``/livez``."""
    return web.Response(text="ok")


async def core_versions(request: web.Request) -> web.Response:
    """``/api``: the core group's versions."""
    return _json({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
        {"clientCIDR": "0.0.0.0/0", "serverAddress": request.host}]})


async def group_list(request: web.Request) -> web.Response:
    """``/apis``: every group and its versions."""
    groups = []
    for group, versions in sorted(request.app[_API].registry.group_versions().items()):
        entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        groups.append({"name": group, "versions": entries, "preferredVersion": entries[0]})
    return _json({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})


async def one_group(request: web.Request) -> web.Response:
    """``/apis/{group}``: one APIGroup."""
    group = request.match_info["group"]
    versions = request.app[_API].registry.group_versions().get(group)
    if not versions:
        raise ApiError(404, "the server could not find the requested resource")
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return _json({"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": entries,
                  "preferredVersion": entries[0]})


def _resource_list(api: Api, group: str, version_: str) -> web.Response:
    types = api.registry.in_group_version(group, version_)
    if not types:
        raise ApiError(404, "the server could not find the requested resource")
    return _json({"kind": "APIResourceList", "apiVersion": "v1",
                  "groupVersion": f"{group}/{version_}" if group else version_,
                  "resources": [e for rt in types for e in rt.discovery()]})


# -- resources ---------------------------------------------------------------------------


async def resource_request(request: web.Request) -> web.StreamResponse:
    """Every request under ``/api/v1`` and ``/apis/{group}/{version}``."""
    api, state = request.app[_API], request.app[_STATE]
    path = request.match_info["path"].strip("/")
    group, version_ = request.match_info.get("group", ""), request.match_info.get("version", "v1")
    parts = [group, version_] + (path.split("/") if path else [])
    if len(parts) == 2 and request.method == "GET":
        return _resource_list(api, parts[0], parts[1])
    if len(parts) < 3:
        raise ApiError(404, "the server could not find the requested resource")
    info = parse_resource_path(parts, request.query)
    state.audit.record({
        "verb": info.verb(request.method), "apiGroup": info.group, "apiVersion": info.version,
        "resource": info.plural, "subresource": info.subresource, "namespace": info.namespace,
        "name": info.name, "userAgent": request.headers.get("User-Agent", "")})
    fault = state.faults.take(request.method, request.path_qs)
    if fault:
        raise fault
    rt = api.resource(info.group, info.version, info.plural)
    if parts[2] == "watch" and request.method != "GET":  # the real server routes a /watch/ path for GET only
        raise ApiError(405, "the server does not allow this method on the requested resource")
    if request.method != "GET" and any(request.query.getall("dryRun", [])):
        raise bad_request(_NO_DRY_RUN)
    if info.namespace and not rt.namespaced:
        raise ApiError(404, "the server could not find the requested resource")
    if info.subresource and info.subresource not in (
            ("status",) * rt.status + ("scale",) * bool(rt.scale)):
        raise ApiError(404, "the server could not find the requested resource")
    return await _dispatch(request, api, state, rt, info)


async def _dispatch(request: web.Request, api: Api, state: ServerState, rt: ResourceType,
                    info: RequestInfo) -> web.StreamResponse:
    if request.method == "GET" and not info.watch:
        await _fresh_enough(api, request.query.get("resourceVersion") or "")
    if request.method == "GET" and info.watch:
        if info.name:  # a watch on one object: the collection's, narrowed to its name
            query = request.query
            query_with_name = {**query, "fieldSelector": ",".join(
                filter(None, [query.get("fieldSelector"), f"metadata.name={info.name}"]))}
            request = request.clone(rel_url=request.rel_url.with_query(query_with_name))
        return await serve_watch(request, api.store, rt, info.namespace or None,
                                 state.config.bookmark_interval_s)
    if not info.name:
        return await _collection(request, api, rt, info.namespace)
    if info.subresource == "scale":
        return await _scale(request, api, rt, info)
    return await _object(request, api, rt, info)


async def _fresh_enough(api: Api, raw_rv: str) -> None:
    """A get or list at a resourceVersion the server has not reached waits for it, then fails, as the real watch
    cache serves one: "not older than" that version, waiting up to 3 s (its blockTimeout), then 504 Timeout with
    cause ResourceVersionTooLarge. (A watch from such a version waits for it without a limit, as the real one.)"""
    if re.fullmatch(r"[0-9]+", raw_rv) and not await api.store.reached(int(raw_rv), _FRESH_WAIT_S):
        raise too_large_resource_version(int(raw_rv), api.store.resource_version)


async def _collection(request: web.Request, api: Api, rt: ResourceType, ns: str) -> web.Response:
    """A request on a resource's collection: list, create, delete collection."""
    query, method = request.query, request.method
    if method == "GET":
        listed = api.list(rt, ns or None, query.get("labelSelector"), query.get("fieldSelector"))
        if wants_table(request.headers.get("Accept", "")):
            return _json(to_table(rt, listed["items"], listed["metadata"]["resourceVersion"]))
        return _json(listed)
    if method == "POST":
        return _json(api.create(rt, ns, await _body(request), query.get("fieldValidation") == "Strict"), 201)
    if method == "DELETE":
        return _json(api.delete_collection(rt, ns or None, query.get("labelSelector"), query.get("fieldSelector"),
                                           await _delete_options(request)))
    raise ApiError(405, "the server does not allow this method on the requested resource")


async def _object(request: web.Request, api: Api, rt: ResourceType, info: RequestInfo) -> web.Response:
    """A request on one object or its status: get, replace, patch, delete."""
    query, method, ns, name = request.query, request.method, info.namespace, info.name
    strict = query.get("fieldValidation") == "Strict"
    if method == "GET":
        obj = api.get(rt, ns, name)
        if wants_table(request.headers.get("Accept", "")) and not info.subresource:
            return _json(to_table(rt, [obj], obj["metadata"]["resourceVersion"]))
        return _json(obj)
    if method == "PUT":
        return _json(api.replace(rt, ns, name, await _body(request), info.subresource, strict))
    if method == "PATCH":
        content_type, patch = await _patch_body(request)
        obj, created = api.patch(rt, ns, name, content_type, patch, info.subresource, strict,
                                 query.get("fieldManager"))
        return _json(obj, 201 if created else 200)
    if method == "DELETE":
        return _json(api.delete(rt, ns, name, await _delete_options(request)))
    raise ApiError(405, "the server does not allow this method on the requested resource")


async def _delete_options(request: web.Request) -> dict[str, Any]:
    """A DELETE's DeleteOptions: the body's, with those given as query parameters over them."""
    options = await _body(request) or {}
    if not isinstance(options, dict):
        raise bad_request("the body of the request was in an unknown format: expected DeleteOptions")
    if options.get("dryRun"):
        raise bad_request(_NO_DRY_RUN)
    query = request.query
    for key in ("propagationPolicy", "gracePeriodSeconds"):
        if query.get(key):
            options[key] = query[key]
    if "orphanDependents" in query:
        options["orphanDependents"] = flag(query, "orphanDependents")
    return options


async def _patch_body(request: web.Request) -> tuple[str, Any]:
    """A PATCH request's content type and parsed body; 415 for a patch type the API server does not know."""
    content_type = request.content_type
    if content_type not in PATCH_TYPES:
        raise ApiError(415, f"the body of the request was in an unknown format - accepted "
                            f"media types include: {', '.join(PATCH_TYPES)}")
    return content_type, parse_body(content_type, await request.read())


async def _scale(request: web.Request, api: Api, rt: ResourceType,
                 info: RequestInfo) -> web.Response:
    if request.method == "GET":
        return _json(api.get_scale(rt, info.namespace, info.name))
    if request.method == "PUT":
        return _json(api.update_scale(rt, info.namespace, info.name, body=await _body(request)))
    if request.method == "PATCH":
        content_type, patch = await _patch_body(request)
        return _json(api.update_scale(rt, info.namespace, info.name, content_type=content_type,
                                      patch=patch))
    raise ApiError(405, "the server does not allow this method on the requested resource")


# -- test-only endpoints -----------------------------------------------------------------


async def add_fault(request: web.Request) -> web.Response:
    """``POST /_kubetest/faults``: fail the next matching requests."""
    fault = request.app[_STATE].faults.add(await _body(request))
    return _json(fault.to_dict(), 201)


async def list_faults(request: web.Request) -> web.Response:
    """``GET /_kubetest/faults``: the pending faults."""
    return _json(request.app[_STATE].faults.list())


async def clear_faults(request: web.Request) -> web.Response:
    """``DELETE /_kubetest/faults``: drop every pending fault."""
    request.app[_STATE].faults.clear()
    return _json({})


async def drop_watches(request: web.Request) -> web.Response:
    """``POST /_kubetest/drop-watches``: end every open watch stream."""
    return _json({"dropped": request.app[_API].store.drop_subscriptions()})


async def get_audit(request: web.Request) -> web.Response:
    """``GET /_kubetest/audit``: the resource requests received so far."""
    return _json(request.app[_STATE].audit.entries())


async def clear_audit(request: web.Request) -> web.Response:
    """``DELETE /_kubetest/audit``: forget the recorded requests."""
    request.app[_STATE].audit.clear()
    return _json({})


async def _drop_watches_on_shutdown(app: web.Application) -> None:
    app[_API].store.drop_subscriptions()


def make_app(config: ServerConfig | None = None) -> web.Application:
    """The API test server's aiohttp application (its :class:`Api` is ``app_api(app)``)."""
    config = config or ServerConfig()
    app = web.Application(middlewares=[status_errors], client_max_size=16 * 1024 * 1024)
    app[_API] = Api(ApiConfig(config.event_log_size, config.validate_builtins))
    app[_STATE] = ServerState(config)
    app.on_shutdown.append(_drop_watches_on_shutdown)
    app.router.add_get("/version", version)
    app.router.add_get("/version/", version)
    for probe in ("/healthz", "/readyz", "/livez"):
        app.router.add_get(probe, healthz)
    app.router.add_get("/api", core_versions)
    app.router.add_get("/apis", group_list)
    app.router.add_get("/apis/{group}", one_group)
    app.router.add_post("/_kubetest/faults", add_fault)
    app.router.add_get("/_kubetest/faults", list_faults)
    app.router.add_delete("/_kubetest/faults", clear_faults)
    app.router.add_post("/_kubetest/drop-watches", drop_watches)
    app.router.add_get("/_kubetest/audit", get_audit)
    app.router.add_delete("/_kubetest/audit", clear_audit)
    for prefix in ("/api/v1", "/apis/{group}/{version}"):
        app.router.add_route("*", prefix + "{path:(/.*)?}", resource_request)
    return app


def app_api(app: web.Application) -> Api:
    """The :class:`Api` behind an application made by :func:`make_app`."""
    return app[_API]
