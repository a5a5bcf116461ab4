"""The real operator process over real HTTP against the Kubernetes API test server."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import signal
import threading
import time
from pathlib import Path

import pytest
import requests
import yaml

from foresail.demo.prometheus import free_port
from tests.helpers import ROOT, condition, kubectl, wait_for
from tests.operator.conftest import LLMD, Operator

NS = "default"
DEPLOY = "/apis/apps/v1/namespaces/default/deployments"
SERVICES = "/api/v1/namespaces/default/services"
BUDGETS = "/apis/policy/v1/namespaces/default/poddisruptionbudgets"
PODS = "/api/v1/namespaces/default/pods"
EVENTS = "/api/v1/namespaces/default/events"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def load(name: str) -> dict:
    return yaml.safe_load((ROOT / "examples" / name).read_text())


def llmd(cluster, name: str) -> dict:
    return cluster.kube.get(f"{LLMD.format(ns=NS)}/{name}")


def deployment(cluster, name: str) -> dict | None:
    return cluster.kube.get(f"{DEPLOY}/{name}")


def events_for(cluster, name: str) -> list[dict]:
    items = cluster.kube.get(EVENTS)["items"]
    return [e for e in items if e.get("involvedObject", {}).get("name") == name]


def apply(cluster, doc: dict) -> None:
    kubectl(cluster.kubeconfig, "apply", "--validate=false", "-f", "-", input=yaml.safe_dump(doc))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_each_example_gets_its_deployment_and_service(cluster, operator, path: Path):
    doc = yaml.safe_load(path.read_text())
    name = doc["metadata"]["name"]
    # A window open now (hourly-job.yaml's every hour from :57, batch-jobs.yaml's three a day) would raise the
    # replicas while this test reads them: schedules have their own test below.
    (doc["spec"].get("autoscaling") or {}).pop("schedules", None)
    if (doc["spec"]["model"].get("tokenSecretRef") or {}).get("name"):
        cluster.kube.create("/api/v1/namespaces/default/secrets", {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token"},
            "stringData": {"token": "hf_not_a_real_token"}})
    for mount in doc["spec"].get("runtime", {}).get("mounts", []):  # made by hand, as the example says
        kind, plural, key = ("ConfigMap", "configmaps", "configMap") if "configMap" in mount else (
            "Secret", "secrets", "secret")
        cluster.kube.create(f"/api/v1/namespaces/default/{plural}", {
            "apiVersion": "v1", "kind": kind, "metadata": {"name": mount[key]}})
    apply(cluster, doc)
    dep = wait_for(lambda: deployment(cluster, name), what="the Deployment")
    owner = llmd(cluster, name)
    ref = dep["metadata"]["ownerReferences"][0]
    owned_by = ("LLMDeployment", name, owner["metadata"]["uid"], True)
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == owned_by
    svc = wait_for(lambda: cluster.kube.get(f"{SERVICES}/{name}"), what="the Service")
    assert svc["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    budget = wait_for(lambda: cluster.kube.get(f"{BUDGETS}/{name}"), what="the PodDisruptionBudget")
    assert budget["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert budget["spec"]["maxUnavailable"] == 1
    container = dep["spec"]["template"]["spec"]["containers"][0]
    resources = doc["spec"].get("resources", {})
    gpu = resources.get("gpuResource", "nvidia.com/gpu")
    assert container["resources"].get("limits", {}).get(gpu, 0) == resources.get("gpus", 0)
    assert doc["spec"]["model"]["source"].removeprefix("hf://") in " ".join(container["command"])
    assert dep["spec"]["replicas"] == doc["spec"].get("minReplicas", 1)
    assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}  # the API test server says it is 1.32
    ready = wait_for(lambda: condition(llmd(cluster, name), "Ready").get("status") == "True" and llmd(cluster, name),
                     what="Ready=True")
    assert ready["status"]["readyReplicas"] == dep["spec"]["replicas"]
    assert ready["status"]["observedGeneration"] == ready["metadata"]["generation"]
    assert condition(ready, "Degraded")["status"] == "False"
    wait_for(lambda: any(e["reason"] == "Created" for e in events_for(cluster, name)), what="the Created event")
    assert operator.alive()


def test_spec_changes_roll_out_only_when_the_pod_changes(cluster, operator):
    doc = load("minimal.yaml")
    doc["spec"]["autoscaling"] = {"mode": "off"}
    doc["spec"]["replicas"] = 2
    apply(cluster, doc)
    first = wait_for(lambda: (d := deployment(cluster, "tiny")) and d.get("status", {}).get("readyReplicas") == 2 and d,
                     what="2 ready replicas")
    pods_before = {p["metadata"]["name"] for p in cluster.kube.get(PODS)["items"]}

    doc["spec"]["replicas"] = 3  # a replica change restarts nothing
    apply(cluster, doc)
    wait_for(lambda: deployment(cluster, "tiny")["spec"]["replicas"] == 3, what="3 replicas")
    assert deployment(cluster, "tiny")["spec"]["template"] == first["spec"]["template"]
    wait_for(lambda: len(cluster.kube.get(PODS)["items"]) == 3, what="3 pods")
    assert pods_before <= {p["metadata"]["name"] for p in cluster.kube.get(PODS)["items"]}

    doc["spec"]["model"]["source"] = "/models/another"  # a model change rolls the pods
    apply(cluster, doc)

    def rolled() -> dict | None:
        now = cluster.kube.read(f"{DEPLOY}/tiny")
        return now if "/models/another" in now["spec"]["template"]["spec"]["containers"][0]["command"] else None

    changed = wait_for(rolled, what="the new model in the template")
    assert changed["metadata"]["generation"] > first["metadata"]["generation"]
    assert changed["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    wait_for(lambda: not pods_before & {p["metadata"]["name"] for p in cluster.kube.get(PODS)["items"]},
             what="the old pods replaced")
    wait_for(lambda: any(e["reason"] == "Updated" for e in events_for(cluster, "tiny")), what="the Updated event")


def test_pod_settings_reach_the_pods_and_a_label_change_rolls_them(cluster, operator):
    doc = load("minimal.yaml")
    spread = {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}
    doc["spec"].update({
        "autoscaling": {"mode": "off"}, "replicas": 2, "rollout": {"maxSurge": 0, "maxUnavailable": 1},
        "podMetadata": {"labels": {"team": "ml"}, "annotations": {"sidecar.istio.io/inject": "false"}}})
    doc["spec"]["runtime"] = {"imagePullSecrets": [{"name": "registry"}], "serviceAccountName": "gcs-reader",
                              "envFrom": [{"configMapRef": {"name": "settings"}}],
                              "mounts": [{"path": "/etc/templates", "configMap": "chat-templates"}]}
    doc["spec"]["resources"] = {"topologySpreadConstraints": [spread], "affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}}}
    for config_map in ("settings", "chat-templates"):
        cluster.kube.create("/api/v1/namespaces/default/configmaps", {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": config_map}, "data": {"k": "v"}})
    apply(cluster, doc)
    stored = llmd(cluster, "tiny")["spec"]
    defaults = {"gpus": 0, "gpuResource": "nvidia.com/gpu"}
    assert stored["resources"] == {**defaults, **doc["spec"]["resources"]}  # nothing pruned on the way in
    pods = wait_for(lambda: len(items := cluster.kube.get(PODS)["items"]) == 2 and items, what="2 pods")
    for pod in pods:
        assert pod["metadata"]["labels"]["team"] == "ml"
        assert pod["metadata"]["annotations"]["sidecar.istio.io/inject"] == "false"
        assert pod["spec"]["serviceAccountName"] == "gcs-reader"
        assert pod["spec"]["imagePullSecrets"] == [{"name": "registry"}]
        assert pod["spec"]["containers"][0]["envFrom"] == [{"configMapRef": {"name": "settings"}}]
        assert {"configMap": {"name": "chat-templates"}}.items() <= next(
            v for v in pod["spec"]["volumes"] if v["name"] == "mount-0").items()
        assert pod["spec"]["affinity"] == doc["spec"]["resources"]["affinity"]
        assert pod["spec"]["topologySpreadConstraints"] == [{**spread, "labelSelector": {"matchLabels": {
            "foresail.dev/llmdeployment": "tiny"}}}]
    assert deployment(cluster, "tiny")["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    doc["spec"]["podMetadata"]["labels"]["team"] = "search"
    apply(cluster, doc)
    wait_for(lambda: {p["metadata"]["labels"]["team"] for p in cluster.kube.get(PODS)["items"]} == {"search"},
             what="the pods relabelled by a rollout")


def test_kubectl_scale_changes_the_deployment(cluster, operator):
    doc = load("minimal.yaml")
    doc["spec"]["autoscaling"] = {"mode": "off"}
    apply(cluster, doc)
    wait_for(lambda: deployment(cluster, "tiny"), what="the Deployment")
    kubectl(cluster.kubeconfig, "scale", "llmd", "tiny", "--replicas=4")
    wait_for(lambda: deployment(cluster, "tiny")["spec"]["replicas"] == 4, what="4 replicas")
    status = wait_for(lambda: (o := llmd(cluster, "tiny"))["status"].get("readyReplicas") == 4 and o, what="4 ready")
    assert status["status"]["desiredReplicas"] == 4
    scale = cluster.kube.get(f"{LLMD.format(ns=NS)}/tiny/scale")
    assert scale["kind"] == "Scale" and scale["status"]["replicas"] == 4
    assert scale["status"]["selector"] == "foresail.dev/llmdeployment=tiny"
    # With autoscaling on, a manual scale is applied at once, clamped to [min, max].
    cluster.kube.merge(f"{LLMD.format(ns=NS)}/tiny",
                       {"spec": {"autoscaling": {"mode": "predictive"}, "maxReplicas": 5}})
    kubectl(cluster.kubeconfig, "scale", "llmd", "tiny", "--replicas=2")
    wait_for(lambda: deployment(cluster, "tiny")["spec"]["replicas"] == 2, what="manual scale to 2")
    # the status is written just after the Deployment
    wait_for(lambda: "manual scale" in llmd(cluster, "tiny")["status"].get("lastScaleReason", ""),
             what="the reason of the manual scale")


def test_deleting_cleans_up(cluster, operator):
    apply(cluster, load("minimal.yaml"))
    wait_for(lambda: cluster.kube.get(PODS)["items"], what="a pod")
    kubectl(cluster.kubeconfig, "delete", "llmd", "tiny")
    wait_for(lambda: deployment(cluster, "tiny") is None and cluster.kube.get(f"{SERVICES}/tiny") is None
             and cluster.kube.get(f"{BUDGETS}/tiny") is None and not cluster.kube.get(PODS)["items"],
             what="everything gone")
    assert operator.alive()


def test_the_disruption_budget_follows_the_spec_and_spares_a_users_own(cluster, operator):
    doc = load("minimal.yaml")
    apply(cluster, doc)
    wait_for(lambda: cluster.kube.get(f"{BUDGETS}/tiny"), what="the PodDisruptionBudget")
    # As a server older than Kubernetes 1.27 keeps it: without unhealthyPodEvictionPolicy, which it drops.
    cluster.kube.merge(f"{BUDGETS}/tiny", {"spec": {"unhealthyPodEvictionPolicy": None}})
    assert "unhealthyPodEvictionPolicy" not in cluster.kube.get(f"{BUDGETS}/tiny")["spec"]
    doc["spec"]["disruptionBudget"] = {"maxUnavailable": "50%"}
    apply(cluster, doc)
    wait_for(lambda: cluster.kube.get(f"{BUDGETS}/tiny")["spec"]["maxUnavailable"] == "50%", what="50%")
    doc["spec"]["disruptionBudget"] = {"enabled": False}  # the user manages their own
    apply(cluster, doc)
    wait_for(lambda: cluster.kube.get(f"{BUDGETS}/tiny") is None, what="the budget deleted")
    wait_for(lambda: any(e["reason"] == "Deleted" for e in events_for(cluster, "tiny")), what="the Deleted event")
    mine = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "tiny"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"foresail.dev/llmdeployment": "tiny"}}}}
    uid = cluster.kube.create(BUDGETS, mine)["metadata"]["uid"]
    doc["spec"]["minReplicas"] = 2  # another reconcile, with the budget still disabled
    apply(cluster, doc)
    wait_for(lambda: deployment(cluster, "tiny")["spec"]["replicas"] == 2, what="2 replicas")
    kept = cluster.kube.get(f"{BUDGETS}/tiny")
    assert kept["metadata"]["uid"] == uid and "ownerReferences" not in kept["metadata"]
    doc["spec"]["disruptionBudget"] = {"enabled": True}  # ours again, with the user's still in the way
    apply(cluster, doc)
    degraded = wait_for(lambda: (c := condition(llmd(cluster, "tiny"), "Degraded")).get("status") == "True" and c,
                        what="Degraded")
    assert degraded["reason"] == "ReconcileFailed" and "does not own" in degraded["message"]
    assert "disruptionBudget.enabled: false" in degraded["message"]
    kept = cluster.kube.get(f"{BUDGETS}/tiny")
    assert kept["metadata"]["uid"] == uid and "ownerReferences" not in kept["metadata"]  # not taken over
    assert deployment(cluster, "tiny")["spec"]["replicas"] == 2  # the workload is still served
    assert operator.alive()


def test_a_deployment_in_the_way_is_reported_not_taken_over(cluster, operator):
    theirs = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "tiny"}, "spec": {
        "replicas": 1, "selector": {"matchLabels": {"app": "theirs"}},
        "template": {"metadata": {"labels": {"app": "theirs"}},
                     "spec": {"containers": [{"name": "c", "image": "example.com/theirs:1"}]}}}}
    uid = cluster.kube.create(DEPLOY, theirs)["metadata"]["uid"]
    apply(cluster, load("minimal.yaml"))
    degraded = wait_for(lambda: (c := condition(llmd(cluster, "tiny"), "Degraded")).get("status") == "True" and c,
                        what="Degraded")
    assert "a Deployment named tiny exists that this LLMDeployment does not own" in degraded["message"]
    kept = deployment(cluster, "tiny")
    assert kept["metadata"]["uid"] == uid
    assert kept["spec"]["template"]["spec"]["containers"][0]["image"] == "example.com/theirs:1"
    assert "ownerReferences" not in kept["metadata"]
    assert operator.alive()


def test_a_schedule_raises_the_replicas_a_horizon_before_its_window_opens(cluster, operator):
    now = dt.datetime.now(dt.timezone.utc)
    opens = (now + dt.timedelta(minutes=3)).replace(second=0, microsecond=0)  # 2 to 3 minutes ahead

    def window(name: str, start: dt.datetime, replicas: int) -> dict:
        return {"name": name, "start": f"{start:%H:%M}", "end": f"{start + dt.timedelta(hours=1):%H:%M}",
                "minReplicas": replicas}

    doc = load("minimal.yaml")
    doc["spec"]["autoscaling"] = {"intervalSeconds": 5, "forecast": {"horizon": "5m"},
                                  "schedules": [window("launch", opens, 3),
                                                window("later", opens + dt.timedelta(hours=3), 5)]}
    apply(cluster, doc)
    reason = wait_for(lambda: "schedule launch" in (r := llmd(cluster, "tiny").get("status", {}).get(
        "lastScaleReason", "")) and r, what="the schedule's reason")
    assert time.time() < opens.timestamp() and "before it opens" in reason
    assert deployment(cluster, "tiny")["spec"]["replicas"] == 3  # not the later window's 5
    wait_for(lambda: any("schedule launch" in e["message"] for e in events_for(cluster, "tiny")
                         if e["reason"] == "Scaled"), what="the Scaled event")


def test_another_autoscaler_on_the_deployment_is_reported_and_its_end_clears_it(cluster, operator):
    """An HPA-like writer sets the Deployment's replicas to 1 every half second while an open schedule needs
    3: ScalingLimited says so, once, with an Event that names the HorizontalPodAutoscaler (KEDA's here) that
    targets the Deployment; when the writer stops, the operator's count holds and the condition clears."""
    now = dt.datetime.now(dt.timezone.utc)
    doc = load("minimal.yaml")
    doc["spec"]["autoscaling"] = {"mode": "reactive", "intervalSeconds": 5, "schedules": [{
        "start": f"{now - dt.timedelta(hours=1):%H:%M}", "end": f"{now + dt.timedelta(hours=1):%H:%M}",
        "minReplicas": 3}]}
    apply(cluster, doc)
    wait_for(lambda: (d := deployment(cluster, "tiny")) and d["spec"]["replicas"] == 3, what="3 replicas")
    for name, target in (("keda-hpa-tiny", "tiny"), ("other", "another-deployment")):
        cluster.kube.create(f"/apis/autoscaling/v2/namespaces/{NS}/horizontalpodautoscalers", {
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "labels": {"scaledobject.keda.sh/name": target}},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                     "minReplicas": 1, "maxReplicas": 3}})
    stop = threading.Event()

    def other_autoscaler() -> None:
        while not stop.wait(0.5):
            cluster.kube.merge(f"{DEPLOY}/tiny/scale", {"spec": {"replicas": 1}})

    writer = threading.Thread(target=other_autoscaler, daemon=True)
    writer.start()
    try:
        limited = wait_for(lambda: (c := condition(llmd(cluster, "tiny"), "ScalingLimited")).get(
            "reason") == "ReplicasOverridden" and c, timeout=40, what="ReplicasOverridden")
    finally:
        stop.set()
        writer.join()
    assert limited["status"] == "True"
    assert "such as HorizontalPodAutoscaler keda-hpa-tiny (KEDA ScaledObject tiny);" in limited["message"]
    assert "(to 1, from the 3 Foresail set)" in limited["message"]
    wait_for(lambda: condition(llmd(cluster, "tiny"), "ScalingLimited").get("reason") != "ReplicasOverridden",
             timeout=40, what="the condition cleared")
    assert deployment(cluster, "tiny")["spec"]["replicas"] == 3
    warnings = [e for e in events_for(cluster, "tiny") if e["reason"] == "ReplicasOverridden"]  # posted long since
    assert len(warnings) == 1 and warnings[0]["type"] == "Warning"


