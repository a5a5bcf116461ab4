"""The pod plan, the spec parser and the status builder, as pure functions."""

import copy
from pathlib import Path

import pytest
import yaml

from foresail_operator import plan
from foresail_operator.config import OperatorConfig
from foresail_operator.reconciler import drift
from foresail_operator.runtimes import RUNTIMES, runtime_for
from foresail_operator.spec import RUNTIMES as SPEC_RUNTIMES
from foresail_operator.spec import SpecError, parse_spec
from foresail_operator.status import PodSummary, measured_cold_start, workload_status

EXAMPLES = Path(__file__).parents[2] / "examples"


def example(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / name).read_text())


def container(dep: dict) -> dict:
    return dep["spec"]["template"]["spec"]["containers"][0]


def test_every_runtime_in_the_schema_has_an_adapter():
    crd = yaml.safe_load((EXAMPLES.parent / "crds/llmdeployment.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    enum = schema["properties"]["spec"]["properties"]["runtime"]["properties"]["name"]["enum"]
    assert set(enum) == set(RUNTIMES) == set(SPEC_RUNTIMES)


def test_vllm_two_gpus_plan():
    spec = parse_spec(example("vllm-2gpu.yaml")["spec"])
    dep = plan.deployment("llama-8b", "ml", spec, runtime_for(spec))
    c = container(dep)
    assert c["command"][:3] == ["vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct"]
    assert c["command"][c["command"].index("--tensor-parallel-size") + 1] == "2"
    assert c["command"][-4:] == ["--max-model-len", "8192", "--gpu-memory-utilization", "0.92"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert c["resources"]["requests"] == {"cpu": "8", "memory": "64Gi"}
    env = {e["name"]: e for e in c["env"]}
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "token"}
    assert env["VLLM_LOGGING_LEVEL"]["value"] == "INFO"
    pod = dep["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["model-cache"]["persistentVolumeClaim"]["claimName"] == "model-cache"
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["priorityClassName"] == "inference"
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert pod["topologySpreadConstraints"][0]["labelSelector"] == {"matchLabels": plan.selector("llama-8b")}
    assert pod["terminationGracePeriodSeconds"] >= 60
    assert c["readinessProbe"]["httpGet"]["path"] == "/health"
    assert c["startupProbe"]["failureThreshold"] * c["startupProbe"]["periodSeconds"] >= 1800
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and annotations["prometheus.io/port"] == "8000"
    assert "replicas" not in dep["spec"]


@pytest.mark.parametrize("drain, runtime", [(None, "foresail"), (600, "foresail"), (600, "vllm")])
def test_a_replica_told_to_stop_serves_while_its_endpoints_go_then_drains(drain, runtime):
    """preStop keeps serving for PRE_STOP_S; then SIGTERM, and runtime.drainSeconds to finish what is in
    flight (the foresail server is told so), within the pod's grace period."""
    spec = {"model": {"source": "a"}, "runtime": {"name": runtime}}
    if drain is not None:
        spec["runtime"]["drainSeconds"] = drain
    parsed = parse_spec(spec)
    pod = plan.deployment("m", "ns", parsed, runtime_for(parsed))["spec"]["template"]["spec"]
    drain_s = drain if drain is not None else 110
    assert container({"spec": {"template": {"spec": pod}}})["lifecycle"]["preStop"] == \
        {"exec": {"command": ["sleep", str(plan.PRE_STOP_S)]}}  # before Kubernetes 1.30: the image's sleep
    assert pod["terminationGracePeriodSeconds"] == plan.PRE_STOP_S + drain_s + plan.SHUTDOWN_S
    command = pod["containers"][0]["command"]
    if runtime == "foresail":
        assert command[command.index("--drain-timeout") + 1] == str(drain_s)
    else:
        assert "--drain-timeout" not in command


def test_foresail_runtime_is_least_privilege():
    spec = parse_spec(example("minimal.yaml")["spec"])
    dep = plan.deployment("tiny", "default", spec, runtime_for(spec))
    c = container(dep)
    assert c["command"][:4] == ["foresail", "serve", "--model", "builtin:tiny"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert c["securityContext"]["runAsNonRoot"] is True
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert dep["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert "nvidia.com/gpu" not in c["resources"].get("limits", {})
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "foresail"
    assert labels["app.kubernetes.io/instance"] == "tiny"
    assert dep["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_the_foresail_server_listens_on_ipv4_and_ipv6():
    # --host 0.0.0.0 listened on IPv4 only: the pods were unreachable on an IPv6-only cluster ("": every address
    # of each family, tests/inference/test_lifecycle.py::test_with_an_empty_host_the_server_listens_on_ipv4_and_ipv6)
    spec = parse_spec(example("minimal.yaml")["spec"])
    command = container(plan.deployment("tiny", "default", spec, runtime_for(spec)))["command"]
    assert command[command.index("--host") + 1] == ""


def test_model_change_changes_the_plan_and_replicas_do_not():
    body = example("predictive.yaml")["spec"]
    a = plan.deployment("q", "d", parse_spec(body), runtime_for(parse_spec(body)))
    same = plan.deployment("q", "d", parse_spec({**body, "minReplicas": 3}), runtime_for(parse_spec(body)))
    other = {**body, "model": {**body["model"], "source": "Qwen/Qwen2.5-14B-Instruct"}}
    b = plan.deployment("q", "d", parse_spec(other), runtime_for(parse_spec(other)))
    assert a["metadata"]["annotations"] == same["metadata"]["annotations"]
    assert a["metadata"]["annotations"] != b["metadata"]["annotations"]


@pytest.mark.parametrize("cold_start, startup_s", [(120, 3600), (1800, 3600), (2700, 5400), (7200, 14400),
                                                    (7195, 14390)])
def test_the_startup_probe_waits_an_hour_or_twice_the_cold_start_assumed(cold_start: int, startup_s: int):
    body = {**example("minimal.yaml")["spec"], "autoscaling": {"forecast": {"coldStartSeconds": cold_start}}}
    probe = plan.deployment("q", "d", parse_spec(body), runtime_for(parse_spec(body)))[
        "spec"]["template"]["spec"]["containers"][0]["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] == startup_s


@pytest.mark.parametrize("source, expect_arg, volume", [
    ("pvc://weights/llama/8b", "/model-source/llama/8b", "model-source"),
    ("hf://org/model", "org/model", None),
    ("https://example.com/m/tiny.gguf?x=1", "/models-cache/downloads/tiny.gguf", None),
    ("/models/x", "/models/x", None),
])
def test_model_sources(source, expect_arg, volume):
    spec = parse_spec({"model": {"source": source}})
    dep = plan.deployment("m", "d", spec, runtime_for(spec))
    cmd = container(dep)["command"]
    assert cmd[cmd.index("--model") + 1] == expect_arg
    names = {v["name"] for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volume is None or volume in names
    init = dep["spec"]["template"]["spec"].get("initContainers", [])
    assert bool(init) == source.startswith("https://")


def test_the_model_download_image_can_be_mirrored(monkeypatch):
    """FORESAIL_IMAGE_FETCH (the chart's runtimeImages.fetch) names the init container's image; curl's without it
    (curl checks TLS certificates, busybox's wget does not)."""
    spec = parse_spec({"model": {"source": "https://example.com/m/tiny.gguf"}})

    def fetch_image() -> str:
        config = OperatorConfig.from_env()
        pod = plan.deployment("m", "d", spec, runtime_for(spec), fetch_image=config.fetch_image)
        (init,) = pod["spec"]["template"]["spec"]["initContainers"]
        return init["image"]

    monkeypatch.delenv("FORESAIL_IMAGE_FETCH", raising=False)
    assert fetch_image() == "curlimages/curl:8.22.0"
    monkeypatch.setenv("FORESAIL_IMAGE_FETCH", "registry.internal/mirror/curl:8.22.0")
    assert fetch_image() == "registry.internal/mirror/curl:8.22.0"


def test_image_override_order():
    spec = parse_spec({"model": {"source": "a/b"}, "runtime": {"name": "tgi"}})
    assert runtime_for(spec).image == RUNTIMES["tgi"].image
    assert runtime_for(spec, {"tgi": "mirror/tgi:1"}).image == "mirror/tgi:1"
    spec = parse_spec({"model": {"source": "a/b"}, "runtime": {"name": "tgi", "image": "mine:2"}})
    assert runtime_for(spec, {"tgi": "mirror/tgi:1"}).image == "mine:2"


@pytest.mark.parametrize("bad, field", [
    ({}, "spec.model.source"),
    ({"model": {"source": "a"}, "runtime": {"name": "llamacpp"}}, "spec.runtime.name"),
    ({"model": {"source": "a"}, "minReplicas": 5, "maxReplicas": 2}, "spec.minReplicas"),
    ({"model": {"source": "a"}, "minReplicas": 0}, "spec.minReplicas may be 0 only with spec.autoscaling.scaleToZero"),
    ({"model": {"source": "a"}, "autoscaling": {"mode": "fast"}}, "spec.autoscaling.mode"),
    ({"model": {"source": "a"}, "autoscaling": {"forecast": {"horizon": "soon"}}}, "horizon"),
    ({"model": {"source": "a"}, "resources": {"gpus": 2}}, "spec.resources.gpus"),
    ({"model": {"source": "a"}, "runtime": {"name": "vllm"},
      "resources": {"gpus": 2, "gpuResource": "nvidia.com/mig-3g.40gb"}}, "spec.resources.gpus: a process uses"),
    ({"model": {"source": "a"}, "disruptionBudget": {"maxUnavailable": 0}}, "spec.disruptionBudget.maxUnavailable"),
    ({"model": {"source": "a"}, "disruptionBudget": {"maxUnavailable": "0%"}}, "spec.disruptionBudget.maxUnavailable"),
    ({"model": {"source": "a"}, "disruptionBudget": {"maxUnavailable": True}}, "spec.disruptionBudget.maxUnavailable"),
    ({"model": {"source": "a"}, "rollout": {"maxSurge": 0}}, "spec.rollout"),
    ({"model": {"source": "a"}, "rollout": {"maxSurge": "0%", "maxUnavailable": 0}}, "spec.rollout"),
    ({"model": {"source": "a"}, "rollout": {"maxUnavailable": -1}}, "spec.rollout.maxUnavailable"),
    ({"model": {"source": "a"}, "podMetadata": {"labels": {"not a key!": "x"}}}, "spec.podMetadata.labels"),
    ({"model": {"source": "a"}, "podMetadata": {"annotations": {"a/b/c": "x"}}}, "spec.podMetadata.annotations"),
    ({"model": {"source": "a"}, "podMetadata": {"labels": {"k" * 64: "x"}}}, "spec.podMetadata.labels"),
    ({"model": {"source": "a"}, "podMetadata": {"labels": {"Example.com/team": "x"}}}, "spec.podMetadata.labels"),
])
def test_spec_errors_name_the_field(bad, field):
    with pytest.raises(SpecError, match=field.replace(".", r"\.")):
        parse_spec(bad)


def test_gpus_are_asked_for_as_the_named_resource():
    """nvidia.com/gpu by default; a MIG slice or another vendor's resource when named."""
    for resources, name in (({"gpus": 1}, "nvidia.com/gpu"),
                            ({"gpus": 1, "gpuResource": "nvidia.com/mig-3g.40gb"}, "nvidia.com/mig-3g.40gb"),
                            ({"gpus": 4, "gpuResource": "amd.com/gpu"}, "amd.com/gpu")):
        spec = parse_spec({"model": {"source": "a"}, "runtime": {"name": "vllm"}, "resources": resources})
        limits = container(plan.deployment("m", "ns", spec, runtime_for(spec)))["resources"]["limits"]
        assert limits == {name: resources["gpus"]}


def test_node_disk_is_requested_and_limited_like_memory():
    spec = parse_spec({"model": {"source": "a"}, "resources": {"memory": "32Gi", "ephemeralStorage": "200Gi"}})
    resources = container(plan.deployment("m", "ns", spec, runtime_for(spec)))["resources"]
    assert resources["requests"] == resources["limits"] == {"memory": "32Gi", "ephemeral-storage": "200Gi"}


def test_more_than_one_gpu_is_for_the_runtimes_that_use_them():
    """The foresail runtime loads a model on one device; the others shard it over every GPU asked for."""
    for name in ("vllm", "tgi", "sglang"):
        assert parse_spec({"model": {"source": "a"}, "runtime": {"name": name}, "resources": {"gpus": 2}})
    assert parse_spec({"model": {"source": "a"}, "resources": {"gpus": 1}}).resources.gpus == 1


def test_the_disruption_budget_covers_the_pods_and_can_be_disabled():
    """By default a drain evicts one ready pod at a time; a percentage passes through; disabled: no budget."""
    spec = parse_spec({"model": {"source": "a"}})
    runtime = runtime_for(spec)
    budget = plan.disruption_budget("m", "ns", spec, runtime)
    assert budget["spec"]["maxUnavailable"] == 1
    assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    pods = plan.deployment("m", "ns", spec, runtime)["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pods.items()
    wider = parse_spec({"model": {"source": "a"}, "disruptionBudget": {"maxUnavailable": "25%"}})
    changed = plan.disruption_budget("m", "ns", wider, runtime)
    assert changed["spec"]["maxUnavailable"] == "25%"
    assert changed["metadata"]["annotations"] != budget["metadata"]["annotations"]  # the plan hash
    off = parse_spec({"model": {"source": "a"}, "disruptionBudget": {"enabled": False, "maxUnavailable": 0}})
    assert plan.disruption_budget("m", "ns", off, runtime) is None


def test_affinity_and_spread_pass_through_and_a_spread_counts_its_own_pods():
    """Placement reaches the pod spec; a spread constraint without a labelSelector gets the pods' own."""
    term = {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": plan.selector("m")}}
    anti = {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 50, "podAffinityTerm": term}]}}
    spread = [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"},
              {"maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
               "labelSelector": {"matchLabels": {"team": "ml"}}}]
    spec = parse_spec({"model": {"source": "a"}, "resources": {"affinity": anti, "topologySpreadConstraints": spread}})
    dep = plan.deployment("m", "ns", spec, runtime_for(spec))
    pod = dep["spec"]["template"]["spec"]
    assert pod["affinity"] == anti
    zone, host = pod["topologySpreadConstraints"]
    assert zone == {**spread[0], "labelSelector": {"matchLabels": plan.selector("m")}}
    assert zone["labelSelector"]["matchLabels"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert host == spread[1]
    bare = plan.deployment("m", "ns", parse_spec({"model": {"source": "a"}}), runtime_for(spec))
    assert not {"affinity", "topologySpreadConstraints"} & set(bare["spec"]["template"]["spec"])
    assert bare["metadata"]["annotations"] != dep["metadata"]["annotations"]  # placement is in the plan hash


def test_pod_metadata_pull_secrets_and_service_account_reach_the_pods():
    """Labels and annotations are added to the operator's own (which win); the runtime's pull secrets and
    ServiceAccount are the pod's, its API token still unmounted."""
    spec = parse_spec({"model": {"source": "a"},
                       "runtime": {"imagePullSecrets": [{"name": "registry"}], "serviceAccountName": "gcs-reader"},
                       "podMetadata": {"labels": {"team": "ml", "example.com/tier": "gold"},
                                       "annotations": {"sidecar.istio.io/inject": "false", "prometheus.io/port": "1"}}})
    dep = plan.deployment("m", "ns", spec, runtime_for(spec))
    meta, pod = dep["spec"]["template"]["metadata"], dep["spec"]["template"]["spec"]
    assert meta["labels"]["team"] == "ml" and meta["labels"]["example.com/tier"] == "gold"
    assert meta["labels"].items() >= plan.labels("m", runtime_for(spec)).items()
    assert meta["annotations"]["sidecar.istio.io/inject"] == "false"
    assert meta["annotations"]["prometheus.io/port"] == str(plan.PORT)  # Prometheus must find the metrics
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["serviceAccountName"] == "gcs-reader" and pod["automountServiceAccountToken"] is False
    assert dep["spec"]["selector"] == plan.deployment("m", "ns", parse_spec({"model": {"source": "a"}}),
                                                      runtime_for(spec))["spec"]["selector"]  # immutable


def test_a_rollout_adds_before_it_removes_unless_told_otherwise():
    """By default a rollout keeps every replica serving (surge 1); without a spare GPU, one goes first."""
    default = plan.deployment("m", "ns", parse_spec({"model": {"source": "a"}}), RUNTIMES["foresail"])
    assert default["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    tight = parse_spec({"model": {"source": "a"}, "rollout": {"maxSurge": 0, "maxUnavailable": "25%"}})
    assert plan.deployment("m", "ns", tight, RUNTIMES["foresail"])["spec"]["strategy"]["rollingUpdate"] == {
        "maxSurge": 0, "maxUnavailable": "25%"}


def test_env_from_and_mounts_reach_the_server_container():
    """envFrom passes through; each mount is a read-only volume of its ConfigMap or Secret."""
    env_from = [{"configMapRef": {"name": "engine-settings"}}, {"secretRef": {"name": "keys", "optional": True},
                                                                "prefix": "APP_"}]
    spec = parse_spec({"model": {"source": "a"}, "runtime": {"name": "vllm", "envFrom": env_from, "mounts": [
        {"path": "/etc/templates", "configMap": "chat-templates"}, {"path": "/etc/tls", "secret": "client-cert"}]}})
    dep = plan.deployment("m", "ns", spec, runtime_for(spec))
    c, pod = container(dep), dep["spec"]["template"]["spec"]
    assert c["envFrom"] == env_from
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounted = {m["mountPath"]: volumes[m["name"]] for m in c["volumeMounts"] if m.get("readOnly")}
    assert mounted["/etc/templates"]["configMap"] == {"name": "chat-templates"}
    assert mounted["/etc/tls"]["secret"] == {"secretName": "client-cert"}
    assert len(volumes) == len(pod["volumes"])  # volume names are unique
    assert "envFrom" not in container(plan.deployment("m", "ns", parse_spec({"model": {"source": "a"}}),
                                                      runtime_for(spec)))


def test_the_crd_keeps_mounts_off_every_path_the_operator_mounts():
    """The CRD's list of reserved mount paths covers each one a plan uses (with every option on)."""
    crd = (EXAMPLES.parent / "crds/llmdeployment.yaml").read_text()
    rule = next(line for line in crd.splitlines() if "'/model-source'" in line)
    spec = parse_spec({"model": {"source": "pvc://weights/m"}, "runtime": {"name": "vllm"}, "resources": {"gpus": 2}})
    for mount in container(plan.deployment("m", "ns", spec, runtime_for(spec)))["volumeMounts"]:
        assert f"'{mount['mountPath']}'" in rule


def _kubernetes_definition(name: str) -> dict:
    from kubernetes_validate import utils
    return utils.schema_contents("kubernetes-json-schema/v1.32.0-local/_definitions.json", "1.32.0")["$defs"][name]


def _same_fields(crd: dict, kube: dict, where: str) -> None:
    """Every field of a Kubernetes type, at every depth, is in the CRD's copy with the same type."""
    if "$ref" in kube:
        kube = _kubernetes_definition(kube["$ref"].rsplit("/", 1)[1])
    kube_type = kube["type"] if isinstance(kube["type"], str) else kube["type"][0]
    assert crd["type"] == kube_type, where
    if kube_type == "array":
        _same_fields(crd["items"], kube["items"], where + "[]")
    elif "properties" in kube:
        assert set(crd["properties"]) == set(kube["properties"]), where
        assert set(crd.get("required", ())) >= set(kube.get("required", ())), where
        for key, child in kube["properties"].items():
            _same_fields(crd["properties"][key], child, f"{where}.{key}")
    elif "additionalProperties" in kube:
        _same_fields(crd["additionalProperties"], kube["additionalProperties"], where + ".*")


def test_the_copied_kubernetes_schemas_keep_every_field():
    """The CRD copies core/v1 Affinity, TopologySpreadConstraint and EnvFromSource whole (it may require
    more): a field left out would be pruned."""
    crd = yaml.safe_load((EXAMPLES.parent / "crds/llmdeployment.yaml").read_text())
    resources = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["resources"]
    _same_fields(resources["properties"]["affinity"], _kubernetes_definition("io.k8s.api.core.v1.Affinity"), "affinity")
    _same_fields(resources["properties"]["topologySpreadConstraints"]["items"],
                 _kubernetes_definition("io.k8s.api.core.v1.TopologySpreadConstraint"), "topologySpreadConstraints[]")
    runtime = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["runtime"]
    _same_fields(runtime["properties"]["envFrom"]["items"], _kubernetes_definition("io.k8s.api.core.v1.EnvFromSource"),
                 "envFrom[]")


# Copies of Kubernetes types: `kubectl explain pod.spec...` describes their fields, and each one's own
# description says so.
KUBERNETES_TYPES = {".spec.runtime.env[].valueFrom", ".spec.runtime.envFrom[]", ".spec.resources.tolerations[]",
                    ".spec.resources.affinity", ".spec.resources.topologySpreadConstraints[]", ".metadata"}


def _undescribed(schema: dict, where: str) -> list[str]:
    """The fields under `where` without a description, outside the copies of Kubernetes types."""
    if where in KUBERNETES_TYPES:
        return []
    described = "description" in schema or where == "" or where.endswith("[]")  # an item: its list's description
    missing = [] if described else [where]
    for key, child in (schema.get("properties") or {}).items():
        missing += _undescribed(child, f"{where}.{key}")
    if isinstance(schema.get("items"), dict):
        missing += _undescribed(schema["items"], where + "[]")
    return missing


def test_kubectl_explain_describes_every_field():
    """Every field Foresail defines has a description (what `kubectl explain llmd.spec...` prints); each
    copy of a Kubernetes type points to the pod's own."""
    crd = yaml.safe_load((EXAMPLES.parent / "crds/llmdeployment.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema["description"]
    assert _undescribed(schema, "") == []
    for where in KUBERNETES_TYPES - {".metadata"}:
        node = schema
        for key in where.removesuffix("[]").strip(".").split("."):
            node = node["properties"][key.removesuffix("[]")]
            node = node["items"] if key.endswith("[]") else node
        assert "kubectl explain pod.spec" in node["description"], where


def test_horizon_auto_uses_the_measured_cold_start():
    spec = parse_spec({"model": {"source": "a"}, "autoscaling": {"intervalSeconds": 15}})
    assert spec.autoscaling.horizon_s(None) == 135
    assert spec.autoscaling.horizon_s(200) == 215
    assert spec.autoscaling.horizon_s(0.0) == 15  # a pod ready in the second it was created: measured, not unknown
    fixed = parse_spec({"model": {"source": "a"}, "autoscaling": {"forecast": {"horizon": "5m"}}})
    assert fixed.autoscaling.horizon_s(200) == 300


def pod(name, created, ready=None, waiting=None):
    status = {"conditions": [{"type": "Ready", "status": "True" if ready else "False",
                              "lastTransitionTime": ready}]}
    if waiting:
        status["containerStatuses"] = [{"name": "server", "state": {"waiting": waiting}}]
    return PodSummary.of({"metadata": {"name": name, "creationTimestamp": created}, "status": status})


def test_cold_start_is_the_median_of_recent_pods():
    pods = [pod("a", "2026-01-01T00:00:00Z", "2026-01-01T00:01:40Z"),
            pod("b", "2026-01-01T00:10:00Z", "2026-01-01T00:12:00Z"),
            pod("c", "2026-01-01T00:20:00Z", "2026-01-01T00:22:20Z"),
            pod("d", "2026-01-01T00:30:00Z")]
    assert measured_cold_start(pods) == 120.0
    assert measured_cold_start(pods[3:]) is None


def deployment(replicas, ready, updated=None, generation=2, observed=2):
    return {"metadata": {"generation": generation}, "spec": {"replicas": replicas},
            "status": {"replicas": replicas, "readyReplicas": ready, "observedGeneration": observed,
                       "updatedReplicas": replicas if updated is None else updated}}


def conditions(status):
    return {c["type"]: c for c in status["conditions"]}


def test_status_follows_the_deployment_and_keeps_transition_times():
    kw = dict(name="m", generation=3, pods=[], problems=[], autoscaling_on=True)
    scaling = workload_status(desired=3, deployment=deployment(3, 1), previous={}, **kw)
    c = conditions(scaling)
    assert (scaling["readyReplicas"], scaling["desiredReplicas"]) == (1, 3)
    assert c["Ready"]["status"] == "False" and c["Progressing"]["status"] == "True"
    assert c["MetricsAvailable"]["status"] == "Unknown"
    done = workload_status(desired=3, deployment=deployment(3, 3), previous=scaling, **kw)
    d = conditions(done)
    assert d["Ready"]["status"] == "True" and d["Progressing"]["status"] == "False"
    assert d["Degraded"]["lastTransitionTime"] == c["Degraded"]["lastTransitionTime"]
    assert all(cond["observedGeneration"] == 3 for cond in done["conditions"])


def test_pod_failures_degrade_with_the_kubelet_message():
    bad = pod("a", "2026-01-01T00:00:00Z", waiting={"reason": "ImagePullBackOff",
                                                    "message": 'Back-off pulling image "nope:1"'})
    status = workload_status(name="m", generation=1, desired=1, deployment=deployment(1, 0), pods=[bad],
                             problems=[], previous={}, autoscaling_on=False)
    degraded = conditions(status)["Degraded"]
    assert degraded["status"] == "True" and degraded["reason"] == "ImagePullFailed"
    assert "nope:1" in degraded["message"]
    assert conditions(status)["MetricsAvailable"]["reason"] == "AutoscalingOff"


def test_the_slo_attainment_target_turns_on_the_policys_governor():
    from foresail_operator.autoscaler import Loop

    base = {"model": {"source": "builtin:tiny"}}
    off = Loop(("ns", "a"), forecast_step_s=60.0).configure(parse_spec(base), None)
    assert off.slo_target == 0.0
    spec = parse_spec({**base, "autoscaling": {"slo": {"ttftSeconds": 1.5, "attainmentTarget": 0.99}}})
    on = Loop(("ns", "b"), forecast_step_s=60.0).configure(spec, None)
    assert (on.slo_target, on.slo_wait_s) == (0.99, 1.5)


def test_the_policy_judges_lone_outliers_over_the_rate_window_the_demand_is_read_through():
    """A counter glitch reaches the policy for as long as rate() reads it: a 5-min window spreads it over five
    forecast steps, which the policy must see as one run to let it go (bench.outlier at 300 s: 5,000 replicas
    held for an hour where it judged two steps)."""
    from foresail_operator.autoscaler import Loop

    spec = parse_spec({"model": {"source": "builtin:tiny"}})
    assert Loop(("ns", "a"), forecast_step_s=60.0).configure(spec, None).rate_window_s == 120.0  # the default
    loop = Loop(("ns", "b"), forecast_step_s=60.0, rate_window_s=300.0)
    assert loop.configure(spec, None).rate_window_s == 300.0
    assert loop.policy is not None and loop.policy._lone_steps == 5


def test_from_kubernetes_1_30_the_kubelet_sleeps_in_pre_stop():
    """No `sleep` binary needed in the runtime's image (distroless ones have none)."""
    spec = parse_spec({"model": {"source": "a"}})
    pod = plan.deployment("m", "ns", spec, runtime_for(spec), sleep_action=True)["spec"]["template"]["spec"]
    assert pod["containers"][0]["lifecycle"]["preStop"] == {"sleep": {"seconds": plan.PRE_STOP_S}}
    assert pod["terminationGracePeriodSeconds"] == plan.PRE_STOP_S + 110 + plan.SHUTDOWN_S


def test_only_a_planned_value_changed_or_removed_is_drift_not_what_the_server_adds_drops_or_rewrites():
    """A field the server left out on the operator's own write (`left`, see reconciler.left_out) is not drift; one
    missing otherwise is."""
    spec = parse_spec({"model": {"source": "a"}, "resources": {"cpu": "0.5", "memory": "1024Mi", "gpus": 1}})
    planned = plan.deployment("m", "ns", spec, runtime_for(spec))
    live = copy.deepcopy(planned)
    pod = live["spec"]["template"]["spec"]
    live["metadata"]["labels"]["added-by"] = "a-policy-engine"
    live["spec"]["paused"] = False
    pod.update(dnsPolicy="ClusterFirst", restartPolicy="Always")  # server defaults
    pod["containers"][0].update(imagePullPolicy="IfNotPresent", terminationMessagePath="/dev/termination-log")
    pod["containers"][0]["resources"] = {"requests": {"cpu": "500m", "memory": "1Gi"},  # canonical quantities
                                         "limits": {"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": "1"}}
    del pod["securityContext"]["seccompProfile"]  # dropped by a server that does not know it
    left = frozenset({"spec.template.spec.securityContext.seccompProfile"})
    assert drift(planned, live, left) is None
    assert drift(planned, live) == "spec.template.spec.securityContext.seccompProfile"  # removed by someone
    edited = copy.deepcopy(live)
    del edited["spec"]["template"]["spec"]["containers"][0]["lifecycle"]
    assert drift(planned, edited, left) == "spec.template.spec.containers[0].lifecycle"
    edited = copy.deepcopy(live)
    edited["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "2Gi"
    assert drift(planned, edited, left) == "spec.template.spec.containers[0].resources.limits.memory"
    edited = copy.deepcopy(live)
    edited["metadata"]["labels"]["app.kubernetes.io/instance"] = "other"
    assert drift(planned, edited, left) == "metadata.labels.app.kubernetes.io/instance"
    edited = copy.deepcopy(live)
    edited["spec"]["template"]["spec"]["volumes"].append({"name": "extra", "emptyDir": {}})
    assert drift(planned, edited, left) == "spec.template.spec.volumes"
