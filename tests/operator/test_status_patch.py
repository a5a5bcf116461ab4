"""The status write: a figure the decision loop no longer has leaves the status (no stale forecast), and a
status that did not change is not written again. The operator's own `refresh_status` and `KubeClient`
against the Kubernetes API test server, with the CRD's status schema."""

from __future__ import annotations

from typing import Any

import kopf

from foresail_operator.kube import KubeClient
from foresail_operator.reconciler import refresh_status
from tests.operator.conftest import LLMD

PATH = LLMD.format(ns="default") + "/tiny"
READY = {"horizonSeconds": 135, "quantile": 0.9, "demand": 2.0, "historySeconds": 600, "median": 2.0,
         "upper": 3.1, "coverage": 0.85, "checked": 20}
GONE = {**READY, "demand": None, "median": None, "upper": None, "coverage": None, "checked": None}


def view(forecast: dict[str, Any]) -> dict[str, Any]:
    """The decision loop's view (autoscaler.py's `loop.view`) with this forecast."""
    return {"conditions": {}, "fields": {"recommendedReplicas": 2, "forecast": forecast}}


async def test_a_figure_gone_from_the_forecast_leaves_the_status_and_an_unchanged_one_is_not_rewritten(
        cluster) -> None:
    kube = cluster.kube
    kube.create(LLMD.format(ns="default"), {"apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment",
                                            "metadata": {"name": "tiny"},
                                            "spec": {"model": {"source": "builtin:tiny"}}})
    client = KubeClient(kopf.ConnectionInfo(server=cluster.url, insecure=True))
    try:
        assert await refresh_status(client, kube.get(PATH), None, [], autoscaler=view(READY))
        assert kube.get(PATH)["status"]["forecast"] == READY
        assert await refresh_status(client, kube.get(PATH), None, [], autoscaler=view(GONE))
        assert kube.get(PATH)["status"]["forecast"] == {"horizonSeconds": 135, "quantile": 0.9, "historySeconds": 600}
        patches = len([e for e in cluster.audit() if e["verb"] == "patch"])
        assert not await refresh_status(client, kube.get(PATH), None, [], autoscaler=view(GONE))
        assert len([e for e in cluster.audit() if e["verb"] == "patch"]) == patches, "nothing changed, nothing written"
    finally:
        await client.close()