def test_an_unknown_time_zone_degrades_until_fixed_then_the_schedule_applies(cluster, operator):
    """The schema checks a time zone's form only; the operator names an unknown one, and decides again once
    the spec is fixed."""
    now = dt.datetime.now(dt.timezone.utc)
    doc = load("minimal.yaml")
    doc["spec"]["autoscaling"] = {"intervalSeconds": 5, "schedules": [{
        "name": "now", "start": f"{now - dt.timedelta(hours=1):%H:%M}", "end": f"{now + dt.timedelta(hours=1):%H:%M}",
        "timeZone": "Mars/Olympus", "minReplicas": 2}]}
    apply(cluster, doc)
    degraded = wait_for(lambda: condition(llmd(cluster, "tiny"), "Degraded"), what="Degraded")
    assert degraded["reason"] == "InvalidSpec" and "schedules[0].timeZone" in degraded["message"]
    assert deployment(cluster, "tiny") is None
    doc["spec"]["autoscaling"]["schedules"][0]["timeZone"] = "UTC"
    apply(cluster, doc)
    wait_for(lambda: (d := deployment(cluster, "tiny")) and d["spec"]["replicas"] == 2,
             what="the schedule's 2 replicas")
    wait_for(lambda: condition(llmd(cluster, "tiny"), "Degraded").get("status") == "False", what="no longer Degraded")


