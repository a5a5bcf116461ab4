"""`autoscaling.mode: off` leaves no figure of the stopped decision loop in the status (no stale forecast in
`kubectl get`), and the scale to the fixed size says where that size came from.

The real operator process against the Kubernetes API test server, reading `FakePrometheus`
(tests/reliability/fake_prometheus.py) answering 3 req/s.
"""

from __future__ import annotations

import re
from pathlib import Path

import kopf
import pytest

from foresail_operator.kube import KubeClient
from foresail_operator.reconciler import refresh_status
from foresail_operator.status import LOOP_FIELDS
from tests.helpers import condition, wait_for
from tests.operator.advisory import KEY
from tests.operator.conftest import LLMD, Operator
from tests.reliability.fake_prometheus import FakePrometheus

DEPLOYMENT = "/apis/apps/v1/namespaces/default/deployments/tiny"


def test_mode_off_removes_the_loops_figures_and_the_reason_names_min_replicas(
        cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakePrometheus([KEY], values={"requests": "3.0"}).start()
    monkeypatch.setenv("FORESAIL_COLLECT_PERIOD", "1")  # the operator process inherits the environment
    op = Operator(cluster.kubeconfig, tmp_path / "operator.log", "--standalone", "--prometheus-url", fake.url).start()
    path = LLMD.format(ns="default") + "/tiny"
    try:
        cluster.kube.create(LLMD.format(ns="default"), {
            "apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "tiny"},
            "spec": {"model": {"source": "builtin:tiny"}, "minReplicas": 1, "maxReplicas": 5,
                     "autoscaling": {"mode": "reactive", "intervalSeconds": 5, "learnSchedules": True,
                                     "slo": {"capacityPerReplica": 1, "attainmentTarget": 0.99}}}})
        status = wait_for(lambda: (lambda s: all(k in s for k in LOOP_FIELDS) and (s.get("recommendedReplicas") or 0)
                                   > 1 and s)(cluster.kube.get(path).get("status") or {}), timeout=60,
                          what="the loop's figures in the status")
        wait_for(lambda: ((cluster.kube.get(DEPLOYMENT) or {}).get("spec") or {}).get("replicas", 0) > 1,
                 what="the Deployment scaled up")
        assert status["capacity"]["perReplica"] == 1.0
        cluster.kube.merge(path, {"spec": {"autoscaling": {"mode": "off"}}})  # no spec.replicas: minReplicas runs
        status = wait_for(lambda: (lambda s: s.get("lastScaleReason", "").endswith("-> 1") and s)(
            cluster.kube.get(path).get("status") or {}), timeout=30, what="the scale to minReplicas")
        assert re.fullmatch(r"spec\.minReplicas: [2-5] -> 1", status["lastScaleReason"]), status["lastScaleReason"]
        assert cluster.kube.get(DEPLOYMENT)["spec"]["replicas"] == 1
        status = wait_for(lambda: (lambda s: not any(k in s for k in LOOP_FIELDS) and s)(
            cluster.kube.get(path).get("status") or {}), timeout=30, what="the loop's figures gone")
        assert condition(cluster.kube.get(path), "MetricsAvailable")["reason"] == "AutoscalingOff"
        assert status["capacity"]["perReplica"] == 1.0  # kept for the loop to carry on from when it is on again
    finally:
        op.kill()
        fake.stop()
        print(op.text()[-5000:])


async def test_a_last_view_of_a_loop_still_stopping_is_not_written_with_mode_off(cluster) -> None:
    """kopf stops the decision loop beside the update handler: a refresh that still finds the loop's view
    leaves its figures out of the status once the mode is off (its conditions were left out already)."""
    cluster.kube.create(LLMD.format(ns="default"), {
        "apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "tiny"},
        "spec": {"model": {"source": "builtin:tiny"}, "autoscaling": {"mode": "off"}}})
    path = LLMD.format(ns="default") + "/tiny"
    view = {"conditions": {}, "fields": {"recommendedReplicas": 2, "sloGovernor": 1.0, "learnedSchedules": [],
                                         "forecast": {"summary": "3.1 req/s p90 @+135s", "upper": 3.1}}}
    client = KubeClient(kopf.ConnectionInfo(server=cluster.url, insecure=True))
    try:
        assert await refresh_status(client, cluster.kube.get(path), None, [], autoscaler=view)
    finally:
        await client.close()
    status = cluster.kube.get(path)["status"]
    assert not any(k in status for k in LOOP_FIELDS) and status["desiredReplicas"] == 0, status
