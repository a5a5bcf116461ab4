"""Fault injection and the audit log of the requests the server received."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import REASONS, ApiError, bad_request


@dataclass
class Fault:
    """The next ``count`` requests matching ``method`` and ``path`` fail with ``status``."""

    method: str | None
    path: re.Pattern[str]
    status: int
    count: int
    retry_after: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        """The fault as the faults endpoint lists it."""
        return {"method": self.method, "path": self.path.pattern, "status": self.status,
                "count": self.count, "retryAfter": self.retry_after, "message": self.message}


def _count(spec: dict[str, Any], key: str, default: int, least: int) -> int:
    """An integer field of a fault spec, at least ``least``; 400 BadRequest otherwise."""
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise bad_request(f"a fault's {key} must be an integer of at least {least}, not {value!r}")
    return value


class Faults:
    """Pending injected faults."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, spec: Any) -> Fault:
        """Add a fault from ``{"method", "path", "status", "count", "retryAfter", "message"}``."""
        if not isinstance(spec, dict):
            raise bad_request("a fault must be a JSON object")
        status = spec.get("status", 500)
        if isinstance(status, bool) or not isinstance(status, int) or status not in REASONS:
            raise bad_request(f"unsupported fault status {status}; use one of {sorted(REASONS)}")
        try:
            pattern = re.compile(spec.get("path") or ".*")
        except (re.error, TypeError) as exc:
            raise bad_request(f"invalid path regex: {exc}") from exc
        method, message = spec.get("method"), spec.get("message")
        if not isinstance(method, (str, type(None))) or not isinstance(message, (str, type(None))):
            raise bad_request("a fault's method and message must be strings")
        fault = Fault(method.upper() if method else None, pattern, int(status), _count(spec, "count", 1, 1),
                      _count(spec, "retryAfter", 1, 0), message or f"injected fault: {REASONS[status]}")
        self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Drop every pending fault."""
        self._faults.clear()

    def list(self) -> list[dict[str, Any]]:
        """The pending faults."""
        return [f.to_dict() for f in self._faults]

    def take(self, method: str, path_qs: str) -> ApiError | None:
        """The error for this request if a pending fault matches it (consuming one count)."""
        for fault in self._faults:
            if (fault.method in (None, method)) and fault.path.search(path_qs):
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
                headers = {"Retry-After": str(fault.retry_after)} if fault.status == 429 else {}
                details = {"retryAfterSeconds": fault.retry_after} if fault.status == 429 else {}
                return ApiError(fault.status, fault.message, details=details, headers=headers)
        return None


class AuditLog:
    """Every resource request, as Kubernetes audit/RBAC sees it."""

    def __init__(self) -> None:
        self._entries: list[dict[str, str]] = []

    def record(self, entry: dict[str, str]) -> None:
        """Append one request."""
        self._entries.append(entry)

    def entries(self) -> list[dict[str, str]]:
        """Every request recorded since the last clear."""
        return list(self._entries)

    def clear(self) -> None:
        """Forget the recorded requests."""
        self._entries.clear()