def test_a_deleted_deployment_is_recreated(cluster, operator):
    apply(cluster, load("minimal.yaml"))
    uid = wait_for(lambda: deployment(cluster, "tiny"), what="the Deployment")["metadata"]["uid"]
    cluster.kube.delete(f"{DEPLOY}/tiny")
    wait_for(lambda: (d := deployment(cluster, "tiny")) and d["metadata"]["uid"] != uid, what="a new Deployment")


def test_a_deleted_service_or_budget_is_recreated_at_once(cluster, operator):
    """At once: not at the next resync (60 s for a fixed-size LLMDeployment)."""
    doc = load("minimal.yaml")
    doc["spec"]["autoscaling"] = {"mode": "off"}
    apply(cluster, doc)
    paths = [f"{SERVICES}/tiny", f"{BUDGETS}/tiny"]
    wait_for(lambda: cluster.kube.get(f"{BUDGETS}/tiny"), what="the budget (made last)")
    uids = [cluster.kube.read(path)["metadata"]["uid"] for path in paths]
    for path in paths:
        cluster.kube.delete(path)

    def recreated() -> bool:
        now = [cluster.kube.get(path) for path in paths]
        return all(obj is not None and obj["metadata"]["uid"] != uid for obj, uid in zip(now, uids, strict=True))

    wait_for(recreated, what="a new Service and PodDisruptionBudget")
    assert condition(llmd(cluster, "tiny"), "Degraded").get("status") == "False"


