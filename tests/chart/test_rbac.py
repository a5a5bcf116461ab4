"""The chart's RBAC against the API calls the real operator makes, and the rendered manifests
against the Kubernetes API test server.

The operator runs with the environment the chart's Deployment sets, against the API test server,
through a scenario that touches every code path that calls the API (create with a token Secret,
scale, a runtime change that rolls the pods, delete). The server's audit log lists each call; every
call must be allowed by the rules the chart binds to the operator's ServiceAccount. A new API call
in the operator that the chart does not grant fails this test.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from foresail.demo.prometheus import free_port
from foresail.kubetest.testing import start_apiserver
from tests.chart.helm import RELEASE_NS, allowed, crds, find, grants, render, the
from tests.helpers import ROOT, Kube, logged_process, wait_for
from tests.operator.exporters import pods_in_flight

WATCHED = "team-a"
OPERATOR_AGENTS = ("kopf/", "foresail-operator/")
LLMD = f"/apis/foresail.dev/v1alpha1/namespaces/{WATCHED}/llmdeployments"
# Granted although no test can make the call: with the OwnerReferencesPermissionEnforcement
# admission plugin, setting blockOwnerDeletion on an owned object needs update on the owner's
# finalizers (kopf.adopt sets it).
NOT_OBSERVABLE = {("update", "foresail.dev", "llmdeployments/finalizers")}


def api_calls(server: Any) -> set[tuple[str, str, str, str]]:
    """(verb, group, resource[/subresource], namespace) of every API call Foresail's processes made,
    from the API test server's audit log."""
    return {(e["verb"], e["apiGroup"], e["resource"] + (f"/{e['subresource']}" if e["subresource"] else ""),
             e["namespace"] or "") for e in server.audit() if e["userAgent"].startswith(OPERATOR_AGENTS)}


