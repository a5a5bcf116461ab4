"""Server-side printing: the ``meta.k8s.io/v1`` Table that ``kubectl get`` asks for.

Built-in kinds get the columns kubectl users know (Pods: Ready/Status/Restarts, and with ``-o wide``
IP/Node; Deployments: Ready/Up-to-date/Available, and with ``-o wide`` Containers/Images/Selector); custom
resources get their CRD's ``additionalPrinterColumns``
(or Name and Age when it declares none).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from typing import Any, NamedTuple

from .resources import ResourceType

Obj = dict[str, Any]


class Column(NamedTuple):
    """One column of a Table: its definition, and its cell of an object."""

    name: str
    type: str
    cell: Callable[[Obj], Any]
    priority: int = 0  # above 0: only in kubectl's -o wide
    description: str = ""


def wants_table(accept: str) -> bool:
    """Whether an Accept header asks for a Table (``application/json;as=Table;g=meta.k8s.io``)."""
    return "as=Table" in accept and "g=meta.k8s.io" in accept


def human_age(timestamp: str | None) -> str:
    """``5s``, ``3m20s``, ``2h``, ``4d`` since an RFC 3339 timestamp, as kubectl prints ages."""
    if not timestamp:
        return "<unknown>"
    then = datetime.datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    seconds = int((datetime.datetime.now(datetime.UTC) - then).total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)}s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if minutes < 10:
        return f"{minutes}m{seconds % 60}s" if seconds % 60 else f"{minutes}m"
    if hours < 3:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    return f"{hours}h" if hours < 48 else f"{days}d"


def json_path(obj: Any, path: str) -> Any:
    """A small JSONPath subset: ``.a.b``, ``.a[0]``, ``.a[?(@.type=="Ready")].status``."""
    tokens = re.findall(r'\.([A-Za-z0-9_-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_]+)==["\']([^"\']*)'
                        r'["\']\)\]', path)
    for name, index, key, value in tokens:
        if name:
            obj = obj.get(name) if isinstance(obj, dict) else None
        elif index:
            obj = obj[int(index)] if isinstance(obj, list) and int(index) < len(obj) else None
        else:
            obj = next((i for i in obj or [] if isinstance(i, dict) and str(i.get(key)) == value),
                       None) if isinstance(obj, list) else None
    return obj


def _pod_status(pod: Obj) -> str:
    status = pod.get("status") or {}
    for container in status.get("containerStatuses") or []:
        waiting = (container.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            return str(waiting["reason"])
    return "Terminating" if pod["metadata"].get("deletionTimestamp") else str(
        status.get("phase", "Pending"))


def _pod_ready(pod: Obj) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _age(obj: Obj) -> str:
    return human_age(obj["metadata"].get("creationTimestamp"))


def _containers(obj: Obj, key: str) -> str:
    """A comma list of the pod template's containers' ``key`` (name or image)."""
    spec = (((obj.get("spec") or {}).get("template") or {}).get("spec") or {})
    return ",".join(str(c.get(key, "")) for c in spec.get("containers") or []) or "<none>"


def _selector(obj: Obj) -> str:
    """A label selector's matchLabels as ``key=value,...`` (kubectl's form)."""
    labels = (((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "<none>"


def _wide(name: str, cell: Callable[[Obj], Any], description: str) -> Column:
    """A column that only ``kubectl get -o wide`` prints."""
    return Column(name, "string", cell, 1, description)


BUILTIN_COLUMNS: dict[str, list[Column]] = {
    "Pod": [Column("Ready", "string", _pod_ready), Column("Status", "string", _pod_status),
            Column("Restarts", "integer", lambda o: sum(
                s.get("restartCount", 0) for s in (o.get("status") or {}).get(
                    "containerStatuses") or [])),
            Column("Age", "string", _age),
            _wide("IP", lambda o: (o.get("status") or {}).get("podIP") or "<none>", "IP address of the pod"),
            _wide("Node", lambda o: (o.get("spec") or {}).get("nodeName") or "<none>", "Node the pod is bound to")],
    "Deployment": [
        Column("Ready", "string", lambda o: f"{(o.get('status') or {}).get('readyReplicas', 0)}/"
                                            f"{(o.get('spec') or {}).get('replicas', 0)}"),
        Column("Up-to-date", "integer", lambda o: (o.get("status") or {}).get("updatedReplicas", 0)),
        Column("Available", "integer", lambda o: (o.get("status") or {}).get("availableReplicas", 0)),
        Column("Age", "string", _age),
        _wide("Containers", lambda o: _containers(o, "name"), "Names of the pod template's containers"),
        _wide("Images", lambda o: _containers(o, "image"), "Images of the pod template's containers"),
        _wide("Selector", _selector, "The label selector of the pods")],
    "Namespace": [Column("Status", "string", lambda o: (o.get("status") or {}).get("phase", "")),
                  Column("Age", "string", _age)],
    "Service": [Column("Type", "string", lambda o: (o.get("spec") or {}).get("type", "")),
                Column("Cluster-IP", "string", lambda o: (o.get("spec") or {}).get("clusterIP", "")),
                Column("Age", "string", _age)],
}


def _custom_columns(rt: ResourceType) -> list[Column]:
    declared = rt.printer_columns
    if not declared:
        return [Column("Age", "date", _age)]
    columns: list[Column] = []
    for column in declared:
        path, kind = column.get("jsonPath", ""), column.get("type", "string")

        def cell(obj: Obj, path: str = path, kind: str = kind) -> Any:
            value = json_path(obj, path)
            if kind == "date" and isinstance(value, str):
                return human_age(value)
            return "<none>" if value is None else value

        columns.append(Column(column.get("name", path), kind, cell, int(column.get("priority", 0)),
                              column.get("description", "")))
    return columns


def to_table(rt: ResourceType, items: list[Obj], resource_version: str) -> Obj:
    """A Table of ``items`` with the type's columns (first column: Name)."""
    columns = _custom_columns(rt) if rt.custom else BUILTIN_COLUMNS.get(rt.kind, [Column("Age", "string", _age)])
    definitions = [{"name": "Name", "type": "string", "format": "name", "priority": 0,
                    "description": "Name of the object"}]
    definitions += [{"name": c.name, "type": c.type, "format": "", "priority": c.priority,
                     "description": c.description} for c in columns]
    rows = [{"cells": [obj["metadata"]["name"], *[c.cell(obj) for c in columns]],
             "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                        "metadata": obj["metadata"]}} for obj in items]
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": definitions, "rows": rows}