def test_an_owned_object_edited_outside_the_operator_is_put_back(cluster, operator):
    """The decision loop puts back what the plan sets (the Deployment's image, the Service's port, the labels the
    LLMDeployment's are copied to), also fields removed (the pod template's env, a label, the preStop hook, a budget's
    field), keeping a `kubectl rollout restart` stamp, and then writes nothing while nothing changes (a field the
    server itself leaves out: test_left_out_fields.py)."""
    doc = load("minimal.yaml")
    doc["metadata"]["labels"] = {"team": "a"}
    doc["spec"]["autoscaling"] = {"intervalSeconds": 5}
    apply(cluster, doc)
    wait_for(lambda: condition(llmd(cluster, "tiny"), "Ready").get("status") == "True", timeout=30, what="Ready")
    image = deployment(cluster, "tiny")["spec"]["template"]["spec"]["containers"][0]["image"]
    restarted = {"kubectl.kubernetes.io/restartedAt": "2026-12-07T06:00:00Z"}  # as `kubectl rollout restart`
    cluster.kube.merge(f"{DEPLOY}/tiny", {"spec": {"template": {"metadata": {"annotations": restarted}}}})
    json_patch = "application/json-patch+json"
    cluster.kube.call("PATCH", f"{DEPLOY}/tiny", [{"op": "replace", "value": "example.com/other:1",
                                                  "path": "/spec/template/spec/containers/0/image"}], json_patch)
    cluster.kube.call("PATCH", f"{SERVICES}/tiny", [{"op": "replace", "path": "/spec/ports/0/port", "value": 9999}],
                      json_patch)
    wait_for(lambda: deployment(cluster, "tiny")["spec"]["template"]["spec"]["containers"][0]["image"] == image
             and cluster.kube.read(f"{SERVICES}/tiny")["spec"]["ports"][0]["port"] == 8000, timeout=30,
             what="the image and the port put back")
    template = deployment(cluster, "tiny")["spec"]["template"]
    removed = ["/spec/template/spec/containers/0/env", "/spec/template/spec/containers/0/lifecycle/preStop",
               "/spec/template/metadata/labels/app.kubernetes.io~1part-of",
               "/spec/template/spec/automountServiceAccountToken"]
    cluster.kube.call("PATCH", f"{DEPLOY}/tiny", [{"op": "remove", "path": path} for path in removed], json_patch)
    cluster.kube.merge(f"{BUDGETS}/tiny", {"spec": {"unhealthyPodEvictionPolicy": None}})
    wait_for(lambda: deployment(cluster, "tiny")["spec"]["template"] == template
             and cluster.kube.read(f"{BUDGETS}/tiny")["spec"].get("unhealthyPodEvictionPolicy") == "AlwaysAllow",
             timeout=30, what="the removed fields put back")
    wait_for(lambda: {e["message"] for e in events_for(cluster, "tiny") if e["reason"] == "Restored"} >= {
        "Restored Deployment tiny: spec.template.spec.containers[0].image was changed",
        "Restored Service tiny: spec.ports[0].port was changed",
        "Restored Deployment tiny: spec.template.metadata.labels.app.kubernetes.io/part-of was changed",
        "Restored PodDisruptionBudget tiny: spec.unhealthyPodEvictionPolicy was changed"}, what="the Restored events")
    assert deployment(cluster, "tiny")["spec"]["template"]["metadata"]["annotations"].items() >= restarted.items()
    cluster.kube.merge(f"{LLMD.format(ns=NS)}/tiny", {"metadata": {"labels": {"team": "b"}}})
    wait_for(lambda: deployment(cluster, "tiny")["metadata"]["labels"]["team"]
             == cluster.kube.read(f"{SERVICES}/tiny")["metadata"]["labels"]["team"] == "b", what="the new label")
    cluster.clear_audit()
    time.sleep(12)  # more than two decision intervals
    writes = [(e["verb"], e["resource"]) for e in cluster.audit()
              if e["verb"] in ("create", "patch", "update", "delete")
              and e["resource"] in ("deployments", "services", "poddisruptionbudgets")]
    assert not writes