def fetch(url: str) -> bytes | None:
    """The body of a 200 answer; None while the port is not open yet."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read() if response.status == 200 else None
    except OSError:
        return None


def rest_path(obj: dict[str, Any], plural: str) -> str:
    """The collection path to POST an object to."""
    group, _, version = obj["apiVersion"].rpartition("/")
    base = f"/apis/{group}/{version}" if group else f"/api/{version}"
    namespace = obj["metadata"].get("namespace")
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


PLURALS = {"ServiceAccount": "serviceaccounts", "ClusterRole": "clusterroles",
           "ClusterRoleBinding": "clusterrolebindings", "Role": "roles", "RoleBinding": "rolebindings",
           "Deployment": "deployments", "ConfigMap": "configmaps", "NetworkPolicy": "networkpolicies",
           "ClusterKopfPeering": "clusterkopfpeerings", "KopfPeering": "kopfpeerings", "Namespace": "namespaces",
           "CustomResourceDefinition": "customresourcedefinitions", "PodDisruptionBudget": "poddisruptionbudgets"}


def install(kube: Kube, objects: list[dict[str, Any]], namespaces: list[str]) -> None:
    """What `helm install` does: the CRDs, then every rendered object, each through its REST path."""
    for crd in crds():
        kube.create(rest_path(crd, "customresourcedefinitions"), crd)
    wait_for(lambda: kube.get("/apis/kopf.dev/v1") and kube.get("/apis/foresail.dev/v1alpha1"), what="CRD discovery")
    for name in namespaces:
        kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    for obj in objects:
        if obj["kind"] in ("PodMonitor", "PrometheusRule"):
            continue  # needs the Prometheus Operator's CRDs; checked in test_render.py
        kube.create(rest_path(obj, PLURALS[obj["kind"]]), obj)  # fails on any object the server refuses


def operator_env(objects: list[dict[str, Any]], kubeconfig: Path) -> dict[str, str]:
    """The operator's environment as the chart's Deployment sets it (plain values only)."""
    container = the(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORESAIL_")}
    env.update({e["name"]: e["value"] for e in container["env"] if "value" in e})
    return dict(env, PYTHONUNBUFFERED="1", KUBECONFIG=str(kubeconfig))


def run_scenario(kube: Kube) -> None:
    """Create (with a token Secret and a mounted ConfigMap), scale up and down (the pods reporting requests in
    flight), change the runtime and the disruption budget, override the replicas, delete: every API path the
    operator has."""
    kube.create(f"/api/v1/namespaces/{WATCHED}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token"}, "stringData": {"token": "x"}})
    doc = yaml.safe_load((ROOT / "examples" / "minimal.yaml").read_text())
    doc["spec"]["model"]["tokenSecretRef"] = {"name": "hf-token"}
    doc["spec"]["runtime"] = {"mounts": [{"path": "/etc/templates", "configMap": "chat-templates"}]}
    kube.create(f"/api/v1/namespaces/{WATCHED}/configmaps", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "chat-templates"}, "data": {"a": "b"}})
    kube.create(LLMD, doc)
    deployments = f"/apis/apps/v1/namespaces/{WATCHED}/deployments"
    wait_for(lambda: (kube.read(f"{LLMD}/tiny").get("status") or {}).get("readyReplicas"), timeout=40, what="Ready")
    kube.merge(f"{LLMD}/tiny/scale", {"spec": {"replicas": 3}})
    wait_for(lambda: kube.read(f"{deployments}/tiny")["spec"]["replicas"] == 3, timeout=30, what="3 replicas")
    pods = f"/api/v1/namespaces/{WATCHED}/pods?labelSelector=foresail.dev%2Fllmdeployment%3Dtiny"
    names = wait_for(lambda: len(p := kube.read(pods)["items"]) == 3 and [x["metadata"]["name"] for x in p],
                     timeout=30, what="3 pods")
    with pods_in_flight(kube, WATCHED, {name: i for i, name in enumerate(names)}):
        time.sleep(1.0)  # the operator's pod index follows the pods' new addresses (a watch)
        kube.merge(f"{LLMD}/tiny/scale", {"spec": {"replicas": 2}})  # the pods are marked, then one goes
        wait_for(lambda: len(kube.read(pods)["items"]) == 2, timeout=30, what="2 pods")
    # A Service planned by an older operator (another plan hash), then a spec change that rolls the
    # pods: the operator patches both the Deployment and the Service.
    service = f"/api/v1/namespaces/{WATCHED}/services/tiny"
    kube.merge(service, {"metadata": {"annotations": {"foresail.dev/plan-hash": "older"}}})
    kube.merge(f"{LLMD}/tiny", {"spec": {"runtime": {"name": "vllm"}, "model": {"source": "org/tiny"}}})
    wait_for(lambda: "vllm" in str(kube.read(f"{deployments}/tiny")["spec"]["template"]), timeout=30,
             what="the Deployment patched")
    wait_for(lambda: kube.read(service)["metadata"]["annotations"]["foresail.dev/plan-hash"] != "older",
             timeout=30, what="the Service patched")
    # The disruption budget widened, then disabled: the operator patches it, then deletes it.
    budget = f"/apis/policy/v1/namespaces/{WATCHED}/poddisruptionbudgets/tiny"
    kube.merge(f"{LLMD}/tiny", {"spec": {"disruptionBudget": {"maxUnavailable": "50%"}}})
    wait_for(lambda: kube.read(budget)["spec"]["maxUnavailable"] == "50%", timeout=30, what="the budget patched")
    kube.merge(f"{LLMD}/tiny", {"spec": {"disruptionBudget": {"enabled": False}}})
    wait_for(lambda: kube.get(budget) is None, timeout=30, what="the budget deleted")
    # Another writer on the Deployment's replicas while a schedule holds 3: the operator reports it, and
    # lists the HorizontalPodAutoscalers to name the writer.
    now = dt.datetime.now(dt.timezone.utc)
    kube.merge(f"{LLMD}/tiny", {"spec": {"autoscaling": {"mode": "reactive", "intervalSeconds": 5, "schedules": [{
        "start": f"{now - dt.timedelta(hours=1):%H:%M}", "end": f"{now + dt.timedelta(hours=1):%H:%M}",
        "minReplicas": 3}]}}})
    wait_for(lambda: kube.read(f"{deployments}/tiny")["spec"]["replicas"] == 3, timeout=30, what="3 replicas again")

    def overridden() -> bool:
        kube.merge(f"{deployments}/tiny/scale", {"spec": {"replicas": 1}})
        conditions = (kube.read(f"{LLMD}/tiny").get("status") or {}).get("conditions") or []
        return any(c.get("reason") == "ReplicasOverridden" for c in conditions)

    wait_for(overridden, timeout=40, interval=0.5, what="ReplicasOverridden")
    kube.delete(f"{LLMD}/tiny")
    wait_for(lambda: kube.get(f"{LLMD}/tiny") is None, timeout=30, what="deletion")


@pytest.mark.parametrize("mode", ["all-namespaces", "namespaced", "preStop-exec"])
def test_the_chart_grants_every_call_the_operator_makes_and_no_more(tmp_path: Path, mode: str):
    """preStop-exec: the operator reads no kubelet version, so it may not list the nodes either."""
    health, metrics = free_port(), free_port()
    values: dict[str, Any] = {"operator": {"healthPort": health, "metricsPort": metrics},
                              "networkPolicy": {"enabled": True}, "monitoring": {"scrapeConfig": {"enabled": True}}}
    if mode == "namespaced":
        values["watchNamespaces"] = [WATCHED]
    if mode == "preStop-exec":
        values["operator"]["preStop"] = "exec"
    objects = render(tmp_path, values)
    account = the(objects, "ServiceAccount")["metadata"]["name"]
    rules = grants(objects, RELEASE_NS, account)

    with start_apiserver(tmp_path / "api", simulate_pods=True, ready_delay_s=0.2) as server:
        kube = Kube(server.url)
        install(kube, objects, [RELEASE_NS, WATCHED])
        deployment = the(objects, "Deployment")
        created = kube.read(f"/apis/apps/v1/namespaces/{RELEASE_NS}/deployments/{deployment['metadata']['name']}")
        assert created["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
        server.clear_audit()

        with logged_process([sys.executable, "-m", "foresail", "operator"], tmp_path / "operator.log",
                            env=operator_env(objects, server.kubeconfig), cwd=ROOT):
            # The probes the chart declares answer on the ports it declares.
            wait_for(lambda: fetch(f"http://127.0.0.1:{health}/healthz") is not None, timeout=30, what="/healthz")
            wait_for(lambda: b"foresail_" in (fetch(f"http://127.0.0.1:{metrics}/metrics") or b""), what="/metrics")
            run_scenario(kube)
        calls = api_calls(server)

    # The operator acted: it created, scaled and patched (else the check below proves nothing).
    verbs = {(v, r) for v, _, r, _ in calls}
    assert {("create", "deployments"), ("patch", "deployments/scale"), ("get", "secrets"),
            ("patch", "llmdeployments/status"), ("patch", "pods"), ("list", "horizontalpodautoscalers")} <= verbs, verbs
    # The operator acted as the peering leader, on the peering object the chart made.
    peering = "kopfpeerings" if mode == "namespaced" else "clusterkopfpeerings"
    assert ("patch", peering) in verbs

    denied = sorted(c for c in calls if not allowed(rules, *c))
    assert not denied, f"the operator made calls the chart does not grant (verb, group, resource, namespace): {denied}"

    # Nothing broader than that: no wildcards, and no rule that no call used (bar NOT_OBSERVABLE).
    used = {(v, g, r) for v, g, r, _ in calls} | NOT_OBSERVABLE
    for _scope, rule in rules:
        for field in ("apiGroups", "resources", "verbs"):
            assert "*" not in rule[field], rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert (verb, group, resource) in used, f"granted but never used: {verb} {group}/{resource}"
    secret_rules = [(scope, rule) for scope, rule in rules if "secrets" in rule["resources"]]
    assert all(rule["verbs"] == ["get"] for _, rule in secret_rules)
    if mode == "namespaced":  # Secrets (and every namespaced right) only in the watched namespace
        assert {scope for scope, _ in secret_rules} == {WATCHED}
        assert not [r for s, r in rules if s is None and set(r["resources"]) - {"customresourcedefinitions",
                                                                                  "namespaces", "nodes"}]
    for binding in find(objects, "ClusterRoleBinding") + find(objects, "RoleBinding"):
        assert binding["roleRef"]["name"] not in ("cluster-admin", "admin", "edit")


def documented_rules() -> set[tuple[str, str, str]]:
    """(group, resource, verb) of docs/install.md's "What the chart grants" table, what a user who binds their own
    roles (rbac.create=false) is told to grant; a cell's words in parentheses say where a rule applies."""
    section = (ROOT / "docs" / "install.md").read_text().split("## What the chart grants", 1)[1]
    rows = [line for line in section.split("\n## ", 1)[0].splitlines() if line.startswith("| ")][1:]
    assert rows, "no table under docs/install.md's 'What the chart grants'"
    out: set[tuple[str, str, str]] = set()
    for row in rows:
        group, resources, verbs = (cell.strip() for cell in row.strip("|").split("|")[:3])
        for resource in re.split(r",| or ", re.sub(r"\([^)]*\)", "", resources)):
            out |= {(group.strip('"'), resource.strip(), verb.strip()) for verb in verbs.split(",")}
    return out


def test_the_docs_list_exactly_the_rules_the_chart_grants(tmp_path: Path) -> None:
    """Both scopes (every namespace; watchNamespaces), the operator's account only (the activator's rules are
    described apart)."""
    granted: set[tuple[str, str, str]] = set()
    for i, values in enumerate(({}, {"watchNamespaces": [WATCHED]})):
        (tmp_path / str(i)).mkdir()
        objects = render(tmp_path / str(i), values)
        account = the(objects, "ServiceAccount")["metadata"]["name"]
        granted |= {(group, resource, verb) for _scope, rule in grants(objects, RELEASE_NS, account)
                    for group in rule["apiGroups"] for resource in rule["resources"] for verb in rule["verbs"]}
    documented = documented_rules()
    assert (sorted(granted - documented), sorted(documented - granted)) == ([], []), \
        "docs/install.md's table misses (first) or adds (second) rules"
