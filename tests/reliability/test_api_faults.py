"""The real operator process against an API server that answers 409, 429 and 500 and drops watches.

Each test injects faults on the exact paths the operator writes (owned Deployment and Service,
the Deployment's scale subresource, the LLMDeployment's status) and asserts that the operator
retries, converges within a bound, makes no duplicates, stays alive, and reports a write that
keeps failing in a Degraded condition and a Warning Event.
"""

from __future__ import annotations

import time

from tests.helpers import wait_for
from tests.reliability.support import (
    DEPLOYS,
    LLMDS,
    assert_no_orphans_or_duplicates,
    condition,
    events_for,
    llmd_doc,
    requests_to,
    wait_converged,
)

STATUS = r"/llmdeployments/tiny/status$"
DEPLOY_SPEC = r"/deployments/tiny$"
DEPLOY_SCALE = r"/deployments/tiny/scale$"
BUDGETS = "/apis/policy/v1/namespaces/default/poddisruptionbudgets"


def test_conflicts_on_deployment_scale_and_status_writes_are_retried(cluster, start_operator):
    kube = cluster.kube
    op = start_operator()
    cluster.faults(method="PATCH", path=STATUS, status=409, count=2)
    kube.create(LLMDS, llmd_doc("tiny", autoscaling={"mode": "off"}, replicas=1))
    wait_converged(kube, "tiny", 1)
    # A new model (a JSON patch of the Deployment) and a new replica count (the scale subresource)
    # while both writes, and the status write, answer 409 Conflict twice.
    cluster.faults(method="PATCH", path=DEPLOY_SPEC, status=409, count=2)
    cluster.faults(method="PATCH", path=DEPLOY_SCALE, status=409, count=2)
    cluster.faults(method="PATCH", path=STATUS, status=409, count=2)
    kube.merge(f"{LLMDS}/tiny", {"spec": {"replicas": 3, "model": {"source": "/models/other"}}})
    wait_converged(kube, "tiny", 3, model="/models/other")
    audit = cluster.audit()
    assert requests_to(audit, "patch", "deployments", "tiny") >= 3
    assert requests_to(audit, "patch", "deployments", "tiny", "scale") >= 3
    assert requests_to(audit, "patch", "llmdeployments", "tiny", "status") >= 5
    assert not [e for e in events_for(kube, "tiny") if e["type"] == "Warning"], "retried conflicts are not failures"
    assert_no_orphans_or_duplicates(kube)
    assert op.alive()


def test_throttling_waits_for_retry_after(cluster, start_operator):
    kube = cluster.kube
    op = start_operator()
    kube.create(LLMDS, llmd_doc("tiny", autoscaling={"mode": "off"}, replicas=1))
    wait_converged(kube, "tiny", 1)
    cluster.clear_audit()
    cluster.faults(method="PATCH", path=DEPLOY_SCALE, status=429, count=1, retry_after=3)
    start = time.monotonic()
    kube.merge(f"{LLMDS}/tiny/scale", {"spec": {"replicas": 2}})  # what `kubectl scale` sends
    wait_for(lambda: kube.get(f"{DEPLOYS}/tiny")["spec"]["replicas"] == 2, timeout=20, what="2 replicas")
    elapsed = time.monotonic() - start
    # Its own backoff would have retried after 0.2 s: the wait proves Retry-After was honoured.
    assert elapsed >= 2.8, f"retried after {elapsed:.1f} s despite Retry-After: 3"
    assert requests_to(cluster.audit(), "patch", "deployments", "tiny", "scale") == 2
    wait_converged(kube, "tiny", 2)
    assert op.alive()


def test_server_error_bursts_on_creates_and_status_are_retried_without_duplicates(cluster, start_operator):
    kube = cluster.kube
    op = start_operator()
    cluster.faults(method="POST", path=r"/deployments$", status=500, count=3)
    cluster.faults(method="POST", path=r"/services$", status=503, count=3)
    cluster.faults(method="PATCH", path=r"/llmdeployments/[^/]+/status$", status=500, count=3)
    names = ["a", "b", "c"]
    for name in names:
        kube.create(LLMDS, llmd_doc(name, autoscaling={"mode": "off"}, replicas=1))
    for name in names:
        wait_converged(kube, name, 1)
    audit = cluster.audit()
    assert requests_to(audit, "create", "deployments") >= len(names) + 3
    assert requests_to(audit, "create", "services") >= len(names) + 3
    assert_no_orphans_or_duplicates(kube)
    assert op.alive()


