"""Object storage: one global resourceVersion counter, a bounded event log and watch fan-out."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

Key = tuple[str, str]  # (group, plural)
Obj = dict[str, Any]


@dataclass(frozen=True)
class Event:
    """One change: ADDED, MODIFIED or DELETED, with the object before it (None if new)."""

    rv: int
    key: Key
    type: str
    obj: Obj
    old: Obj | None


class Subscription:
    """A queue of the store's events for one watcher; closed to end the stream."""

    def __init__(self, key: Key | None, droppable: bool) -> None:
        self.key = key
        self.droppable = droppable
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue()

    def close(self) -> None:
        """End the subscriber's stream."""
        self.queue.put_nowait(None)


def namespace_of(obj: Obj) -> str:
    """The object's namespace ('' when cluster-scoped)."""
    return (obj.get("metadata") or {}).get("namespace") or ""


def name_of(obj: Obj) -> str:
    """The object's name."""
    return (obj.get("metadata") or {}).get("name") or ""


class Store:
    """In-memory objects keyed by (group, plural) then (namespace, name)."""

    def __init__(self, event_log_size: int = 1000) -> None:
        self._objects: dict[Key, dict[tuple[str, str], Obj]] = collections.defaultdict(dict)
        self._by_uid: dict[str, tuple[Key, str, str]] = {}
        self._rv = 0
        self._log: collections.deque[Event] = collections.deque(maxlen=event_log_size)
        self._log_floor = 0  # resourceVersion of the newest event dropped from the log
        self._subscriptions: set[Subscription] = set()

    @property
    def resource_version(self) -> int:
        """The current (newest) resourceVersion."""
        return self._rv

    @property
    def log_floor(self) -> int:
        """Watches from a resourceVersion older than this cannot be replayed (410 Gone)."""
        return self._log_floor

    def get(self, key: Key, namespace: str, name: str) -> Obj | None:
        """A deep copy of one object, or None."""
        obj = self._objects[key].get((namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def objects(self, key: Key, namespace: str | None = None) -> list[Obj]:
        """Deep copies of a type's objects (one namespace, or all when None), sorted."""
        return [copy.deepcopy(obj) for (ns, _), obj in sorted(self._objects[key].items())
                if namespace is None or ns == namespace]

    def stored(self, key: Key) -> list[Obj]:
        """A type's stored objects themselves, sorted, without copying: for read-only use (a
        change stores a new object, so these never change under the caller)."""
        return [obj for _, obj in sorted(self._objects[key].items())]

    def keys(self) -> Iterator[Key]:
        """Every storage key that holds objects."""
        return iter([k for k, objs in self._objects.items() if objs])

    def locate_uid(self, uid: str) -> tuple[Key, str, str] | None:
        """(key, namespace, name) of the object with this uid, if stored."""
        return self._by_uid.get(uid)

    def put(self, key: Key, obj: Obj, old: Obj | None) -> Obj:
        """Store a new or changed object under a new resourceVersion; returns a copy."""
        self._rv += 1
        stored = copy.deepcopy(obj)
        stored["metadata"]["resourceVersion"] = str(self._rv)
        ident = (namespace_of(stored), name_of(stored))
        self._objects[key][ident] = stored
        self._by_uid[stored["metadata"]["uid"]] = (key, *ident)
        self._emit(Event(self._rv, key, "MODIFIED" if old else "ADDED", stored, old))
        return copy.deepcopy(stored)

    def remove(self, key: Key, namespace: str, name: str) -> Obj | None:
        """Delete an object (a new resourceVersion, a DELETED event); returns its last state."""
        old = self._objects[key].pop((namespace, name), None)
        if old is None:
            return None
        self._by_uid.pop(old["metadata"].get("uid", ""), None)
        self._rv += 1
        gone = copy.deepcopy(old)
        gone["metadata"]["resourceVersion"] = str(self._rv)
        self._emit(Event(self._rv, key, "DELETED", gone, old))
        return copy.deepcopy(gone)

    def _emit(self, event: Event) -> None:
        if len(self._log) == self._log.maxlen:
            self._log_floor = self._log[0].rv
        self._log.append(event)
        for sub in list(self._subscriptions):
            if sub.key is None or sub.key == event.key:
                sub.queue.put_nowait(event)

    def subscribe(self, key: Key | None, since: int | None,
                  droppable: bool = True) -> tuple[list[Event], Subscription]:
        """Events after ``since`` still in the log, and a subscription to later ones.

        Callers check ``since`` against :attr:`log_floor` first. Both are taken at once, so no
        event is missed or seen twice.
        """
        replay = [e for e in self._log if since is not None and e.rv > since
                  and (key is None or e.key == key)]
        sub = Subscription(key, droppable)
        self._subscriptions.add(sub)
        return replay, sub

    async def reached(self, version: int, wait_s: float) -> bool:
        """Whether the store's resourceVersion is at least ``version``, waiting up to ``wait_s`` seconds for it."""
        deadline = asyncio.get_running_loop().time() + wait_s
        _, sub = self.subscribe(None, None, droppable=False)
        try:
            while self._rv < version and (left := deadline - asyncio.get_running_loop().time()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(sub.queue.get(), left)
        finally:
            self.unsubscribe(sub)
        return self._rv >= version

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering events to a subscription."""
        self._subscriptions.discard(sub)

    def drop_subscriptions(self) -> int:
        """End every droppable subscription (the HTTP watches); returns how many."""
        subs = [s for s in self._subscriptions if s.droppable]
        for sub in subs:
            sub.close()
            self._subscriptions.discard(sub)
        return len(subs)