def test_a_spec_change_is_not_reported_rolled_out_before_its_rollout(cluster, operator):
    """Each status written at the new generation says Progressing=True until the Deployment has rolled out."""
    doc = load("minimal.yaml")
    doc["spec"].update(autoscaling={"mode": "off"}, replicas=2)
    apply(cluster, doc)
    path = f"{LLMD.format(ns=NS)}/tiny"
    wait_for(lambda: condition(llmd(cluster, "tiny"), "Progressing").get("reason") == "Stable", timeout=30,
             what="Stable")
    for run in range(3):
        since = cluster.kube.read(path)["metadata"]["resourceVersion"]
        generation = cluster.kube.merge(path, {"spec": {"runtime": {"args": ["--max-waiting", str(100 + run)]}}})[
            "metadata"]["generation"]
        seen = []
        with requests.get(f"{cluster.url}{LLMD.format(ns=NS)}", stream=True, timeout=30, params={
                "watch": "true", "resourceVersion": since, "fieldSelector": "metadata.name=tiny"}) as watch:
            for line in watch.iter_lines():
                obj = json.loads(line)["object"]
                if obj.get("status", {}).get("observedGeneration") == generation:
                    seen.append((c := condition(obj, "Progressing"))["status"] + " " + c["reason"])
                    if c["reason"] == "Stable":
                        break
        assert len(seen) > 1 and all(s.startswith("True ") for s in seen[:-1]), seen


