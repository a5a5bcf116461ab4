"""A scale write that the API server refuses (RBAC without deployments/scale, an admission webhook, a quota) is
reported as such: ScalingLimited=True (ScaleFailed) with the server's error, one Warning Event, the decision's
figures and the status still written; it is not taken for another writer changing the replicas, and the next
write that goes through clears it. The decision loop runs as the operator runs it (`step`, the API test server
with a fault on the scale subresource, `FakePrometheus` through the real collector)."""

from __future__ import annotations

import asyncio
import logging

import kopf
from kopf._core.engines.posting import event_queue_loop_var, event_queue_var, settings_var
from prometheus_client import REGISTRY

from foresail_operator.autoscaler import Loop, step
from foresail_operator.collector import Collector
from foresail_operator.kube import KubeClient
from foresail_operator.metrics import PrometheusSource
from foresail_operator.reconciler import refresh_status
from foresail_operator.spec import parse_spec
from tests.helpers import condition
from tests.operator.advisory import KEY
from tests.operator.conftest import LLMD
from tests.reliability.fake_prometheus import FakePrometheus

DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
SPEC = {"model": {"source": "builtin:tiny"}, "minReplicas": 1, "maxReplicas": 10,
        "autoscaling": {"mode": "reactive", "slo": {"capacityPerReplica": 1}}}
LABELS = {"namespace": "default", "llmdeployment": "tiny"}
REFUSAL = 'deployments.apps "tiny" is forbidden: admission webhook "replica-cap" denied the request'


def events(queue: asyncio.Queue) -> list[tuple[str, str, str]]:
    """The Events the decisions posted (kopf's queue, which a running operator's poster sends on)."""
    posted = []
    while not queue.empty():
        event = queue.get_nowait()
        posted.append((event.type, event.reason, event.message))
    return posted


async def test_a_refused_scale_write_is_reported_not_taken_for_another_writer(cluster, caplog) -> None:
    kube = cluster.kube
    body = kube.create(LLMD.format(ns="default"), {"apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment",
                                                  "metadata": {"name": "tiny"}, "spec": SPEC})
    labels = {"app": "tiny"}
    kube.create(DEPLOY, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "tiny"}, "spec": {
        "replicas": 1, "selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": {
            "containers": [{"name": "c", "image": "example.com/c:1"}]}}}})
    settings_var.set(kopf.OperatorSettings())  # posting on, as in a running operator
    queue: asyncio.Queue = asyncio.Queue()
    event_queue_var.set(queue)
    event_queue_loop_var.set(asyncio.get_running_loop())
    cluster.faults(method="PATCH", path=r"/deployments/tiny/scale$", status=403, count=3, message=REFUSAL)
    fake = FakePrometheus([KEY], values={"requests": "4.5", "running": "0", "waiting": "0"}).start()
    client = KubeClient(kopf.ConnectionInfo(server=cluster.url, insecure=True))
    loop, log = Loop(KEY, forecast_step_s=60.0), logging.getLogger("test.refused")
    try:
        collector = Collector(PrometheusSource(fake.url, timeout_s=2.0, window="10s"), period_s=1.0)
        await collector.collect_once()
        with caplog.at_level(logging.INFO, logger="test.refused"):
            for _ in range(3):  # each write refused
                holds = REGISTRY.get_sample_value("foresail_decisions_total", {**LABELS, "action": "hold"}) or 0
                deployment = {**kube.read(DEPLOY + "/tiny"), "status": {"readyReplicas": 1}}
                decision = await step(loop, client, collector, body, parse_spec(SPEC), deployment, [], log)
                assert decision.replicas == 5 and kube.read(DEPLOY + "/tiny")["spec"]["replicas"] == 1
                limited, reason, message = loop.view["conditions"]["ScalingLimited"]
                assert (limited, reason) == (True, "ScaleFailed"), loop.view["conditions"]
                assert f"cannot scale Deployment tiny 1 -> 5, the API server refused: 403 Forbidden: {REFUSAL}" \
                    in message and "deployments/scale" in message and "rbac.create" in message
                assert REGISTRY.get_sample_value("foresail_decisions_total", {**LABELS, "action": "hold"}) == \
                    holds + 1  # the decision's figures are exported
                assert REGISTRY.get_sample_value("foresail_desired_replicas", LABELS) == 5
            assert await refresh_status(client, kube.read(LLMD.format(ns="default") + "/tiny"), deployment, [],
                                        autoscaler=loop.view)
            written = condition(kube.read(LLMD.format(ns="default") + "/tiny"), "ScalingLimited")
            assert (written["status"], written["reason"]) == ("True", "ScaleFailed")
            assert [(kind, why) for kind, why, _ in events(queue)] == [("Warning", "ScaleFailed")]  # once
            assert "ReplicasOverridden" not in caplog.text and "another writer" not in caplog.text
            # the fault is spent: the next write goes through, and the condition goes
            deployment = {**kube.read(DEPLOY + "/tiny"), "status": {"readyReplicas": 1}}
            await step(loop, client, collector, body, parse_spec(SPEC), deployment, [], log)
        assert kube.read(DEPLOY + "/tiny")["spec"]["replicas"] == 5
        assert loop.view["conditions"]["ScalingLimited"][1] == "DesiredWithinRange"
        assert [(kind, why) for kind, why, _ in events(queue)] == [("Normal", "Scaled")]
        assert f"the Deployment's replicas can be set again, after: 403 Forbidden: {REFUSAL}" in caplog.text
    finally:
        await client.close()
        fake.stop()
