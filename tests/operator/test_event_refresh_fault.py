"""A status write that fails while a pod or Deployment event is handled, in a timer, or after a decision (an API
hiccup on PATCH .../status) is one warning line naming the LLMDeployment, not kopf's "failed with an exception" and
a traceback (nor "decision not applied" for a decision that was): event handlers are not retried, timers come again,
and the next event, timer or decision refreshes the status again. The real operator process (and its handlers in
this process) against the Kubernetes API test server."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import kopf
import pytest
from kopf._core.engines.posting import settings_var  # what kopf.info reads, set as a running operator sets it

from foresail_operator import handlers
from foresail_operator.config import OperatorConfig
from foresail_operator.kube import KubeClient
from tests.helpers import KubeServer, condition, wait_for
from tests.operator.conftest import LLMD, Operator

PATH = LLMD.format(ns="default") + "/tiny"
PODS = "/api/v1/namespaces/default/pods"
FAILED_WRITE = r"/llmdeployments/tiny/status$"


def assert_one_warning_line(server: KubeServer, operator: Operator, timeout: float) -> None:
    """Once the failed refresh is logged (within ``timeout`` s), the faults go, and the log has it as one warning
    line naming the fault, with no traceback."""
    wait_for(lambda: any(s in operator.text() for s in ("cannot refresh the status", "failed with an exception")),
             timeout=timeout, what="the failed refresh logged")
    server.clear_faults()
    log = operator.text()
    assert "Traceback" not in log and "failed with an exception" not in log, log[-3000:]
    line = next(li for li in log.splitlines() if "cannot refresh the status of default/tiny: " in li)
    assert "injected fault" in line, line


def test_a_failed_status_write_on_a_pod_event_is_one_warning_line(cluster, operator: Operator) -> None:
    kube = cluster.kube
    kube.create(LLMD.format(ns="default"), {
        "apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "tiny"},
        "spec": {"model": {"source": "builtin:tiny"}, "replicas": 1, "autoscaling": {"mode": "off"}}})
    wait_for(lambda: condition(kube.get(PATH), "Ready").get("status") == "True", timeout=60, what="Ready")
    cluster.faults(method="PATCH", path=FAILED_WRITE, status=503, count=1000)
    pods = kube.get(PODS + "?labelSelector=foresail.dev/llmdeployment%3Dtiny")["items"]
    kube.delete(PODS + "/" + pods[0]["metadata"]["name"])  # pod (and Deployment) events: status refreshes
    assert_one_warning_line(cluster, operator, timeout=30)


def test_a_failed_status_write_in_the_degraded_recheck_is_one_warning_line(unsimulated: KubeServer,
                                                                          tmp_path: Path) -> None:
    """The ConfigMap a degraded LLMDeployment waits for is created: only the recheck timer sees it (no pod or
    Deployment event comes), and its status write fails."""
    kube = unsimulated.kube
    operator = Operator(unsimulated.kubeconfig, tmp_path / "operator.log", "--standalone").start()
    try:
        kube.create(LLMD.format(ns="default"), {
            "apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "tiny"},
            "spec": {"model": {"source": "builtin:tiny"}, "replicas": 1, "autoscaling": {"mode": "off"},
                     "runtime": {"mounts": [{"path": "/etc/templates", "configMap": "chat-templates"}]}}})
        wait_for(lambda: condition(kube.get(PATH), "Degraded").get("reason") == "ConfigMapNotFound", timeout=30,
                 what="Degraded")
        unsimulated.faults(method="PATCH", path=FAILED_WRITE, status=503, count=1000)
        kube.create("/api/v1/namespaces/default/configmaps", {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "chat-templates"}, "data": {"k": "v"}})
        assert_one_warning_line(unsimulated, operator, timeout=45)  # the recheck runs every 20 s
    finally:
        operator.kill(signal.SIGTERM)
        print(operator.text()[-4000:])


async def test_a_failed_status_write_in_the_resync_is_one_warning_line(unsimulated: KubeServer,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """The resync timer (every 60 s) of a fixed-size LLMDeployment, run here: it puts back the owned objects, then
    its status write fails; the timer returns (kopf would log an exception and its traceback)."""
    kube = unsimulated.kube
    body = kube.create(LLMD.format(ns="default"), {
        "apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "tiny"},
        "spec": {"model": {"source": "builtin:tiny"}, "replicas": 1, "autoscaling": {"mode": "off"}}})
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False  # no event queue outside an operator
    settings_var.set(settings)
    client = KubeClient(kopf.ConnectionInfo(server=unsimulated.url, insecure=True))
    memo = kopf.Memo(client=client, config=OperatorConfig(pre_stop="sleep"), loops={}, failures={},
                     owned={"services": {}, "poddisruptionbudgets": {}})
    unsimulated.faults(method="PATCH", path=FAILED_WRITE, status=503, count=1000)
    try:
        await handlers.resync(name="tiny", namespace="default", logger=logging.getLogger("resync"), memo=memo,
                              llmdeployments={("default", "tiny"): [body]}, owned_deployments={}, owned_pods={})
    finally:
        await client.close()
        handlers._locks.clear()
        handlers._reconciling.clear()
        handlers._vanished_checked.clear()
    assert kube.get("/apis/apps/v1/namespaces/default/deployments/tiny") is not None  # put back: the timer ran
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert line.startswith("cannot refresh the status of default/tiny: ") and "injected fault" in line, line


def test_a_failed_status_write_after_a_decision_is_one_warning_line(cluster, operator: Operator) -> None:
    """The decision loop's status refresh fails (the spec's capacity changed, so each decision's view does): one
    warning line per decision, as for events; it used to say "decision not applied", of a decision that was."""
    kube = cluster.kube
    kube.create(LLMD.format(ns="default"), {
        "apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "tiny"},
        "spec": {"model": {"source": "builtin:tiny"}, "autoscaling": {"mode": "predictive", "intervalSeconds": 5}}})
    wait_for(lambda: condition(kube.get(PATH), "Ready").get("status") == "True", timeout=60, what="Ready")
    wait_for(lambda: condition(kube.get(PATH), "MetricsAvailable").get("reason") == "NotConfigured", timeout=30,
             what="the first decision's status")  # and no pod event comes any more
    cluster.faults(method="PATCH", path=FAILED_WRITE, status=503, count=1000)
    kube.merge(PATH, {"spec": {"autoscaling": {"slo": {"capacityPerReplica": 2}}}})
    # the update's own refresh is one line; two more are the decisions'
    wait_for(lambda: operator.text().count("cannot refresh the status of default/tiny: ") >= 3, timeout=30,
             what="the decisions' failed refreshes logged")
    cluster.clear_faults()
    log = operator.text()
    assert "decision not applied" not in log and "Traceback" not in log, log[-3000:]
