"""A list-then-watch cache of one kind of object, as client-go's informers keep.

Each watched namespace (or the whole cluster) is listed once, then watched from the list's
resourceVersion: every ADDED, MODIFIED and DELETED event updates the cache and is passed to a callback, a
BOOKMARK moves the resourceVersion on, and a watch the server ends (its timeout) is opened again from
there. A 410 Gone (the version is too old) after a working watch lists anew at once, the callback seeing what
changed meanwhile. A list or watch that fails (an error, an ERROR event, a broken connection, garbage, or a 410
again before a watch worked) lists anew after a backoff (1 s, doubling to 30 s, until a watch delivers an event or
a bookmark, or ends as the server times it out), the cache kept as it was meanwhile (fail-static) and the failure
logged once per spell.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable

from foresail_operator.kube import ApiError, KubeClient, path_for

Key = tuple[str, str]  # (namespace, name)
OnChange = Callable[[str, dict[str, Any]], None]  # (ADDED | MODIFIED | DELETED, object)
WATCH_TIMEOUT_S = 300  # the server ends each watch after this long; it is opened again at once
BACKOFF_S = (1.0, 30.0)  # first and longest wait before trying a failed list or watch again

log = logging.getLogger("foresail.informer")


def key_of(obj: dict[str, Any]) -> Key:
    """An object's (namespace, name)."""
    meta = obj["metadata"]
    return meta.get("namespace") or "", meta["name"]


