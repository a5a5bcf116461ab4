"""Property-based tests of the LLMDeployment schema against the API test server (hypothesis).

Specs are drawn from valid and invalid values of every field of crds/llmdeployment.yaml, with an
oracle of what the schema must refuse and which field the refusal must name. Whatever the server
accepts must parse (`parse_spec`) and plan (`plan.deployment`) into a Deployment that the server
accepts too (it validates built-ins against the Kubernetes 1.32 schemas); a sample is reconciled
by the running operator. One API server per module, not per example.
"""

from __future__ import annotations

import itertools
import signal
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from foresail.kubetest.testing import start_apiserver
from foresail_operator import plan
from foresail_operator.runtimes import runtime_for
from foresail_operator.spec import parse_spec
from tests.helpers import KubeServer, wait_for
from tests.operator.conftest import Operator
from tests.reliability.conftest import install_crds
from tests.reliability.support import DEPLOYS, LLMDS, condition

PDBS = "/apis/policy/v1/namespaces/default/poddisruptionbudgets"

OMIT = object()
_names = itertools.count()
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                             suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                    HealthCheck.too_slow])


def pick(valid: list[Any], invalid: list[tuple[Any, str]]) -> tuple[list[Any], list[tuple[Any, str]]]:
    """Valid values and (invalid value, the field a refusal must name) of one field."""
    return valid, invalid


def choose(field: tuple[list[Any], list[tuple[Any, str]]], bad: bool,
           omit: bool = True) -> st.SearchStrategy[tuple[Any, list[str]]]:
    """(value, fields a refusal must name); OMIT leaves the field out. Invalid values only if `bad`."""
    valid, invalid = field
    good: st.SearchStrategy[tuple[Any, list[str]]]
    good = st.sampled_from(([OMIT] if omit else []) + valid).map(lambda v: (v, []))
    return st.one_of(good, st.sampled_from(invalid).map(lambda vi: (vi[0], [vi[1]]))) if bad else good