def test_missing_secret_degrades_then_recovers(cluster, operator):
    doc = load("minimal.yaml")
    doc["spec"]["model"]["tokenSecretRef"] = {"name": "hub-token"}
    apply(cluster, doc)
    degraded = wait_for(lambda: condition(llmd(cluster, "tiny"), "Degraded").get("status") == "True"
                        and condition(llmd(cluster, "tiny"), "Degraded"), what="Degraded")
    assert degraded["reason"] in ("SecretNotFound", "ContainerConfigError")
    assert "hub-token" in degraded["message"]
    wait_for(lambda: any(e["type"] == "Warning" and "hub-token" in e["message"] for e in events_for(cluster, "tiny")),
             what="a Warning event")
    cluster.kube.create("/api/v1/namespaces/default/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hub-token"}, "stringData": {"token": "x"}})
    wait_for(lambda: condition(llmd(cluster, "tiny"), "Degraded").get("status") == "False", timeout=60,
             what="recovery")
    assert operator.alive()


def test_unpullable_image_degrades_then_recovers(cluster, operator):
    doc = load("minimal.yaml")
    doc["spec"]["runtime"] = {"image": "registry.invalid/doesnotexist:1"}
    apply(cluster, doc)
    degraded = wait_for(lambda: condition(llmd(cluster, "tiny"), "Degraded").get("status") == "True"
                        and condition(llmd(cluster, "tiny"), "Degraded"), what="Degraded")
    assert degraded["reason"] == "ImagePullFailed" and "doesnotexist" in degraded["message"]
    doc["spec"]["runtime"] = {}
    apply(cluster, doc)
    wait_for(lambda: condition(llmd(cluster, "tiny"), "Ready").get("status") == "True"
             and condition(llmd(cluster, "tiny"), "Degraded").get("status") == "False", timeout=30, what="recovery")
    assert operator.alive()


