"""What the status says when no pod shows the problem (a ReplicaSet that cannot create pods, a mounted ConfigMap or
Secret that does not exist), and when a Deployment is rolled out. The operator's own `workload_status`, and
`refresh_status` with its `KubeClient` against the Kubernetes API test server."""

from __future__ import annotations

import logging
from typing import Any

import kopf
from kopf._core.engines.posting import settings_var  # what kopf.warn reads, set as a running operator sets it

from foresail_operator import plan
from foresail_operator.config import OperatorConfig
from foresail_operator.kube import KubeClient
from foresail_operator.reconciler import plan_for, refresh_status
from foresail_operator.spec import parse_spec
from foresail_operator.status import workload_status
from tests.helpers import condition
from tests.operator.conftest import LLMD

PATH = LLMD.format(ns="default") + "/tiny"
FORBIDDEN = ('pods "llama-7d9f-" is forbidden: error looking up service account default/llm-runner: '
             'serviceaccount "llm-runner" not found')


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


async def test_a_mounted_config_map_or_secret_that_does_not_exist_degrades_naming_it(cluster) -> None:
    kube = cluster.kube
    mounts = [{"path": "/etc/templates", "configMap": "chat-templates"}, {"path": "/etc/keys", "secret": "keys"}]
    kube.create(LLMD.format(ns="default"), {
        "apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "tiny"},
        "spec": {"model": {"source": "builtin:tiny"}, "autoscaling": {"mode": "off"}, "runtime": {"mounts": mounts}}})
    settings = kopf.OperatorSettings()
    settings.posting.enabled, settings.posting.level = False, logging.ERROR  # no event queue outside an operator
    settings_var.set(settings)
    client = KubeClient(kopf.ConnectionInfo(server=cluster.url, insecure=True))
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
