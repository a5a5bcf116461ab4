"""Kubernetes API errors, answered as ``Status`` objects."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

REASONS: dict[int, str] = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Gone",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclass
class Cause:
    """One field-level cause of an ``Invalid`` error (``details.causes[]``)."""

    reason: str
    message: str
    field: str

    def text(self) -> str:
        """The cause as the real server prints it: ``field: message``."""
        return f"{self.field}: {self.message}" if self.field else self.message

    def to_dict(self) -> dict[str, str]:
        """The cause as it appears in a Status."""
        return {"reason": self.reason, "message": self.message, "field": self.field}


@dataclass
class ApiError(Exception):
    """An error answered with a Kubernetes ``Status`` object."""

    code: int
    message: str
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reason = self.reason or REASONS.get(self.code, "Unknown")
        super().__init__(self.message)

    def status(self) -> dict[str, Any]:
        """The ``Status`` object of this error."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.reason == "Unknown":  # StatusReasonUnknown is "", left out as every empty field of a Status
            del body["reason"]
        details = {k: v for k, v in self.details.items() if v not in ("", None, 0, [])}
        if details:
            body["details"] = details
        return body


def qualified(resource: str, group: str) -> str:
    """``deployments.apps`` / ``pods``: how messages name a resource."""
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, group: str, name: str) -> ApiError:
    """404 NotFound for a named object."""
    return ApiError(404, f'{qualified(resource, group)} "{name}" not found',
                    details={"name": name, "group": group, "kind": resource})


def already_exists(resource: str, group: str, name: str) -> ApiError:
    """409 AlreadyExists on create."""
    return ApiError(409, f'{qualified(resource, group)} "{name}" already exists', "AlreadyExists",
                    details={"name": name, "group": group, "kind": resource})


def conflict(resource: str, group: str, name: str) -> ApiError:
    """409 Conflict for a stale resourceVersion."""
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": the object has '
        "been modified; please apply your changes to the latest version and try again",
        details={"name": name, "group": group, "kind": resource})


def invalid(kind: str, group: str, name: str, causes: list[Cause]) -> ApiError:
    """422 Invalid listing every field-level cause."""
    texts = [c.text() for c in causes]
    listed = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    return ApiError(422, f'{qualified(kind, group)} "{name}" is invalid: {listed}',
                    details={"name": name, "group": group, "kind": kind,
                             "causes": [c.to_dict() for c in causes]})


def too_large_resource_version(wanted: int, current: int) -> ApiError:
    """504 Timeout for a read at a resourceVersion the server has not reached (storage.NewTooLargeResourceVersionError,
    as the watch cache answers it: retry after 1 s)."""
    return ApiError(504, f"Timeout: Too large resource version: {wanted}, current: {current}",
                    details={"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                             "retryAfterSeconds": 1},
                    headers={"Retry-After": "1"})


def bad_request(message: str) -> ApiError:
    """400 BadRequest."""
    return ApiError(400, message)


def format_value(value: Any) -> str:
    """A value as Go's field errors print it (strings quoted, objects by type)."""
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    if value is None:
        return "null"
    return json.dumps(value)
