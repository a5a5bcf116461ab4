"""The activator's stamp on an LLMDeployment: how it asks the operator for a replica.

The activator (activator.py) writes two annotations while it holds requests for a deployment with no
ready replica, again every ``STAMP_EVERY_S``; the operator reads them (handlers.py wakes a deployment
at zero when the stamp changes, autoscaler.py counts the held requests as queued demand while it is
fresh). The prefix is not ``foresail.dev/``: kopf keeps its own state there and ignores changes to it.
The activator also counts the requests that arrive for each deployment (``ARRIVALS_METRIC``, from 0
for every deployment it lists); the operator reads that count from Prometheus as the demand of a
deployment whose pods report none (at zero replicas, or while they start), and the requests held
(``HELD_METRIC``) summed over the activator's replicas, where each stamp has only its own.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

REQUESTED_AT = "activator.foresail.dev/requested-at"  # when it last stamped (ISO 8601, UTC)
HELD_REQUESTS = "activator.foresail.dev/held-requests"  # how many requests wait, as of REQUESTED_AT
STAMP_EVERY_S = 5.0  # how often a deployment with held requests is stamped again
STAMP_FRESH_S = 3 * STAMP_EVERY_S  # how long the operator counts a stamp as a request waiting
ARRIVALS_METRIC = "foresail_activator_arrivals_total"  # counter {namespace, llmdeployment}: requests that arrived
HELD_METRIC = "foresail_activator_held_requests"  # gauge {namespace, llmdeployment}: requests waiting for a replica


def requested_at(body: Mapping[str, Any]) -> float | None:
    """When the activator last stamped this LLMDeployment (epoch seconds), or None."""
    stamp = ((body.get("metadata") or {}).get("annotations") or {}).get(REQUESTED_AT)
    try:
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp() if stamp else None
    except ValueError:
        return None


def requests_waiting(body: Mapping[str, Any], now: float) -> int:
    """How many requests the activator holds for this LLMDeployment (0 unless its stamp is fresh)."""
    stamp = requested_at(body)
    if stamp is None or not -STAMP_EVERY_S <= now - stamp <= STAMP_FRESH_S:
        return 0
    held = ((body.get("metadata") or {}).get("annotations") or {}).get(HELD_REQUESTS, "1")
    return max(int(held), 1) if str(held).isdigit() else 1