INVALID = [
    ({"model": {}}, "spec.model.source"),
    ({}, "spec.model"),
    ({"model": {"source": "a/b"}, "minReplicas": 5, "maxReplicas": 2}, "minReplicas"),
    ({"model": {"source": "a/b"}, "maxReplicas": -1}, "spec.maxReplicas"),
    ({"model": {"source": "a/b"}, "maxReplicas": 100000}, "spec.maxReplicas"),
    ({"model": {"source": "a/b"}, "runtime": {"name": "llamacpp"}}, "spec.runtime.name"),
    ({"model": {"source": "a/b"}, "resources": {"gpus": 64}}, "spec.resources.gpus"),
    ({"model": {"source": "a/b"}, "resources": {"gpus": 2}}, "the foresail runtime runs a model on one GPU"),
    ({"model": {"source": "a/b"}, "runtime": {"name": "vllm"}, "resources": {
        "gpus": 2, "gpuResource": "nvidia.com/mig-1g.10gb"}}, "a process uses one MIG slice"),
    ({"model": {"source": "a/b"}, "resources": {"memory": "lots"}}, "spec.resources.memory"),
    ({"model": {"source": "a/b"}, "autoscaling": {"mode": "fast"}}, "spec.autoscaling.mode"),
    ({"model": {"source": "a/b"}, "autoscaling": {"intervalSeconds": 0}}, "spec.autoscaling.intervalSeconds"),
    ({"model": {"source": "a/b"}, "autoscaling": {"forecast": {"quantile": 1.5}}},
     "spec.autoscaling.forecast.quantile"),
    ({"model": {"source": "a/b"}, "autoscaling": {"forecast": {"horizon": "soon"}}},
     "spec.autoscaling.forecast.horizon"),
    ({"model": {"source": "a/b"}, "replicas": 20, "maxReplicas": 4, "autoscaling": {"mode": "off"}}, "replicas"),
    ({"model": {"source": "a/b"}, "disruptionBudget": {"maxUnavailable": 0}}, "spec.disruptionBudget.maxUnavailable"),
    ({"model": {"source": "a/b"}, "disruptionBudget": {"maxUnavailable": "half"}},
     "spec.disruptionBudget.maxUnavailable"),
    ({"model": {"source": "a/b"}, "autoscaling": {"schedules": [{"start": "9am", "end": "18:00", "minReplicas": 2}]}},
     "spec.autoscaling.schedules[0].start"),
    ({"model": {"source": "a/b"}, "autoscaling": {"schedules": [{"start": "09:00", "end": "09:00", "minReplicas": 2}]}},
     "spec.autoscaling.schedules[0]"),
    ({"model": {"source": "a/b"}, "maxReplicas": 4, "autoscaling": {"schedules": [
        {"start": "09:00", "end": "18:00", "minReplicas": 8}]}}, "spec.autoscaling.schedules"),
    ({"model": {"source": "a/b"}, "autoscaling": {"schedules": [{"start": "*:55", "end": "18:00", "minReplicas": 2}]}},
     "both minutes of every hour"),
    ({"model": {"source": "a/b"}, "autoscaling": {"schedules": [{"start": "*:5", "end": "*:10", "minReplicas": 2}]}},
     "spec.autoscaling.schedules[0].start"),
    ({"model": {"source": "a/b"}, "autoscaling": {"schedules": [
        {"start": "09:00", "end": "18:00", "minReplicas": 2, "days": ["Funday"]}]}},
     "spec.autoscaling.schedules[0].days[0]"),
    ({"model": {"source": "a/b"}, "autoscaling": {"learnSchedules": "daily"}}, "spec.autoscaling.learnSchedules"),
    ({"model": {"source": "not a model!"}}, "spec.model.source"),
    ({"model": {"source": "a/b", "cache": {"pvc": "c", "hostPath": "/x"}}}, "spec.model.cache"),
    ({"model": {"source": "a/b"}, "runtime": {"env": [{"name": "BAD NAME"}]}}, "spec.runtime.env[0].name"),
    ({"model": {"source": "a/b"}, "runtime": {"env": [{"name": "A", "value": "1", "valueFrom": {
        "fieldRef": {"fieldPath": "metadata.name"}}}]}}, "spec.runtime.env[0]"),
    ({"model": {"source": "a/b"}, "runtime": {"env": [{"name": "A", "valueFrom": {
        "fieldRef": {"fieldPath": "metadata.name"}, "secretKeyRef": {"key": "k"}}}]}}, "spec.runtime.env[0].valueFrom"),
    ({"model": {"source": "a/b"}, "minReplicas": 0}, "spec.minReplicas: Invalid value: 0: minReplicas may be 0 only"),
    ({"model": {"source": "a/b"}, "minReplicas": 0, "autoscaling": {"scaleToZero": {"enabled": False}}},
     "spec.minReplicas: Invalid value: 0: minReplicas may be 0 only"),
]
# a Service's name is a DNS-1035 label: no dot, a letter first, 63 characters at most
INVALID_NAMES = ["llama-3.1-8b", "8b-llama", "a" * 64]


def test_invalid_manifests_are_refused_naming_the_field(cluster, operator):
    cases = [(f"bad-{i}", spec, field) for i, (spec, field) in enumerate(INVALID)]
    cases += [(name, {"model": {"source": "a/b"}}, "metadata.name must be a DNS-1035 label") for name in INVALID_NAMES]
    for name, spec, field in cases:
        doc = {"apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": name}, "spec": spec}
        done = kubectl(cluster.kubeconfig, "apply", "--validate=false", "-f", "-", input=yaml.safe_dump(doc),
                       check=False)
        assert done.returncode != 0, f"{name}: {spec} was accepted"
        assert field in done.stderr, f"{field} not named in: {done.stderr}"
    assert not cluster.kube.get(LLMD.format(ns=NS))["items"]
    assert not cluster.kube.get(DEPLOY)["items"]
    assert operator.alive()