FIELDS: dict[tuple[str, ...], tuple[list[Any], list[tuple[Any, str]]]] = {
    ("model", "revision"): pick(["main", "a" * 40], [("r" * 129, "spec.model.revision")]),
    ("model", "servedModelName"): pick(["chat", "my-model.v2"], [("n" * 129, "spec.model.servedModelName")]),
    ("model", "tokenSecretRef"): pick(
        [{"name": "hf"}, {"name": "hf", "key": "tok"}],
        [({}, "spec.model.tokenSecretRef.name"), ({"name": ""}, "spec.model.tokenSecretRef.name")]),
    ("model", "cache"): pick(
        [{"pvc": "weights"}, {"hostPath": "/var/cache/models"}],
        [({}, "spec.model.cache"), ({"pvc": "w", "hostPath": "/x"}, "spec.model.cache"),
         ({"hostPath": "relative/dir"}, "spec.model.cache.hostPath"),
         ({"hostPath": "/var/../etc"}, "spec.model.cache.hostPath")]),
    ("runtime", "name"): pick(["foresail", "vllm", "tgi", "sglang"], [("llamacpp", "spec.runtime.name"),
                                                                     ("", "spec.runtime.name")]),
    ("runtime", "image"): pick(["example.com/engine:1.2"], [("i" * 513, "spec.runtime.image")]),
    ("runtime", "args"): pick([["--max-model-len", "4096"], []], [(["x"] * 65, "spec.runtime.args"),
                                                                  ([7], "spec.runtime.args[0]")]),
    ("runtime", "env"): pick(
        [[{"name": "LOG_LEVEL", "value": "debug"}],
         [{"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
         [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]],
        [([{"name": "BAD NAME"}], "spec.runtime.env[0].name"), ([{"value": "v"}], "spec.runtime.env[0].name"),
         ([{"name": "K", "valueFrom": {"secretKeyRef": {"name": "HF_Token", "key": "k"}}}],
          "spec.runtime.env[0].valueFrom.secretKeyRef.name"),
         ([{"name": "K", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "a b"}}}],
          "spec.runtime.env[0].valueFrom.configMapKeyRef.key"),
         ([{"name": "K", "valueFrom": {"fieldRef": {"fieldPath": "status.phase"}}}],
          "spec.runtime.env[0].valueFrom.fieldRef.fieldPath"),
         ([{"name": "K", "valueFrom": {"resourceFieldRef": {"resource": "limits.pods"}}}],
          "spec.runtime.env[0].valueFrom.resourceFieldRef.resource")]),
    ("runtime", "envFrom"): pick(
        [[{"configMapRef": {"name": "settings"}}], [{"secretRef": {"name": "keys", "optional": True}, "prefix": "K_"}]],
        [([{}], "spec.runtime.envFrom[0]"),
         ([{"configMapRef": {"name": "a"}, "secretRef": {"name": "b"}}], "spec.runtime.envFrom[0]"),
         ([{"secretRef": {}}], "spec.runtime.envFrom[0].secretRef.name"),
         ([{"secretRef": {"name": "Keys"}}], "spec.runtime.envFrom[0].secretRef.name")]),
    ("runtime", "mounts"): pick(
        [[{"path": "/etc/templates", "configMap": "chat"}], [{"path": "/etc/a", "secret": "s"}, {"path": "/etc/b",
                                                                                             "configMap": "c"}]],
        [([{"path": "etc/x", "configMap": "c"}], "spec.runtime.mounts[0].path"),
         ([{"path": "/tmp/x", "configMap": "c"}], "spec.runtime.mounts[0].path"),
         ([{"path": "/models-cache", "secret": "s"}], "spec.runtime.mounts[0].path"),
         ([{"path": "/etc/x"}], "spec.runtime.mounts[0]"),
         ([{"path": "/etc/x", "configMap": "c"}, {"path": "/etc/x", "secret": "s"}], "spec.runtime.mounts")]),
    ("runtime", "drainSeconds"): pick([0, 110, 3600], [(-1, "spec.runtime.drainSeconds"),
                                                       (3601, "spec.runtime.drainSeconds"),
                                                       ("long", "spec.runtime.drainSeconds")]),
    ("runtime", "imagePullSecrets"): pick([[{"name": "registry"}], [{"name": "a"}, {"name": "b"}]],
                                          [([{}], "spec.runtime.imagePullSecrets[0].name"),
                                           ([{"name": ""}], "spec.runtime.imagePullSecrets[0].name")]),
    ("runtime", "serviceAccountName"): pick(["inference", "gcs.reader"],
                                            [("Inference", "spec.runtime.serviceAccountName"),
                                             ("a" * 254, "spec.runtime.serviceAccountName")]),
    ("rollout", "maxSurge"): pick([0, 2, "25%"], [(-1, "spec.rollout.maxSurge"), ("lots", "spec.rollout.maxSurge")]),
    ("rollout", "maxUnavailable"): pick([1, "0%", "100%"], [(-1, "spec.rollout.maxUnavailable"),
                                                          ("101%", "spec.rollout.maxUnavailable")]),
    ("podMetadata", "labels"): pick([{"team": "ml", "sidecar.istio.io/inject": "false"}, {"cost-center": ""}],
                                    [({"app.kubernetes.io/name": "x"}, "spec.podMetadata.labels"),
                                     ({"foresail.dev/llmdeployment": "x"}, "spec.podMetadata.labels"),
                                     ({"team": "not valid!"}, "spec.podMetadata.labels.team"),
                                     ({"team": "v" * 64}, "spec.podMetadata.labels.team")]),
    ("podMetadata", "annotations"): pick([{"example.com/owner": "ml team", "prometheus.io/scrape": "false"}],
                                         [({"k": 1}, "spec.podMetadata.annotations.k")]),
    ("resources", "gpus"): pick([0, 1, 8, 16], [(-1, "spec.resources.gpus"), (17, "spec.resources.gpus"),
                                               ("two", "spec.resources.gpus")]),
    ("resources", "ephemeralStorage"): pick(["200Gi", 10 ** 11], [("lots", "spec.resources.ephemeralStorage"),
                                                                  (-1, "spec.resources.ephemeralStorage")]),
    ("resources", "gpuResource"): pick(["amd.com/gpu", "nvidia.com/mig-3g.40gb"],
                                       [("gpu", "spec.resources.gpuResource"),
                                        ("nvidia.com/", "spec.resources.gpuResource")]),
    ("resources", "cpu"): pick(["500m", 4, "1.5", 0], [("lots", "spec.resources.cpu"), ("-1", "spec.resources.cpu"),
                                                        (0.5, "spec.resources.cpu"), (-1, "spec.resources.cpu")]),
    ("resources", "memory"): pick(["32Gi", "512Mi", 1073741824, "1G"], [("lots", "spec.resources.memory"),
                                                                         ("12 GB", "spec.resources.memory"),
                                                                         (-1, "spec.resources.memory")]),
    ("resources", "nodeSelector"): pick(
        [{"gpu": "a100"}, {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "pool": ""}],
        [({"gpu": 1}, "spec.resources.nodeSelector.gpu"),
         ({"nvidia.com/gpu.product": "NVIDIA A100 80GB"}, "spec.resources.nodeSelector.nvidia.com/gpu.product"),
         ({"gpu": "v" * 64}, "spec.resources.nodeSelector.gpu"),
         ({"GPU Model": "a100"}, "spec.resources.nodeSelector")]),
    ("resources", "tolerations"): pick(
        [[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
         [{"key": "k", "operator": "Equal", "value": "v", "effect": "NoExecute", "tolerationSeconds": 30}],
         [{"operator": "Exists"}], [{"key": "dedicated"}]],
        [([{"operator": "Maybe"}], "spec.resources.tolerations[0].operator"),
         ([{"tolerationSeconds": -1}], "spec.resources.tolerations[0].tolerationSeconds"),
         ([{"key": "gpu", "operator": "Exists", "value": "present"}], "spec.resources.tolerations[0].operator"),
         ([{"key": "gpu", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 60}],
          "spec.resources.tolerations[0].effect"),
         ([{"operator": "Equal", "value": "x"}], "spec.resources.tolerations[0].operator"),
         ([{"key": "gpu", "value": "a b"}], "spec.resources.tolerations[0].value")]),
    ("resources", "priorityClassName"): pick(["inference-high", "system-cluster-critical"],
                                             [("p" * 254, "spec.resources.priorityClassName"),
                                              ("High_Priority", "spec.resources.priorityClassName")]),
    ("resources", "affinity"): pick(
        [{"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {
            "topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"team": "ml"}}}}]}},
         {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
             {"matchExpressions": [{"key": "nvidia.com/gpu.memory", "operator": "Gt", "values": ["40000"]}]}]}}},
         {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
             {"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["a100", "h100"]},
                                   {"key": "spot", "operator": "DoesNotExist"}]}]}}}],
        [({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{}]}},
          "spec.resources.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey"),
         ({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 0, "preference": {}}]}},
          "spec.resources.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].weight"),
         ({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
             {"matchExpressions": [{"key": "gpu", "operator": "Near"}]}]}}},
          "spec.resources.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
          ".matchExpressions[0].operator"),
         ({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
             {"matchExpressions": [{"key": "gpu", "operator": "In"}]}]}}},
          "spec.resources.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
          ".matchExpressions[0].values"),
         ({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
             {"matchExpressions": [{"key": "gpu", "operator": "Exists", "values": ["a100"]}]}]}}},
          "spec.resources.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
          ".matchExpressions[0].values"),
         ({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
             "topologyKey": "zone", "labelSelector": {"matchExpressions": [{"key": "team", "operator": "NotIn"}]}}]}},
          "spec.resources.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].labelSelector"
          ".matchExpressions[0].values")]),
    ("resources", "topologySpreadConstraints"): pick(
        [[{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}],
         [{"maxSkew": 2, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule", "minDomains": 2,
           "matchLabelKeys": ["pod-template-hash"], "nodeTaintsPolicy": "Honor"}]],
        [([{"maxSkew": 0, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}],
          "spec.resources.topologySpreadConstraints[0].maxSkew"),
         ([{"maxSkew": 2**31, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}],
          "spec.resources.topologySpreadConstraints[0].maxSkew"),
         ([{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "Never"}],
          "spec.resources.topologySpreadConstraints[0].whenUnsatisfiable"),
         ([{"maxSkew": 1, "whenUnsatisfiable": "ScheduleAnyway"}],
          "spec.resources.topologySpreadConstraints[0].topologyKey"),
         ([{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway", "minDomains": 2}],
          "spec.resources.topologySpreadConstraints[0]")]),
    ("autoscaling", "mode"): pick(["predictive", "reactive", "advisory", "off"], [("fast", "spec.autoscaling.mode")]),
    ("autoscaling", "demandUnit"): pick(["requests", "tokens"], [("bytes", "spec.autoscaling.demandUnit")]),
    ("autoscaling", "intervalSeconds"): pick([5, 15, 600], [(4, "spec.autoscaling.intervalSeconds"),
                                                           (601, "spec.autoscaling.intervalSeconds"),
                                                           (7.5, "spec.autoscaling.intervalSeconds")]),
    ("autoscaling", "slo"): pick(
        [{"ttftSeconds": 0.5, "capacityPerReplica": 3.5, "attainmentTarget": 0.99, "kvCacheSaturation": 1},
         {"ttftSeconds": 600, "attainmentTarget": 0.5, "kvCacheSaturation": 0.1}],
        [({"ttftSeconds": 0}, "spec.autoscaling.slo.ttftSeconds"),
         ({"attainmentTarget": 1.0}, "spec.autoscaling.slo.attainmentTarget"),
         ({"attainmentTarget": 0.3}, "spec.autoscaling.slo.attainmentTarget"),
         ({"capacityPerReplica": 0}, "spec.autoscaling.slo.capacityPerReplica"),
         ({"kvCacheSaturation": 1.5}, "spec.autoscaling.slo.kvCacheSaturation"),
         ({"kvCacheSaturation": 0}, "spec.autoscaling.slo.kvCacheSaturation")]),
    ("autoscaling", "forecast"): pick(
        [{"horizon": "5m", "coldStartSeconds": 300, "quantile": 0.5}, {"horizon": "90s", "quantile": 0.99}],
        [({"horizon": "soon"}, "spec.autoscaling.forecast.horizon"),
         ({"quantile": 1.0}, "spec.autoscaling.forecast.quantile"),
         ({"coldStartSeconds": 0}, "spec.autoscaling.forecast.coldStartSeconds")]),
    ("disruptionBudget", "enabled"): pick([True, False], [("yes", "spec.disruptionBudget.enabled")]),
    ("disruptionBudget", "maxUnavailable"): pick(
        [1, 3, "25%", "100%"],
        [(0, "spec.disruptionBudget.maxUnavailable"), ("0%", "spec.disruptionBudget.maxUnavailable"),
         ("101%", "spec.disruptionBudget.maxUnavailable"), ("half", "spec.disruptionBudget.maxUnavailable"),
         (1.5, "spec.disruptionBudget.maxUnavailable")]),
    ("autoscaling", "schedules"): pick(
        [[{"start": "09:00", "end": "18:00", "minReplicas": 1}],
         [{"name": "nightly", "days": ["Sat", "Sun"], "start": "22:30", "end": "02:00", "timeZone": "America/New_York",
           "minReplicas": 1}],
         [{"name": "hourly", "start": "*:55", "end": "*:10", "minReplicas": 2}]],
        [([{"start": "24:00", "end": "18:00", "minReplicas": 1}], "spec.autoscaling.schedules[0].start"),
         ([{"start": "*:60", "end": "*:10", "minReplicas": 1}], "spec.autoscaling.schedules[0].start"),
         ([{"start": "*:55", "end": "18:00", "minReplicas": 1}], "spec.autoscaling.schedules[0]"),
         ([{"start": "09:00", "end": "09:00", "minReplicas": 1}], "spec.autoscaling.schedules[0]"),
         ([{"start": "09:00", "end": "18:00", "minReplicas": 0}], "spec.autoscaling.schedules[0].minReplicas"),
         ([{"start": "09:00", "end": "18:00"}], "spec.autoscaling.schedules[0].minReplicas"),
         ([{"start": "09:00", "end": "18:00", "minReplicas": 1, "days": []}], "spec.autoscaling.schedules[0].days"),
         ([{"start": "09:00", "end": "18:00", "minReplicas": 1, "timeZone": "not a zone"}],
          "spec.autoscaling.schedules[0].timeZone")]),
    ("autoscaling", "scaleDown"): pick(
        [{"stabilizationSeconds": 0}, {"stabilizationSeconds": 3600}],
        [({"stabilizationSeconds": 3601}, "spec.autoscaling.scaleDown.stabilizationSeconds")]),
}
SOURCES = pick(["org/name", "hf://org/name", "/models/x", "pvc://weights/llama", "https://example.com/m.gguf",
                "builtin:tiny", "gpt2"],
               [("", "spec.model.source"), ("not a model!", "spec.model.source"),
                ("pvc://Bad_Claim", "spec.model.source"), ("s" * 513, "spec.model.source"),
                ("builtin:huge", "spec.model.source")])
# OMIT or a value (Any: the sentinel is an object, told apart by `is`)
COUNTS: st.SearchStrategy[Any] = st.one_of(st.just(OMIT), st.integers(-2, 12), st.sampled_from([1000, 1001]))
SCALE_TO_ZERO: st.SearchStrategy[Any] = st.sampled_from([OMIT, {"enabled": True}, {"enabled": False, "idleSeconds": 30},
                                                          {"enabled": True, "idleSeconds": 29}])


@st.composite
def specs(draw: st.DrawFn, bad: bool | None = None) -> tuple[dict[str, Any], list[str]]:
    """(spec, the fields a refusal must name; empty when the schema must accept the spec)."""
    if bad is None:
        bad = draw(st.integers(0, 4)) < 2
    errors: list[str] = []
    spec: dict[str, Any] = {}
    if bad and draw(st.integers(0, 9)) == 0:
        if draw(st.booleans()):
            return {"minReplicas": 1}, ["spec.model"]
        spec["model"], errors = {}, ["spec.model.source"]
    else:
        source, errs = draw(choose(SOURCES, bad, omit=False))
        spec["model"] = {"source": source}
        errors += errs
    chosen = draw(st.lists(st.sampled_from(sorted(FIELDS)), unique=True, max_size=8))
    for path in chosen:
        value, errs = draw(choose(FIELDS[path], bad))
        if value is not OMIT:
            spec.setdefault(path[0], {})[path[1]] = value
            errors += errs
    gpus, runtime = spec.get("resources", {}).get("gpus", 0), spec.get("runtime", {}).get("name", "foresail")
    mig = str(spec.get("resources", {}).get("gpuResource", "")).startswith("nvidia.com/mig-")
    if isinstance(gpus, int) and gpus > 1 and (runtime == "foresail" or mig):  # one GPU, or one MIG slice a process
        errors.append("spec.resources.gpus")
    if spec["model"].get("source") == "builtin:tiny" and runtime != "foresail":  # the foresail server's own model
        errors.append("spec.model.source")
    rollout = spec.get("rollout", {})
    if rollout and all(str(rollout.get(k, d)) in ("0", "0%") for k, d in (("maxSurge", 1), ("maxUnavailable", 0))):
        errors.append("spec.rollout")  # nothing could be replaced
    stz = draw(SCALE_TO_ZERO)
    if stz is not OMIT:
        spec.setdefault("autoscaling", {})["scaleToZero"] = stz
        if stz.get("idleSeconds", 30) < 30:
            errors.append("spec.autoscaling.scaleToZero.idleSeconds")
    if bad:
        for key, low in (("minReplicas", 0), ("maxReplicas", 1), ("replicas", 0)):
            value = draw(COUNTS)
            if value is not OMIT:
                spec[key] = value
                if not low <= value <= 1000:
                    errors.append(f"spec.{key}")
    else:  # consistent counts, each possibly left to its default
        low = draw(st.integers(0, 5))
        high = draw(st.integers(max(low, 1), 12))
        replicas = draw(st.one_of(st.just(OMIT), st.integers(low, high)))
        for key, value, default in (("minReplicas", low, 1), ("maxReplicas", high, 10), ("replicas", replicas, None)):
            if value is not OMIT and (value != default or draw(st.booleans())):
                spec[key] = value
    if draw(st.booleans()):
        spec["notAField"] = {"x": 1}  # unknown fields are pruned, not refused
    low, high = spec.get("minReplicas", 1), spec.get("maxReplicas", 10)
    if low > high:
        errors.append("spec.minReplicas")
    if low == 0 and (stz is OMIT or stz.get("enabled") is not True):  # at zero only the activator wakes one
        errors.append("spec.minReplicas")
    if "replicas" in spec and spec.get("autoscaling", {}).get("mode", "predictive") == "off":  # else an override
        to_zero = (stz is not OMIT and stz.get("enabled") is True and spec["replicas"] == 0)
        if spec["replicas"] > high or (spec["replicas"] < low and not to_zero):
            errors.append("spec.replicas")
    return spec, errors


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeServer]:
    """One API test server for the module (no simulated pods: only admission is exercised)."""
    with start_apiserver(tmp_path_factory.mktemp("crd-properties"), simulate_pods=False) as srv:
        yield KubeServer(srv, install_crds(srv))


