"""Watch streams: initial ADDED events, replay from a resourceVersion, bookmarks, timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import re
import time
from typing import Any, Literal

from aiohttp import web

from . import schema
from .errors import ApiError, bad_request
from .resources import ResourceType
from .selectors import Matcher, field_matcher, label_matcher
from .store import Event, Obj, Store, namespace_of
from .tables import to_table, wants_table

log = logging.getLogger(__name__)

_LIVENESS_CHECK_S = 1.0  # how often an idle stream checks that its client is still there


def flag(query: Any, name: str) -> bool:
    """A boolean query parameter as the real server reads one: true unless absent, "0" or "false" (any case)."""
    return name in query and query[name].lower() not in ("0", "false")


def _line(kind: str, obj: Obj) -> bytes:
    return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"


class WatchFilter:
    """Which events a watch sees, and as what type (selectors turn changes into ADDED/DELETED)."""

    def __init__(self, rt: ResourceType, namespace: str | None, query: Any,
                 as_table: bool = False) -> None:
        self.rt = rt
        self.as_table = as_table
        self._columns_sent = False
        self.namespace = namespace if rt.namespaced else None
        self.labels: Matcher = label_matcher(query.get("labelSelector"))
        self.fields: Matcher = field_matcher(query.get("fieldSelector"), rt.selectable_fields())

    def matches(self, obj: Obj | None) -> bool:
        """Whether the watch would list this object."""
        if obj is None or (self.namespace and namespace_of(obj) != self.namespace):
            return False
        return self.labels(obj) and self.fields(obj)

    def translate(self, event: Event) -> tuple[str, Obj] | None:
        """The (type, object) this watcher gets for an event, or None. An object that is deleted or leaves the
        selectors comes as DELETED with its state before the event, at the event's resourceVersion (as the real
        cacheWatcher sends it)."""
        seen = event.old if self.matches(event.old) else None
        if event.type != "DELETED" and self.matches(event.obj):
            return ("MODIFIED" if seen else "ADDED"), self.present(event.obj)
        if seen is None:
            return None
        return "DELETED", self.present({**seen, "metadata": {**seen["metadata"], "resourceVersion": str(event.rv)}})

    def present(self, obj: Obj) -> Obj:
        """An object as served at the watched version (a one-row Table if asked for; only the
        first Table carries the column definitions, as with the real server)."""
        if self.rt.custom:  # pruned and defaulted as read from storage (a copy: the store's objects stay as stored)
            obj = schema.on_read(copy.deepcopy(obj), self.rt.schema)
        obj = {**obj, "apiVersion": self.rt.api_version, "kind": self.rt.kind}
        if not self.as_table:
            return obj
        table = to_table(self.rt, [obj], obj["metadata"].get("resourceVersion", ""))
        if self._columns_sent:
            table["columnDefinitions"] = []
        self._columns_sent = True
        return table


async def serve_watch(request: web.Request, store: Store, rt: ResourceType,
                      namespace: str | None, bookmark_interval_s: float) -> web.StreamResponse:
    """Stream watch events for one resource type until timeout, a drop, or disconnect."""
    query = request.query
    as_table = wants_table(request.headers.get("Accept", ""))
    watch_filter = WatchFilter(rt, namespace, query, as_table)
    raw_rv = query.get("resourceVersion") or ""
    since: int | None = None
    if raw_rv not in ("", "0"):
        try:
            since = int(raw_rv)
        except ValueError:
            raise bad_request(f'invalid resource version "{raw_rv}"') from None
    raw_timeout = query.get("timeoutSeconds") or "0"
    if not re.fullmatch(r"[+-]?[0-9]+", raw_timeout):  # an int64, as the real server's ParseInt reads it
        raise bad_request(f"strconv.ParseInt: parsing {json.dumps(raw_timeout, ensure_ascii=False)}: invalid syntax")
    # 0: no timeout (the real server then picks 30 to 60 minutes); a negative one ends the stream at once
    timeout = int(raw_timeout) or None
    bookmarks = flag(query, "allowWatchBookmarks")

    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    if since is not None and since < store.log_floor:
        await response.prepare(request)
        gone = ApiError(410, f"too old resource version: {since} ({store.log_floor})",
                        "Expired")
        await response.write(_line("ERROR", gone.status()))
        await response.write_eof()
        return response

    initial = [] if since is not None else [
        o for o in store.objects(rt.key, watch_filter.namespace) if watch_filter.matches(o)]
    replay, sub = store.subscribe(rt.key, since)
    watch = f"{request.method} {request.path_qs}"
    try:
        await response.prepare(request)
        for obj in initial:
            await response.write(_line("ADDED", watch_filter.present(obj)))
        for event in replay:
            translated = watch_filter.translate(event)
            if translated:
                await response.write(_line(*translated))
        reason = await _stream(request, response, store, sub, watch_filter, since or 0, timeout,
                               bookmark_interval_s if bookmarks else None)
        await response.write_eof()
        log.info("watch %s ended: %s", watch, reason)
    except ConnectionResetError as exc:
        log.info("watch %s ended: client disconnected (%s)", watch, exc)
    except asyncio.CancelledError:
        log.info("watch %s ended: cancelled", watch)
        raise
    except Exception as exc:  # end the stream as the real server does: an ERROR event
        if not response.prepared:
            raise
        log.exception("watch %s failed", watch)
        error = ApiError(500, f"Internal error occurred: {exc}")
        with contextlib.suppress(ConnectionResetError):
            await response.write(_line("ERROR", error.status()))
            await response.write_eof()
    finally:
        store.unsubscribe(sub)
    return response


async def _next_event(queue: asyncio.Queue[Event | None], wait: float) -> Event | Literal[False] | None:
    """The next queued event (None: the stream was closed), at once if one is queued, else
    within ``wait`` seconds; False if none came.

    ``asyncio.wait_for(queue.get(), 0)`` cancels the ``get`` before it runs, so it times out
    even when events are queued: a due deadline must never hide queued events.
    """
    if not queue.empty():
        return queue.get_nowait()
    if wait <= 0:
        return False
    try:
        return await asyncio.wait_for(queue.get(), wait)
    except TimeoutError:
        return False


async def _stream(request: web.Request, response: web.StreamResponse, store: Store, sub: Any,
                  watch_filter: WatchFilter, since: int, timeout: float | None,
                  bookmark_every: float | None) -> str:
    """Write live events after resourceVersion ``since`` (and due bookmarks) until the stream should end;
    returns why. A watch from a version still to come waits for it, as the real watch cache does."""
    loop_start = time.monotonic()
    end = loop_start + timeout if timeout else None
    next_bookmark = loop_start + bookmark_every if bookmark_every else None
    while request.transport is not None and not request.transport.is_closing():
        now = time.monotonic()
        deadlines = [t for t in (next_bookmark, end) if t]
        event = await _next_event(sub.queue, min([*deadlines, now + _LIVENESS_CHECK_S]) - now)
        if event is None:
            return "closed by the server"
        if event and event.rv > since:
            translated = watch_filter.translate(event)
            if translated:
                await response.write(_line(*translated))
        now = time.monotonic()
        if end and now >= end:
            return "timeoutSeconds reached"
        # A bookmark's version is the store's newest: only true once every queued event is out. None older than
        # the version watched from (the real watch cache sends nothing older): a watch from a version still to
        # come gets none until the store reaches it.
        if next_bookmark and now >= next_bookmark and sub.queue.empty():
            if store.resource_version >= since:
                rt = watch_filter.rt
                await response.write(_line("BOOKMARK", {
                    "kind": rt.kind, "apiVersion": rt.api_version,
                    "metadata": {"resourceVersion": str(store.resource_version)}}))
            next_bookmark = now + (bookmark_every or 0)
    return "client disconnected"