def test_sigkill_mid_work_converges_without_duplicates(cluster, tmp_path):
    op = Operator(cluster.kubeconfig, tmp_path / "op1.log", "--standalone").start()
    names = [f"m{i}" for i in range(12)]
    base = load("minimal.yaml")
    for name in names:
        doc = copy.deepcopy(base)
        doc["metadata"]["name"] = name
        cluster.kube.create(LLMD.format(ns=NS), doc)
    wait_for(lambda: cluster.kube.get(DEPLOY)["items"], timeout=30, what="the first Deployment")
    op.kill(signal.SIGKILL)
    op2 = Operator(cluster.kubeconfig, tmp_path / "op2.log", "--standalone").start()
    try:
        wait_for(lambda: sorted(d["metadata"]["name"] for d in cluster.kube.get(DEPLOY)["items"]) == sorted(names)
                 and all(condition(llmd(cluster, n), "Ready").get("status") == "True" for n in names),
                 timeout=60, what="all 12 converged")
        services = [s["metadata"]["name"] for s in cluster.kube.get(SERVICES)["items"]]
        assert sorted(s for s in services if s in names) == sorted(names)
        assert len(cluster.kube.get(PODS)["items"]) == len(names)
    finally:
        op2.kill(signal.SIGTERM)


def test_the_pre_stop_setting_picks_the_hook_and_a_change_rolls_it(cluster, tmp_path, monkeypatch):
    """FORESAIL_PRE_STOP=exec keeps the image's `sleep` on a 1.32 API server (kubelets that lag it); the
    operator restarted on `auto` moves the Deployment to the kubelet's sleep action (the simulated kubelet's
    node is 1.32 too), and back to the image's `sleep` once a node with a 1.29 kubelet has joined."""
    def hook() -> dict | None:
        dep = deployment(cluster, "pinned")
        return dep and dep["spec"]["template"]["spec"]["containers"][0]["lifecycle"]["preStop"]

    monkeypatch.setenv("FORESAIL_PRE_STOP", "exec")
    op = Operator(cluster.kubeconfig, tmp_path / "op1.log", "--standalone").start()
    doc = load("minimal.yaml")
    doc["metadata"]["name"] = "pinned"
    try:
        cluster.kube.create(LLMD.format(ns=NS), doc)
        wait_for(lambda: hook() == {"exec": {"command": ["sleep", "5"]}}, timeout=30, what="the exec hook")
    finally:
        op.kill(signal.SIGTERM)
    monkeypatch.setenv("FORESAIL_PRE_STOP", "auto")
    op2 = Operator(cluster.kubeconfig, tmp_path / "op2.log", "--standalone").start()
    try:
        wait_for(lambda: hook() == {"sleep": {"seconds": 5}}, timeout=30, what="the sleep action")
    finally:
        op2.kill(signal.SIGTERM)
    node = cluster.kube.create("/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "gpu-old"}})
    cluster.kube.call("PUT", "/api/v1/nodes/gpu-old/status",
                      node | {"status": {"nodeInfo": {"kubeletVersion": "v1.29.10"}}})
    op3 = Operator(cluster.kubeconfig, tmp_path / "op3.log", "--standalone").start()
    try:
        wait_for(lambda: hook() == {"exec": {"command": ["sleep", "5"]}}, timeout=30, what="the exec hook again")
    finally:
        op3.kill(signal.SIGTERM)
    assert "the oldest kubelet of 2 nodes is 1.29" in (tmp_path / "op3.log").read_text()


def test_a_deployments_series_go_when_its_decision_loop_ends(cluster, tmp_path):
    """The operator's /metrics carries each autoscaled LLMDeployment's decision series; they go when its
    autoscaling is turned off or it is deleted, so that no dashboard or alert keeps its last values."""
    port = free_port()
    op = Operator(cluster.kubeconfig, tmp_path / "operator.log", "--standalone", "--metrics-port", str(port)).start()

    def exported() -> set[str]:
        try:
            text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        except requests.ConnectionError:
            return set()
        return set(re.findall(r'^foresail_desired_replicas\{[^}]*llmdeployment="([^"]+)"', text, re.M))

    try:
        tiny = load("minimal.yaml")
        other = copy.deepcopy(tiny)
        other["metadata"]["name"] = "other"
        apply(cluster, tiny)
        apply(cluster, other)
        wait_for(lambda: exported() == {"tiny", "other"}, timeout=60, what="both deployments' series")
        other["spec"]["autoscaling"] = {"mode": "off"}
        apply(cluster, other)
        wait_for(lambda: exported() == {"tiny"}, timeout=30, what="other's series gone with its autoscaling")
        kubectl(cluster.kubeconfig, "delete", "llmd", "tiny")
        wait_for(lambda: exported() == set(), timeout=30, what="tiny's series gone with it")
    finally:
        op.kill(signal.SIGTERM)
        print(op.text()[-3000:])
