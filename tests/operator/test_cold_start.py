"""The measured cold start is a pod's creation to its first readiness: a pod that was ready, went NotReady for a
moment (a probe timing out under load) and became ready again does not count its whole age as its cold start."""

from __future__ import annotations

from datetime import datetime, timezone

import kopf

from foresail_operator import handlers
from foresail_operator.status import measured_cold_start

T0 = 1_800_000_000.0


def _pod(ready: str, since: float) -> kopf.Body:
    stamp = datetime.fromtimestamp(since, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return kopf.Body({"metadata": {"name": "x-1", "uid": "u1", "namespace": "default",
                                   "creationTimestamp": datetime.fromtimestamp(T0, timezone.utc).strftime(
                                       "%Y-%m-%dT%H:%M:%SZ")},
                      "status": {"conditions": [{"type": "Ready", "status": ready, "lastTransitionTime": stamp}]}})


def test_a_readiness_blip_is_no_cold_start() -> None:
    labels = {handlers.OWNER_LABEL: "x"}
    try:
        seen = []
        for ready, since in (("False", T0), ("True", T0 + 30), ("False", T0 + 3600), ("True", T0 + 3602)):
            seen.append(handlers.owned_pods(namespace="default", labels=labels, body=_pod(ready, since))[
                ("default", "x")])
        assert [measured_cold_start([p]) for p in seen] == [None, 30.0, 30.0, 30.0]
        assert seen[-1].ready_since == T0 + 3602  # still ready, as the scaler reads it
    finally:
        handlers._first_ready.clear()
        handlers._unready.clear()


def test_a_pod_first_seen_ready_measures_no_cold_start() -> None:
    """An operator started since (or back from a watch gap) lists a pod ready an hour after its creation, no container
    restarted: it may have been ready 30 s after it and gone NotReady for a moment since; its Ready condition tells
    the last readiness only. Not measured (the status keeps the cold start measured before), unlike a pod seen not
    ready first."""
    labels = {handlers.OWNER_LABEL: "x"}
    try:
        listed = handlers.owned_pods(namespace="default", labels=labels, body=_pod("True", T0 + 3602))
        assert measured_cold_start([listed[("default", "x")]]) is None
        assert listed[("default", "x")].ready_since == T0 + 3602  # ready, as the scaler reads it
        handlers.owned_pods(namespace="default", labels=labels, body=_pod("False", T0 + 3700))
        again = handlers.owned_pods(namespace="default", labels=labels, body=_pod("True", T0 + 3730))
        assert measured_cold_start([again[("default", "x")]]) is None  # still not its first readiness
    finally:
        handlers._first_ready.clear()
        handlers._unready.clear()