def post(server, path: str, body: dict) -> requests.Response:
    return requests.post(server.url + path, json=body, timeout=10)


def doc(name: str, spec: dict) -> dict:
    return {"apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": name}, "spec": spec}


@PROPERTY_SETTINGS
@given(case=specs())
def test_the_schema_accepts_exactly_the_valid_specs_and_names_the_field(server, case):
    spec, errors = case
    name = f"p{next(_names)}"
    rsp = post(server, LLMDS, doc(name, spec))
    event("must be refused" if errors else "must be accepted")
    if errors:
        assert rsp.status_code == 422, f"{spec} should be refused ({errors}) but got {rsp.status_code}"
        message = rsp.json()["message"]
        assert any(field in message for field in errors), f"{message!r} names none of {errors}"
        return
    assert rsp.status_code == 201, f"a valid spec was refused: {rsp.text[:600]}"
    stored = rsp.json()["spec"]
    assert "notAField" not in stored
    parsed = parse_spec(stored)  # must not raise on anything the schema let through
    assert parsed.min_replicas <= parsed.max_replicas
    deployment = plan.deployment(name, "default", parsed, runtime_for(parsed))
    asked = parsed.replicas if parsed.replicas is not None else parsed.min_replicas
    deployment["spec"]["replicas"] = parsed.clamp(asked)
    created = post(server, DEPLOYS, deployment)
    assert created.status_code == 201, f"the planned Deployment for {stored} was refused: {created.text[:800]}"
    server.kube.delete(f"{DEPLOYS}/{name}")
    budget = plan.disruption_budget(name, "default", parsed, runtime_for(parsed))
    assert (budget is None) == (stored["disruptionBudget"].get("enabled") is False)
    if budget is not None:
        created = post(server, PDBS, budget)
        assert created.status_code == 201, f"the planned budget for {stored} was refused: {created.text[:800]}"
        server.kube.delete(f"{PDBS}/{name}")
    server.kube.delete(f"{LLMDS}/{name}")