class Informer:
    """The objects of one resource in ``namespaces`` (all when empty), kept current by a watch."""

    def __init__(self, client: KubeClient, api_version: str, plural: str, namespaces: tuple[str, ...] = (),
                 label_selector: str | None = None, on_change: OnChange | None = None) -> None:
        self.client, self.api_version, self.plural = client, api_version, plural
        self.namespaces: tuple[str | None, ...] = namespaces or (None,)
        self.selector = {"labelSelector": label_selector} if label_selector else {}
        self.on_change = on_change
        self.objects: dict[Key, dict[str, Any]] = {}
        self._errors: dict[str | None, ApiError] = {}  # why a namespace's last list or watch failed
        self._waits: dict[str | None, float] = {}  # the next backoff of a namespace whose watch has not worked since
        self._unlisted = set(self.namespaces)  # the namespaces never listed yet
        self._tried = asyncio.Event()  # set once every namespace was listed or failed to be

    @property
    def error(self) -> ApiError | None:
        """Why a list or watch is failing now; None while all work."""
        return next(iter(self._errors.values()), None)

    def error_in(self, namespace: str) -> ApiError | None:
        """Why the list or watch that covers ``namespace`` (its own, or the whole cluster's) is failing now; None
        while it works, whatever other namespaces do."""
        return self._errors.get(namespace) or self._errors.get(None)

    async def run(self) -> None:
        """List and watch every namespace until cancelled."""
        await asyncio.gather(*(self._follow(ns) for ns in self.namespaces))

    async def synced(self, namespace: str | None = None) -> None:
        """Wait for the first list of every namespace; ApiError (the last failure) while one (``namespace``, or the
        whole cluster that covers it, when given) was never listed."""
        await self._tried.wait()
        unlisted = self._unlisted if namespace is None else self._unlisted & {namespace, None}
        if unlisted:
            raise (self.error if namespace is None else self.error_in(namespace)) or ApiError(
                503, "ServiceUnavailable", f"{self.plural} not listed yet")

    async def _follow(self, ns: str | None) -> None:
        path = path_for(self.api_version, self.plural, ns)
        version: str | None = None  # None: list (again) before watching
        while True:
            try:
                if version is None:
                    version = await self._list(ns, path)
                version = await self._watch(ns, path, version)
            except ApiError as exc:
                version = None  # list again, as client-go's reflector does
                backoff = self._waits.get(ns)
                if backoff is None and exc.status == 410:  # a working watch's version is too old: at once
                    self._waits[ns] = BACKOFF_S[0]
                    continue
                backoff = backoff or BACKOFF_S[0]
                self._failed(ns, exc, backoff)
                await asyncio.sleep(backoff)
                self._waits[ns] = min(2 * backoff, BACKOFF_S[1])

    async def _list(self, ns: str | None, path: str) -> str:
        """Replace the namespace's part of the cache with a fresh list; its resourceVersion."""
        listed = await self.client.request("GET", path, params=self.selector, retries=0)
        items = listed.get("items") if isinstance(listed, dict) else None
        if not isinstance(items, list) or not all(_named(o) for o in items):
            raise ApiError(500, "BadList", f"the list of {self.plural} is not a list of named objects")
        fresh = {key_of(o): o for o in items}
        stale = [k for k in self.objects if (ns is None or k[0] == ns) and k not in fresh]
        for key in stale:
            self._apply("DELETED", self.objects[key])
        for key, obj in fresh.items():
            if key not in self.objects:
                self._apply("ADDED", obj)
            elif _version(self.objects[key]) != _version(obj):  # unchanged ones are not passed on again
                self._apply("MODIFIED", obj)
        self._unlisted.discard(ns)
        self._note_tried()
        return _version(listed)

    async def _watch(self, ns: str | None, path: str, version: str) -> str:
        """Apply a watch's events until the server ends it; the resourceVersion to watch on from."""
        params = {**self.selector, "resourceVersion": version, "allowWatchBookmarks": "true",
                  "timeoutSeconds": str(WATCH_TIMEOUT_S)}
        async with self.client.watch(path, params, timeout_s=WATCH_TIMEOUT_S + 30) as events:
            async for event in events:
                kind, obj = event.get("type"), event.get("object")
                if not isinstance(obj, dict):
                    raise ApiError(500, "BadEvent", f"a watch event without an object: {str(event)[:200]}")
                if kind == "ERROR":  # the server's Status: 410 Gone (too old), or a failure
                    code = obj.get("code")
                    raise ApiError(code if isinstance(code, int) else 500, obj.get("reason") or "Error",
                                   obj.get("message") or "the watch ended with an error")
                version = _version(obj) or version
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    if not _named(obj):
                        raise ApiError(500, "BadEvent", f"a {kind} event without an object name: {str(event)[:200]}")
                    self._apply(kind, obj)
                self._recovered(ns)  # an event or a bookmark: the watch works
        self._recovered(ns)  # the server ended the watch (its timeout), not a failure
        return version

    def _apply(self, kind: str, obj: dict[str, Any]) -> None:
        key = key_of(obj)
        if kind == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = obj
        if self.on_change is not None:
            self.on_change(kind, obj)

    def _failed(self, ns: str | None, exc: ApiError, backoff: float) -> None:
        if ns not in self._errors:
            log.warning("cannot list or watch %s%s (%s): keeping the last state, trying again in %.0f s, then "
                        "less often", self.plural, f" in {ns}" if ns else "", exc, backoff)
        self._errors[ns] = exc
        self._note_tried()

    def _recovered(self, ns: str | None) -> None:
        self._waits.pop(ns, None)
        if self._errors.pop(ns, None) is not None:
            log.info("%s%s can be listed and watched again", self.plural, f" in {ns}" if ns else "")

    def _note_tried(self) -> None:
        """Let readers in once every namespace was listed or failed to be."""
        if all(ns not in self._unlisted or ns in self._errors for ns in self.namespaces):
            self._tried.set()


def _version(obj: dict[str, Any]) -> str:
    """An object's (or a list's) resourceVersion."""
    meta = obj.get("metadata")
    return str(meta.get("resourceVersion") or "") if isinstance(meta, dict) else ""


def _named(obj: Any) -> bool:
    """Whether ``obj`` is an object with a name (as every listed or watched object must be)."""
    return isinstance(obj, dict) and isinstance(obj.get("metadata"), dict) and bool(obj["metadata"].get("name"))