def test_a_create_that_keeps_failing_is_reported_then_retried(cluster, start_operator):
    kube = cluster.kube
    op = start_operator()
    # 4 failures outlast the client's 3 retries: the handler fails once, kopf retries it later.
    cluster.faults(method="POST", path=r"/deployments$", status=500, count=4, message="etcd is on fire")
    kube.create(LLMDS, llmd_doc("tiny", autoscaling={"mode": "off"}, replicas=1))
    degraded = wait_for(lambda: (c := condition(kube.get(f"{LLMDS}/tiny"), "Degraded")).get("status") == "True" and c,
                        timeout=20, what="Degraded=True")
    assert degraded["reason"] == "ReconcileFailed" and "etcd is on fire" in degraded["message"]
    warning = wait_for(lambda: [e for e in events_for(kube, "tiny")
                                if e["type"] == "Warning" and e["reason"] == "ReconcileFailed"],
                       timeout=10, what="a ReconcileFailed Warning event")
    assert "etcd is on fire" in warning[0]["message"]
    assert kube.get(f"{DEPLOYS}/tiny") is None
    wait_converged(kube, "tiny", 1, timeout=60)  # kopf's retry (delay 30 s)
    assert any(e["reason"] == "Recovered" for e in events_for(kube, "tiny"))
    assert_no_orphans_or_duplicates(kube)
    assert op.alive()


def test_a_write_that_keeps_failing_stays_reported(cluster, start_operator):
    kube = cluster.kube
    op = start_operator()
    cluster.faults(method="POST", path=r"/deployments$", status=500, count=1000, message="etcd is on fire")
    kube.create(LLMDS, llmd_doc("tiny", autoscaling={"mode": "predictive", "intervalSeconds": 5}))
    wait_for(lambda: condition(kube.get(f"{LLMDS}/tiny"), "Degraded").get("reason") == "ReconcileFailed",
             timeout=20, what="Degraded=True ReconcileFailed")
    deadline = time.monotonic() + 12  # two decision intervals of the autoscaler loop
    while time.monotonic() < deadline:
        degraded = condition(kube.get(f"{LLMDS}/tiny"), "Degraded")
        assert (degraded.get("status"), degraded.get("reason")) == ("True", "ReconcileFailed"), \
            f"the failure stopped being reported while the Deployment is still missing: {degraded}"
        time.sleep(0.5)
    assert kube.get(f"{DEPLOYS}/tiny") is None
    assert op.alive()


def test_dropped_watches_mid_scenario(cluster, start_operator):
    kube = cluster.kube
    op = start_operator()
    kube.create(LLMDS, llmd_doc("tiny", autoscaling={"mode": "off"}, replicas=1))
    wait_converged(kube, "tiny", 1)
    dropped = 0
    for replicas in (3, 2, 4):
        dropped += cluster.drop_watches()
        kube.merge(f"{LLMDS}/tiny/scale", {"spec": {"replicas": replicas}})
        time.sleep(0.05)
        dropped += cluster.drop_watches()
        wait_converged(kube, "tiny", replicas)
    # An object created while the streams are down is picked up once they are re-established.
    dropped += cluster.drop_watches()
    kube.create(LLMDS, llmd_doc("second", autoscaling={"mode": "off"}, replicas=2))
    wait_converged(kube, "second", 2)
    assert dropped >= 6, "the operator's watches were not open"
    assert_no_orphans_or_duplicates(kube)
    assert op.alive()


def test_a_forbidden_disruption_budget_leaves_the_workload_served_and_reported(cluster, start_operator):
    """An operator image upgraded before its chart's RBAC may not write PodDisruptionBudgets: the Deployment
    is still created and scaled, and the refusal is reported until the right is granted."""
    kube = cluster.kube
    op = start_operator()
    cluster.faults(path=r"/poddisruptionbudgets(/tiny)?$", status=403, count=1000,
                   message='poddisruptionbudgets.policy "tiny" is forbidden: User cannot get resource')
    kube.create(LLMDS, llmd_doc("tiny", autoscaling={"mode": "off"}, replicas=2))
    wait_for(lambda: (d := kube.get(f"{DEPLOYS}/tiny")) and d["spec"]["replicas"] == 2, what="the Deployment")
    degraded = wait_for(lambda: (c := condition(kube.get(f"{LLMDS}/tiny"), "Degraded")).get("status") == "True" and c,
                        timeout=20, what="Degraded=True")
    assert degraded["reason"] == "ReconcileFailed" and "forbidden" in degraded["message"]
    cluster.clear_faults()
    wait_for(lambda: kube.get(f"{BUDGETS}/tiny"), timeout=60, what="the budget, once allowed")  # kopf's retry
    wait_for(lambda: condition(kube.get(f"{LLMDS}/tiny"), "Degraded").get("status") == "False", what="recovered")
    assert op.alive()