@pytest.fixture(scope="module")
def operated(server, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """The module's server with the real operator running against it."""
    log = Path(tmp_path_factory.mktemp("operator")) / "operator.log"
    op = Operator(server.kubeconfig, log, "--standalone").start()
    yield server, op
    op.kill(signal.SIGKILL)
    print(log.read_text()[-4000:])


@settings(PROPERTY_SETTINGS, max_examples=6, phases=[Phase.generate])  # no shrinking: each example costs seconds
@given(case=specs(bad=False).filter(lambda case: not case[1]))
def test_the_operator_reconciles_a_sample_of_valid_specs(operated, case):
    server, op = operated
    spec, errors = case
    assert not errors
    name = f"r{next(_names)}"
    created = server.kube.create(LLMDS, doc(name, spec))
    parsed = parse_spec(created["spec"])
    want = plan.deployment(name, "default", parsed, runtime_for(parsed))

    def reconciled() -> tuple[dict[str, Any], dict[str, Any]] | dict[str, Any] | bool:
        obj, dep = server.kube.get(f"{LLMDS}/{name}"), server.kube.get(f"{DEPLOYS}/{name}")
        return (dep is not None and obj.get("status", {}).get("observedGeneration") == obj["metadata"]["generation"]
                and condition(obj, "Ready") and (obj, dep))

    obj, dep = wait_for(reconciled, timeout=20, what=f"{name} reconciled")
    assert dep["spec"]["template"]["spec"]["containers"][0]["command"] == \
        want["spec"]["template"]["spec"]["containers"][0]["command"]
    assert condition(obj, "Degraded").get("reason") not in ("ReconcileFailed", "InvalidSpec"), obj["status"]
    expected = parsed.fixed_replicas() if not parsed.autoscaling_on else parsed.clamp(
        parsed.replicas if parsed.replicas is not None else parsed.min_replicas)
    assert dep["spec"]["replicas"] == expected
    assert op.alive()
    server.kube.delete(f"{LLMDS}/{name}")


def test_a_malformed_env_value_from_is_refused_by_the_schema(server):
    spec = {"model": {"source": "org/name"},
            "runtime": {"env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": "not-an-object"}}]}}
    rsp = post(server, LLMDS, doc("env-value-from", spec))
    if rsp.status_code == 201:  # show what accepting it costs: the Deployment can never be created
        parsed = parse_spec(rsp.json()["spec"])
        deployment = plan.deployment("env-value-from", "default", parsed, runtime_for(parsed))
        created = post(server, DEPLOYS, deployment)
        server.kube.delete(f"{LLMDS}/env-value-from")
        assert created.status_code == 201, f"accepted, but its Deployment is refused: {created.json()['message']}"
    assert rsp.status_code == 422 and "spec.runtime.env[0].valueFrom" in rsp.json()["message"]
