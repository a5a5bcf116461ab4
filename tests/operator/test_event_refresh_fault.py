"""A status write that fails while a pod or Deployment event is handled (an API hiccup on PATCH .../status) is one
warning line naming the LLMDeployment, not kopf's "failed with an exception" and a traceback: event handlers are
not retried, and the next event or decision refreshes the status again. The real operator process against the
Kubernetes API test server."""

from __future__ import annotations

from tests.helpers import condition, wait_for
from tests.operator.conftest import LLMD, Operator

PATH = LLMD.format(ns="default") + "/tiny"
PODS = "/api/v1/namespaces/default/pods"


def test_a_failed_status_write_on_a_pod_event_is_one_warning_line(cluster, operator: Operator) -> None:
    kube = cluster.kube
    kube.create(LLMD.format(ns="default"), {
        "apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "tiny"},
        "spec": {"model": {"source": "builtin:tiny"}, "replicas": 1, "autoscaling": {"mode": "off"}}})
    wait_for(lambda: condition(kube.get(PATH), "Ready").get("status") == "True", timeout=60, what="Ready")
    cluster.faults(method="PATCH", path=r"/llmdeployments/tiny/status$", status=503, count=1000)
    pods = kube.get(PODS + "?labelSelector=foresail.dev/llmdeployment%3Dtiny")["items"]
    kube.delete(PODS + "/" + pods[0]["metadata"]["name"])  # pod (and Deployment) events: status refreshes
    wait_for(lambda: any(s in operator.text() for s in ("cannot refresh the status", "failed with an exception")),
             timeout=30, what="the failed refresh logged")
    cluster.clear_faults()
    log = operator.text()
    assert "Traceback" not in log and "failed with an exception" not in log, log[-3000:]
    line = next(li for li in log.splitlines() if "cannot refresh the status of default/tiny: " in li)
    assert "injected fault" in line, line
