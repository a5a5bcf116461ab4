"""What the status says when no pod shows the problem (a ReplicaSet that cannot create pods, a mounted ConfigMap or
Secret that does not exist, a rollout past its deadline), and when a Deployment is rolled out. The operator's own
`workload_status`, `refresh_status` with its `KubeClient` against the Kubernetes API test server, and the operator."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import kopf
from kopf._core.engines.posting import settings_var  # what kopf.warn reads, set as a running operator sets it

from foresail_operator import plan
from foresail_operator.config import OperatorConfig
from foresail_operator.kube import KubeClient
from foresail_operator.reconciler import plan_for, refresh_status
from foresail_operator.spec import parse_spec
from foresail_operator.status import workload_status
from tests.helpers import condition, wait_for
from tests.operator.conftest import LLMD, Operator, crd_apiserver

PATH = LLMD.format(ns="default") + "/tiny"
EVENTS = "/api/v1/namespaces/default/events"
FORBIDDEN = ('pods "llama-7d9f-" is forbidden: error looking up service account default/llm-runner: '
             'serviceaccount "llm-runner" not found')
TIMED_OUT = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": 'ReplicaSet "tiny-5d8c" has timed out progressing.'}


def deployment(generation: int = 1, observed: int = 1, plan_hash: str = "abc", conditions: Any = ()) -> dict:
    """A Deployment of 2 replicas, all ready and up to date as far as its status goes."""
    return {"metadata": {"name": "tiny", "generation": generation, "annotations": {plan.HASH_ANNOTATION: plan_hash}},
            "spec": {"replicas": 2},
            "status": {"observedGeneration": observed, "replicas": 2, "readyReplicas": 2, "updatedReplicas": 2,
                       "conditions": list(conditions)}}


def conditions(status: dict) -> dict[str, tuple[str, str, str]]:
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in status["conditions"]}


def test_a_replica_set_that_cannot_create_pods_degrades_with_its_reason_and_message():
    failure = {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": FORBIDDEN}
    status = workload_status(name="tiny", generation=1, desired=2, deployment=deployment(conditions=[failure]),
                             pods=[], problems=[], previous={}, autoscaling_on=False)
    assert conditions(status)["Degraded"] == ("True", "FailedCreate", f"Deployment tiny: {FORBIDDEN}")
    gone = workload_status(name="tiny", generation=1, desired=2, pods=[], problems=[], previous=status,
                           deployment=deployment(conditions=[{**failure, "status": "False"}]), autoscaling_on=False)
    assert conditions(gone)["Degraded"][:2] == ("False", "AsExpected")


def test_a_deployment_of_another_plan_or_an_unseen_generation_is_not_rolled_out():
    def progressing(dep: dict) -> tuple[str, str, str]:
        return conditions(workload_status(name="tiny", generation=2, desired=2, deployment=dep, pods=[], problems=[],
                                          previous={}, autoscaling_on=False, plan_hash="abc"))["Progressing"]

    assert progressing(deployment())[:2] == ("False", "Stable")
    assert progressing(deployment(plan_hash="older"))[0] == "True"  # the spec changed, the Deployment not yet
    assert progressing(deployment(generation=2, observed=1))[0] == "True"  # changed, its controller not there yet
    assert progressing(deployment(conditions=[TIMED_OUT]))[:2] == ("False", "ProgressDeadlineExceeded")
    # the deadline of the plan before: the Deployment is about to change
    assert progressing(deployment(plan_hash="older", conditions=[TIMED_OUT]))[:2] == ("True", "Scaling")


async def test_the_status_refresh_compares_the_deployment_with_the_specs_plan(cluster) -> None:
    kube = cluster.kube
    body = kube.create(LLMD.format(ns="default"), {
        "apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "tiny"},
        "spec": {"model": {"source": "builtin:tiny"}, "autoscaling": {"mode": "off"}, "replicas": 2}})
    client = KubeClient(kopf.ConnectionInfo(server=cluster.url, insecure=True))
    config = OperatorConfig(pre_stop="sleep")
    try:
        planned = (await plan_for(client, config, body, parse_spec(body["spec"])))[1]
        current = planned["metadata"]["annotations"][plan.HASH_ANNOTATION]
        await refresh_status(client, body, deployment(plan_hash="older"), [], config=config)
        assert condition(kube.read(PATH), "Progressing")["status"] == "True"
        await refresh_status(client, kube.read(PATH), deployment(plan_hash=current), [], config=config)
        assert condition(kube.read(PATH), "Progressing")["reason"] == "Stable"
    finally:
        await client.close()


def llmd_and_client(cluster, spec: dict[str, Any]) -> KubeClient:
    """The LLMDeployment ``tiny`` with ``spec``, and the operator's client for ``refresh_status`` outside an operator
    (its Events not posted)."""
    cluster.kube.create(LLMD.format(ns="default"), {
        "apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "tiny"}, "spec": spec})
    settings = kopf.OperatorSettings()
    settings.posting.enabled, settings.posting.level = False, logging.ERROR  # no event queue outside an operator
    settings_var.set(settings)
    return KubeClient(kopf.ConnectionInfo(server=cluster.url, insecure=True))


async def test_a_mounted_config_map_or_secret_that_does_not_exist_degrades_naming_it(cluster) -> None:
    kube = cluster.kube
    mounts = [{"path": "/etc/templates", "configMap": "chat-templates"}, {"path": "/etc/keys", "secret": "keys"}]
    client = llmd_and_client(cluster, {"model": {"source": "builtin:tiny"}, "autoscaling": {"mode": "off"},
                                       "runtime": {"mounts": mounts}})
    try:
        await refresh_status(client, kube.read(PATH), None, [])
        degraded = condition(kube.read(PATH), "Degraded")
        assert (degraded["status"], degraded["reason"]) == ("True", "ConfigMapNotFound")
        assert degraded["message"] == ("ConfigMap chat-templates (spec.runtime.mounts[0]) does not exist in namespace "
                                       "default: the pods wait for it to mount it (and 1 more)")
        kube.create("/api/v1/namespaces/default/configmaps", {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "chat-templates"}, "data": {"k": "v"}})
        await refresh_status(client, kube.read(PATH), None, [])
        degraded = condition(kube.read(PATH), "Degraded")
        assert (degraded["reason"], degraded["message"]) == (
            "SecretNotFound", "Secret keys (spec.runtime.mounts[1]) does not exist in namespace default: the pods "
                              "wait for it to mount it")
        # A chart whose RBAC does not let the operator read it: unchecked, not a failed status refresh.
        cluster.faults(method="GET", path="/secrets/keys", status=403)
        await refresh_status(client, kube.read(PATH), None, [])
        assert condition(kube.read(PATH), "Degraded")["status"] == "False"
    finally:
        await client.close()


async def test_a_token_secret_the_operator_may_not_read_goes_unchecked(cluster) -> None:
    """spec.model.tokenSecretRef names a Secret: missing, then without its key, then one the operator may not read
    (403: RBAC without `get` on Secrets, as some clusters keep them from operators). That one is unchecked and the
    status still written, as for runtime.mounts; before, every status refresh of it failed."""
    kube = cluster.kube
    client = llmd_and_client(cluster, {"model": {"source": "org/model", "tokenSecretRef": {"name": "hf"}},
                                       "autoscaling": {"mode": "off"}})
    try:
        await refresh_status(client, kube.read(PATH), None, [])
        assert condition(kube.read(PATH), "Degraded")["reason"] == "SecretNotFound"
        kube.create("/api/v1/namespaces/default/secrets", {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf"}, "stringData": {"other": "x"}})
        await refresh_status(client, kube.read(PATH), None, [])
        assert condition(kube.read(PATH), "Degraded")["reason"] == "SecretKeyNotFound"
        cluster.faults(method="GET", path="/secrets/hf", status=403)
        await refresh_status(client, kube.read(PATH), None, [])
        assert condition(kube.read(PATH), "Degraded")["status"] == "False"
    finally:
        await client.close()


def test_a_rollout_past_its_deadline_is_reported_once_then_recovers(tmp_path: Path) -> None:
    """The Deployment's controller gives up (Progressing=False, ProgressDeadlineExceeded: pods never ready, with
    no pod problem to show): the LLMDeployment says so, with one Warning, until the Deployment progresses again.
    The real operator; the test writes the Deployment's status, as its controller would."""
    with crd_apiserver(tmp_path, simulate_pods=False) as server:
        kube = server.kube
        operator = Operator(server.kubeconfig, tmp_path / "operator.log", "--standalone").start()
        try:
            kube.create(LLMD.format(ns="default"), {
                "apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "tiny"},
                "spec": {"model": {"source": "builtin:tiny"}, "replicas": 1, "autoscaling": {"mode": "off"}}})
            deployment_path = "/apis/apps/v1/namespaces/default/deployments/tiny"
            generation = wait_for(lambda: (kube.get(deployment_path) or {}).get("metadata", {}).get("generation"),
                                  timeout=30, what="the Deployment")

            def write(ready: int, progressing: dict, marker: str) -> None:
                kube.merge(deployment_path + "/status", {"status": {
                    "observedGeneration": generation, "replicas": 1, "updatedReplicas": 1, "readyReplicas": ready,
                    "conditions": [{**progressing, "lastUpdateTime": marker}]}})

            def told(reason: str) -> int:
                return sum(e.get("count", 1) for e in kube.read(EVENTS)["items"]
                           if e["involvedObject"]["name"] == "tiny" and e["reason"] == reason)

            write(0, TIMED_OUT, "2026-01-01T00:00:00Z")
            wait_for(lambda: condition(kube.read(PATH), "Progressing").get("status") == "False", timeout=30,
                     what="Progressing False")
            message = f'Deployment tiny: {TIMED_OUT["message"]}'
            status = conditions(kube.read(PATH)["status"])
            assert status["Progressing"] == ("False", "ProgressDeadlineExceeded", message)
            assert status["Degraded"] == ("True", "ProgressDeadlineExceeded", message)
            assert status["Ready"][:2] == ("False", "ReplicasNotReady")
            write(0, TIMED_OUT, "2026-01-01T00:01:00Z")  # another event of the Deployment, still timed out
            wait_for(lambda: told("ProgressDeadlineExceeded"), what="the Warning")
            write(1, {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                      "message": 'ReplicaSet "tiny-5d8c" has successfully progressed.'}, "2026-01-01T00:02:00Z")
            wait_for(lambda: told("Recovered"), timeout=30, what="the Recovered event")
            status = conditions(kube.read(PATH)["status"])
            assert status["Progressing"][:2] == ("False", "Stable") and status["Degraded"][0] == "False"
            warnings = [e for e in kube.read(EVENTS)["items"] if e["reason"] == "ProgressDeadlineExceeded"]
            assert [(e["type"], e.get("count", 1)) for e in warnings] == [("Warning", 1)]
        finally:
            operator.kill(signal.SIGTERM)
            print(operator.text()[-4000:])
