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
