"""A `kubectl scale` done with autoscaling on leaves spec.replicas behind (the scale subresource writes it): it is a
one-time override that the operator clamps to [minReplicas, maxReplicas], so the CRD checks it against those bounds
only with autoscaling.mode off, and a later change of the bounds is not refused because of it."""

from __future__ import annotations

import requests

from tests.helpers import wait_for
from tests.operator.conftest import LLMD

PATH = f"{LLMD.format(ns='default')}/tiny"
DEPLOYMENT = "/apis/apps/v1/namespaces/default/deployments/tiny"


def patch(cluster, path: str, body: dict) -> requests.Response:
    return requests.patch(cluster.url + path, json=body, headers={"Content-Type": "application/merge-patch+json"},
                          timeout=10)


def test_a_manual_scale_left_in_the_spec_does_not_block_the_bounds(cluster, operator) -> None:
    cluster.kube.create(LLMD.format(ns="default"), {
        "apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "tiny"},
        "spec": {"model": {"source": "builtin:tiny"}, "minReplicas": 1, "maxReplicas": 4,
                 "autoscaling": {"mode": "reactive"}}})

    def replicas() -> int | None:
        live = cluster.kube.get(DEPLOYMENT)
        return live and live["spec"]["replicas"]

    wait_for(lambda: replicas() == 1, what="the Deployment at minReplicas")
    assert patch(cluster, f"{PATH}/scale", {"spec": {"replicas": 2}}).status_code == 200
    wait_for(lambda: replicas() == 2, what="the manual scale to 2")

    raised = patch(cluster, PATH, {"spec": {"minReplicas": 3}})  # above the replicas the scale left
    assert raised.status_code == 200, raised.text
    wait_for(lambda: replicas() == 3, what="the new minReplicas")
    above = patch(cluster, f"{PATH}/scale", {"spec": {"replicas": 20}})  # an override above maxReplicas
    assert above.status_code == 200, above.text
    wait_for(lambda: replicas() == 4, what="the override clamped to maxReplicas")
    lowered = patch(cluster, PATH, {"spec": {"minReplicas": 1, "maxReplicas": 2}})  # below the replicas left
    assert lowered.status_code == 200, lowered.text
    wait_for(lambda: replicas() == 2, what="the new maxReplicas")

    # With autoscaling off, spec.replicas is the size: out of the bounds it is refused, naming both.
    off = patch(cluster, PATH, {"spec": {"autoscaling": {"mode": "off"}}})
    assert off.status_code == 422 and "spec.replicas: Invalid value: 20: replicas must be less than or equal to " \
        "maxReplicas (with autoscaling.mode off)" in off.json()["message"], off.text
    assert patch(cluster, PATH, {"spec": {"autoscaling": {"mode": "off"}, "replicas": 1}}).status_code == 200
    wait_for(lambda: replicas() == 1, what="spec.replicas with autoscaling off")
    too_few = patch(cluster, f"{PATH}/scale", {"spec": {"replicas": 0}})
    assert too_few.status_code == 422 and "replicas must be greater than or equal to minReplicas" in \
        too_few.json()["message"], too_few.text
