"""A scale that the API server carries out but whose record in the status it refuses is still a scale: the
decision loop says so, rather than that the decision was not applied (and the status and Prometheus's figures
of that decision are still written); a manual scale so refused is no failed reconcile."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import kopf
from kopf._core.engines.posting import settings_var  # what kopf.info reads, set as a running operator sets it

from foresail_operator.autoscaler import Loop, step
from foresail_operator.collector import Collector
from foresail_operator.kube import KubeClient
from foresail_operator.metrics import PrometheusSource
from foresail_operator.spec import parse_spec
from tests.helpers import condition, found, wait_for
from tests.operator.advisory import KEY
from tests.operator.conftest import LLMD, Operator
from tests.reliability.fake_prometheus import FakePrometheus

DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
SPEC = {"model": {"source": "builtin:tiny"}, "minReplicas": 1, "maxReplicas": 10,
        "autoscaling": {"mode": "reactive", "slo": {"capacityPerReplica": 1}}}


async def test_a_scale_whose_status_record_fails_is_still_reported_as_done(cluster, caplog) -> None:
    body = cluster.kube.create(LLMD.format(ns="default"), {"apiVersion": "foresail.dev/v1alpha1",
                                                          "kind": "LLMDeployment", "metadata": {"name": "tiny"},
                                                          "spec": SPEC})
    labels = {"app": "tiny"}
    deployment = cluster.kube.create(DEPLOY, {"apiVersion": "apps/v1", "kind": "Deployment",
                                              "metadata": {"name": "tiny"}, "spec": {
        "replicas": 1, "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
            "containers": [{"name": "c", "image": "example.com/c:1"}]}}}})
    deployment["status"] = {"readyReplicas": 1}
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False  # no event queue outside a running operator
    settings_var.set(settings)
    cluster.faults(method="PATCH", path=r"/llmdeployments/tiny/status$", status=503, count=10)
    fake = FakePrometheus([KEY], values={"requests": "4.5"}).start()
    client = KubeClient(kopf.ConnectionInfo(server=cluster.url, insecure=True))
    try:
        collector = Collector(PrometheusSource(fake.url, timeout_s=2.0, window="10s"), period_s=1.0)
        await collector.collect_once()
        with caplog.at_level(logging.INFO):
            decision = await step(Loop(KEY, forecast_step_s=60.0), client, collector, body, parse_spec(SPEC),
                                  deployment, [], logging.getLogger("test.record"))
    finally:
        await client.close()
        fake.stop()
    assert decision.replicas == 5 and cluster.kube.get(DEPLOY + "/tiny")["spec"]["replicas"] == 5
    assert "scaled default/tiny 1 -> 5, but cannot record it in the status" in caplog.text
    assert "lastScaleReason" not in (cluster.kube.get(LLMD.format(ns="default") + "/tiny").get("status") or {})


def test_a_manual_scale_whose_status_record_fails_is_no_reconcile_failure(cluster, tmp_path: Path) -> None:
    """The real operator process: `kubectl scale` is applied while every status write fails for a while (503). The
    Deployment has its replicas, so the reconcile did not fail: no Degraded ReconcileFailed ("cannot apply the
    spec") nor its Warning Event, no handler retried for it; the status is refreshed once the writes go through
    again. Before, it said ReconcileFailed until kopf retried the handler 30 s later."""
    kube, path = cluster.kube, LLMD.format(ns="default") + "/x"
    kube.create(LLMD.format(ns="default"), {
        "apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "x"},
        "spec": {"model": {"source": "builtin:tiny"}, "autoscaling": {"mode": "predictive", "intervalSeconds": 5}}})
    op = Operator(cluster.kubeconfig, tmp_path / "operator.log", "--standalone").start()
    try:
        wait_for(lambda: condition(kube.get(path), "Ready").get("status") == "True", timeout=60, what="Ready")
        cluster.faults(method="PATCH", path=r"/llmdeployments/x/status$", status=503, count=40)
        kube.merge(f"{path}/scale", {"spec": {"replicas": 3}})
        wait_for(lambda: found(kube.get(DEPLOY + "/x"))["spec"]["replicas"] == 3, timeout=30, what="3 replicas")

        def settled() -> bool:
            status = found(kube.get(path)).get("status") or {}
            return status.get("desiredReplicas") == 3 and condition(kube.get(path), "Degraded").get("status") == "False"

        wait_for(settled, timeout=25, what="the status of 3 replicas, not degraded (kopf's retry comes after 30 s)")
        events = found(kube.get("/api/v1/namespaces/default/events"))["items"]
        assert not [e for e in events if e.get("reason") == "ReconcileFailed"]
        assert "scaled default/x 1 -> 3, but cannot record it in the status" in op.text()
        assert "Handler 'on_llmdeployment' failed" not in op.text()
    finally:
        op.kill(signal.SIGTERM)
