"""The LLMDeployment CRD refuses the pod settings kube-apiserver would refuse in the Deployment the operator
writes from them (pkg/apis/core/validation), naming the field, so that `kubectl apply` fails at once instead of
the operator reporting ReconcileFailed every 30 s. Each refusal has a valid neighbour that is accepted and
planned into a Deployment the API test server accepts. `parse_spec` refuses the same specs (an operator newer
than the CRD installed: Helm does not upgrade CRDs), naming the same field.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from foresail.kubetest.testing import start_apiserver
from foresail_operator.spec import SpecError, parse_spec
from tests.helpers import ROOT, KubeServer
from tests.operator.conftest import assert_applies_and_plans, doc, post
from tests.reliability.conftest import install_crds
from tests.reliability.support import LLMDS

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
_names = itertools.count()
TERM = "spec.resources.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0]"
POD_TERM = "spec.resources.affinity.podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0]"


def node_affinity(*requirements: dict[str, Any], fields: bool = False) -> dict[str, Any]:
    term = {"matchFields" if fields else "matchExpressions": list(requirements)}
    return {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [term]}}}}


def pod_anti_affinity(selector: dict[str, Any], topology_key: str = "kubernetes.io/hostname") -> dict[str, Any]:
    return {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": selector, "topologyKey": topology_key}]}}}


DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
FIELD_REF = "spec.runtime.env[0].valueFrom.fieldRef"
FIELD_PATHS = ("metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName",
               "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs", "metadata.labels['team']",
               "metadata.labels['app.kubernetes.io/name']", "metadata.annotations['Example.com/Owner_ID']")


def env(**value_from: dict[str, Any]) -> dict[str, Any]:
    return {"env": [{"name": "X", "valueFrom": value_from}]}


# id: (spec.resources or spec.runtime or spec.model, what it holds, the field a refusal names, words of the message)
REFUSED: dict[str, tuple[str, dict[str, Any], str, str]] = {
    # the seven of the review (r4_crd_accepts.py)
    "toleration-exists-with-value": ("resources", {"tolerations": [
        {"key": "nvidia.com/gpu", "operator": "Exists", "value": "present", "effect": "NoSchedule"}]},
        "spec.resources.tolerations[0].operator", "value must be empty when `operator` is 'Exists'"),
    "toleration-seconds-noschedule": ("resources", {"tolerations": [
        {"key": "gpu", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 60}]},
        "spec.resources.tolerations[0].effect", "effect must be 'NoExecute' when `tolerationSeconds` is set"),
    "toleration-no-key-equal": ("resources", {"tolerations": [{"operator": "Equal", "value": "x"}]},
                                "spec.resources.tolerations[0].operator",
                                "operator must be Exists when `key` is empty"),
    "nodeselector-value-space": ("resources", {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA A100 80GB"}},
                                 "spec.resources.nodeSelector", "should match"),
    "affinity-in-without-values": ("resources", node_affinity({"key": "gpu", "operator": "In"}),
                                   f"{TERM}.matchExpressions[0].values",
                                   "values must be given when `operator` is 'In' or 'NotIn'"),
    "priorityclass-uppercase": ("resources", {"priorityClassName": "High_Priority"},
                                "spec.resources.priorityClassName", "should match"),
    "cpu-negative-int": ("resources", {"cpu": -1}, "spec.resources.cpu", "greater than or equal to 0"),
    # their neighbours
    "toleration-seconds-without-effect": ("resources", {"tolerations": [
        {"key": "gpu", "operator": "Exists", "tolerationSeconds": 60}]}, "spec.resources.tolerations[0].effect",
        "effect must be 'NoExecute'"),
    "toleration-no-key-no-operator": ("resources", {"tolerations": [{"effect": "NoSchedule"}]},
                                      "spec.resources.tolerations[0].operator", "operator must be Exists"),
    "toleration-empty-key-equal": ("resources", {"tolerations": [{"key": "", "operator": "Equal"}]},
                                   "spec.resources.tolerations[0].operator", "operator must be Exists"),
    "toleration-bad-key": ("resources", {"tolerations": [{"key": "gpu model", "operator": "Exists"}]},
                           "spec.resources.tolerations[0].key", "should match"),
    "toleration-bad-value": ("resources", {"tolerations": [{"key": "gpu", "value": "a100 80gb"}]},
                             "spec.resources.tolerations[0].value", "should match"),
    "nodeselector-value-too-long": ("resources", {"nodeSelector": {"pool": "p" * 64}},
                                    "spec.resources.nodeSelector", "63"),
    "nodeselector-bad-key": ("resources", {"nodeSelector": {"GPU Model": "a100"}},
                             "spec.resources.nodeSelector", "each nodeSelector key must be a label key"),
    "affinity-notin-empty-values": ("resources", node_affinity({"key": "gpu", "operator": "NotIn", "values": []}),
                                    f"{TERM}.matchExpressions[0].values", "values must be given"),
    "affinity-exists-with-values": ("resources", node_affinity({"key": "gpu", "operator": "Exists", "values": ["a"]}),
                                    f"{TERM}.matchExpressions[0].values",
                                    "values may not be given when `operator` is 'Exists' or 'DoesNotExist'"),
    "affinity-gt-two-values": ("resources", node_affinity({"key": "mem", "operator": "Gt", "values": ["1", "2"]}),
                               f"{TERM}.matchExpressions[0].values", "single value"),
    "affinity-match-fields-in-without-values": ("resources", node_affinity(
        {"key": "metadata.name", "operator": "In"}, fields=True), f"{TERM}.matchFields[0].values", "must be given"),
    "affinity-bad-key": ("resources", node_affinity({"key": "gpu model", "operator": "Exists"}),
                         f"{TERM}.matchExpressions[0].key", "should match"),
    "pod-affinity-in-without-values": ("resources", pod_anti_affinity(
        {"matchExpressions": [{"key": "team", "operator": "In"}]}),
        f"{POD_TERM}.labelSelector.matchExpressions[0].values", "values must be given"),
    "pod-affinity-doesnotexist-with-values": ("resources", pod_anti_affinity(
        {"matchExpressions": [{"key": "team", "operator": "DoesNotExist", "values": ["ml"]}]}),
        f"{POD_TERM}.labelSelector.matchExpressions[0].values", "values may not be given"),
    "pod-affinity-bad-label-value": ("resources", pod_anti_affinity({"matchLabels": {"team": "m l"}}),
                                     f"{POD_TERM}.labelSelector.matchLabels", "should match"),
    "pod-affinity-bad-label-key": ("resources", pod_anti_affinity({"matchLabels": {"my team": "ml"}}),
                                   f"{POD_TERM}.labelSelector.matchLabels", "each matchLabels key must be a label key"),
    "pod-affinity-bad-topology-key": ("resources", pod_anti_affinity({"matchLabels": {"team": "ml"}}, "host name"),
                                      f"{POD_TERM}.topologyKey", "should match"),
    "spread-in-without-values": ("resources", {"topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway",
         "labelSelector": {"matchExpressions": [{"key": "team", "operator": "In"}]}}]},
        "spec.resources.topologySpreadConstraints[0].labelSelector.matchExpressions[0].values", "values must be given"),
    "priorityclass-too-long": ("resources", {"priorityClassName": "p" * 254}, "spec.resources.priorityClassName",
                               "253"),
    "memory-negative-int": ("resources", {"memory": -1}, "spec.resources.memory", "greater than or equal to 0"),
    "ephemeral-storage-negative-int": ("resources", {"ephemeralStorage": -1}, "spec.resources.ephemeralStorage",
                                       "greater than or equal to 0"),
    "cpu-malformed": ("resources", {"cpu": "1 cpu"}, "spec.resources.cpu", "should match"),
    "memory-negative-string": ("resources", {"memory": "-1Gi"}, "spec.resources.memory", "should match"),
    # Kubernetes' decimal kilo is a lower-case k: 32K is no quantity (Ki is)
    "memory-upper-case-k": ("resources", {"memory": "32K"}, "spec.resources.memory", "should match"),
    "ephemeral-storage-lower-case-ki": ("resources", {"ephemeralStorage": "200gi"},
                                        "spec.resources.ephemeralStorage", "should match"),
    # a divisor's suffixes are Kubernetes' too: 1mi (milli is no binary prefix) and 1ki are no quantities
    "divisor-milli-binary": ("runtime", env(resourceFieldRef={"resource": "limits.memory", "divisor": "1mi"}),
                             "spec.runtime.env[0].valueFrom.resourceFieldRef.divisor", "should match"),
    "divisor-lower-case-ki": ("runtime", env(resourceFieldRef={"resource": "limits.memory", "divisor": "1ki"}),
                              "spec.runtime.env[0].valueFrom.resourceFieldRef.divisor", "should match"),
    # kube-apiserver takes only some divisors (validateContainerResourceDivisor): milli is no divisor of bytes, and a
    # cpu count is divided by 1 or 1m
    "divisor-milli-of-memory": ("runtime", env(resourceFieldRef={"resource": "limits.memory", "divisor": "1m"}),
                                "spec.runtime.env[0].valueFrom.resourceFieldRef.divisor", "1Ki, 1Mi, 1Gi"),
    "divisor-kilo-of-cpu": ("runtime", env(resourceFieldRef={"resource": "requests.cpu", "divisor": "1k"}),
                            "spec.runtime.env[0].valueFrom.resourceFieldRef.divisor", "must be 1m or 1 for limits.cpu"),
    "divisor-int-2-of-cpu": ("runtime", env(resourceFieldRef={"resource": "limits.cpu", "divisor": 2}),
                             "spec.runtime.env[0].valueFrom.resourceFieldRef.divisor", "must be 1m or 1 for"),
    "divisor-not-a-unit": ("runtime", env(resourceFieldRef={"resource": "limits.ephemeral-storage",
                                                            "divisor": "512Mi"}),
                           "spec.runtime.env[0].valueFrom.resourceFieldRef.divisor", "1Ki, 1Mi, 1Gi"),
    "divisor-hugepages-milli": ("runtime", env(resourceFieldRef={"resource": "limits.hugepages-2Mi", "divisor": "1m"}),
                                "spec.runtime.env[0].valueFrom.resourceFieldRef.divisor", "1Ki, 1Mi, 1Gi"),
    # the real server refuses a pod whose image has leading or trailing whitespace (validateContainersOnlyForPod)
    "image-trailing-space": ("runtime", {"image": "vllm/vllm-openai:v0.6 "}, "spec.runtime.image",
                             "must not have leading or trailing whitespace"),
    "image-leading-newline": ("runtime", {"image": "\nvllm/vllm-openai:v0.6"}, "spec.runtime.image",
                              "must not have leading or trailing whitespace"),
    "secret-key-ref-bad-name": ("runtime", env(secretKeyRef={"name": "HF_Token", "key": "token"}),
                                "spec.runtime.env[0].valueFrom.secretKeyRef.name", "should match"),
    "secret-key-ref-no-name": ("runtime", env(secretKeyRef={"key": "token"}),
                               "spec.runtime.env[0].valueFrom.secretKeyRef.name", "Required value"),
    "secret-key-ref-bad-key": ("runtime", env(secretKeyRef={"name": "hf", "key": "a/b"}),
                               "spec.runtime.env[0].valueFrom.secretKeyRef.key", "should match"),
    "config-map-key-ref-bad-name": ("runtime", env(configMapKeyRef={"name": "my config", "key": "k"}),
                                    "spec.runtime.env[0].valueFrom.configMapKeyRef.name", "should match"),
    "config-map-key-ref-bad-key": ("runtime", env(configMapKeyRef={"name": "settings", "key": "a b"}),
                                   "spec.runtime.env[0].valueFrom.configMapKeyRef.key", "should match"),
    "env-from-bad-name": ("runtime", {"envFrom": [{"secretRef": {"name": "Keys"}}]},
                          "spec.runtime.envFrom[0].secretRef.name", "should match"),
    "env-from-bad-prefix": ("runtime", {"envFrom": [{"configMapRef": {"name": "c"}, "prefix": "1_"}]},
                            "spec.runtime.envFrom[0].prefix", "should match"),
    "token-secret-bad-name": ("model", {"tokenSecretRef": {"name": "HF_TOKEN"}}, "spec.model.tokenSecretRef.name",
                              "should match"),
    "token-secret-bad-key": ("model", {"tokenSecretRef": {"name": "hf", "key": "hf token"}},
                             "spec.model.tokenSecretRef.key", "should match"),
    # what the pod spec's validation refuses beyond formats: a backstep in a hostPath, env fields and resources
    # a pod does not have, 32-bit integers, 256 KiB of annotations
    "cache-host-path-backstep": ("model", {"cache": {"hostPath": "/var/cache/../etc"}}, "spec.model.cache.hostPath",
                                 "must not contain a '..' path component"),
    "cache-host-path-trailing-backstep": ("model", {"cache": {"hostPath": "/mnt/models/.."}},
                                          "spec.model.cache.hostPath", "must not contain a '..'"),
    "field-ref-unsupported": ("runtime", env(fieldRef={"fieldPath": "spec.nodeSelector"}),
                              f"{FIELD_REF}.fieldPath", "must be one of metadata.name"),
    "field-ref-labels-without-key": ("runtime", env(fieldRef={"fieldPath": "metadata.labels"}),
                                     f"{FIELD_REF}.fieldPath", "must be one of"),
    "field-ref-bad-label-key": ("runtime", env(fieldRef={"fieldPath": "metadata.labels['my team']"}),
                                f"{FIELD_REF}.fieldPath", "a label or annotation key"),
    "field-ref-api-version-v2": ("runtime", env(fieldRef={"fieldPath": "metadata.name", "apiVersion": "v2"}),
                                 f"{FIELD_REF}.apiVersion", "must be v1"),
    "resource-field-ref-unsupported": ("runtime", env(resourceFieldRef={"resource": "limits.nvidia.com/gpu"}),
                                       "spec.runtime.env[0].valueFrom.resourceFieldRef.resource",
                                       "must be limits.cpu"),
    # the API server takes any containerName; the kubelet does not start a container whose env names one it does
    # not find (CreateContainerConfigError): runtime.env goes to the inference container, "server"
    "resource-field-ref-other-container": ("runtime", env(resourceFieldRef={"containerName": "vllm",
                                                                            "resource": "limits.cpu"}),
                                           "spec.runtime.env[0].valueFrom.resourceFieldRef.containerName",
                                           "must be server"),
    "spread-max-skew-over-int32": ("resources", {"topologySpreadConstraints": [
        {"maxSkew": 2**31, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway"}]},
        "spec.resources.topologySpreadConstraints[0].maxSkew", "less than or equal to 2147483647"),
    "spread-min-domains-over-int32": ("resources", {"topologySpreadConstraints": [
        {"maxSkew": 1, "minDomains": 2**31, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]},
        "spec.resources.topologySpreadConstraints[0].minDomains", "less than or equal to 2147483647"),
    "annotations-over-255-kib": ("podMetadata", {"annotations": {f"example.com/k{i}": "v" * 10000 for i in range(27)}},
                                 "spec.podMetadata.annotations", "at most 261120 bytes"),
    # bytes are counted, not characters: 131000 characters of two bytes each
    "annotations-over-255-kib-in-bytes": ("podMetadata", {"annotations": {"note": "\u00e9" * 131000}},
                                          "spec.podMetadata.annotations", "at most 261120 bytes"),
    "deletion-cost-not-a-number": ("podMetadata", {"annotations": {DELETION_COST: "high"}},
                                   "spec.podMetadata.annotations", "pod-deletion-cost must be a 32-bit integer"),
    "deletion-cost-over-int32": ("podMetadata", {"annotations": {DELETION_COST: str(2**31)}},
                                 "spec.podMetadata.annotations", "must be a 32-bit integer"),
    "deletion-cost-leading-zero": ("podMetadata", {"annotations": {DELETION_COST: "007"}},
                                   "spec.podMetadata.annotations", "must be a 32-bit integer"),
    # the plan's port (probes, Service, scrape) and served model name (the activator's routing) are not the args'
    "args-port": ("runtime", {"args": ["--port", "9000"]}, "spec.runtime.args", "must not set --port"),
    "args-port-equals": ("runtime", {"args": ["--max-model-len=4096", "--port=9000"]}, "spec.runtime.args",
                         "must not set --port"),
    "args-tgi-short-port": ("runtime", {"name": "tgi", "args": ["-p", "9000"]}, "spec.runtime.args", "--port"),
    "args-served-model-name": ("runtime", {"args": ["--served-model-name", "x"]}, "spec.runtime.args",
                               "--served-model-name"),
}

ACCEPTED: dict[str, tuple[str, dict[str, Any]]] = {
    "args-other-flags": ("runtime", {"args": ["--max-model-len", "4096", "--pipeline-parallel-size=1", "-pp", "1",
                                              "--portal"]}),
    "toleration-exists-without-value": ("resources", {"tolerations": [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}),
    "toleration-exists-empty-value": ("resources", {"tolerations": [
        {"key": "gpu", "operator": "Exists", "value": ""}]}),
    "toleration-seconds-noexecute": ("resources", {"tolerations": [
        {"key": "gpu", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}]}),
    "toleration-no-key-exists": ("resources", {"tolerations": [{"operator": "Exists"}]}),
    "toleration-key-only": ("resources", {"tolerations": [{"key": "dedicated"}]}),
    "toleration-equal-value": ("resources", {"tolerations": [
        {"key": "dedicated", "operator": "Equal", "value": "inference_v2.1", "effect": "NoSchedule"}]}),
    "nodeselector-label-value": ("resources", {"nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
                                                                "pool": ""}}),
    "affinity-in-with-values": ("resources", node_affinity({"key": "gpu", "operator": "In", "values": ["a100"]})),
    "affinity-exists-without-values": ("resources", node_affinity({"key": "gpu", "operator": "Exists"},
                                                                  {"key": "spot", "operator": "DoesNotExist",
                                                                   "values": []})),
    "affinity-gt-one-value": ("resources", node_affinity({"key": "nvidia.com/gpu.memory", "operator": "Gt",
                                                          "values": ["40000"]})),
    "affinity-match-fields": ("resources", node_affinity({"key": "metadata.name", "operator": "NotIn",
                                                          "values": ["node-1"]}, fields=True)),
    "pod-affinity-selector": ("resources", pod_anti_affinity({"matchLabels": {"app.kubernetes.io/name": "llm"},
                                                              "matchExpressions": [{"key": "team", "operator": "In",
                                                                                    "values": ["ml", "nlp"]}]},
                                                             "topology.kubernetes.io/zone")),
    "priorityclass-subdomain": ("resources", {"priorityClassName": "inference-high.example.com"}),
    "cpu-millicores": ("resources", {"cpu": "500m", "memory": "32Gi", "ephemeralStorage": "200Gi"}),
    "quantities-int": ("resources", {"cpu": 4, "memory": 0, "ephemeralStorage": 10 ** 11}),
    "divisors": ("runtime", {"env": [{"name": n, "valueFrom": {"resourceFieldRef": {"resource": "limits.memory",
                                                                                    "divisor": d}}}
                                     for n, d in (("A", "1Mi"), ("B", "1"), ("C", "1k"), ("D", 1), ("E", "1Ei"))]
                             + [{"name": n, "valueFrom": {"resourceFieldRef": {"resource": r, "divisor": d}}}
                                for n, r, d in (("F", "requests.cpu", "1m"), ("G", "limits.cpu", 1),
                                                ("H", "limits.ephemeral-storage", "1G"),
                                                ("I", "requests.hugepages-1Gi", "1Gi"))]}),
    "image-with-registry-port-and-digest": ("runtime", {"image": "registry.example.com:5000/vllm@sha256:" + "a" * 64}),
    "quantities-decimal-suffix-and-exponent": ("resources", {"memory": "500k", "ephemeralStorage": "1e11"}),
    "key-refs": ("runtime", {"env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "hf-token",
                                                                                  "key": "HF_TOKEN.v1"}}},
                                     {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "settings.v2",
                                                                                     "key": "config.yaml",
                                                                                     "optional": True}}}],
                             "envFrom": [{"secretRef": {"name": "keys"}, "prefix": "K_"}]}),
    "token-secret": ("model", {"tokenSecretRef": {"name": "hf-token", "key": "token"}}),
    "cache-host-path-dots-in-names": ("model", {"cache": {"hostPath": "/mnt/..models/v1../.cache/."}}),
    "field-refs": ("runtime", {"env": [{"name": f"F{i}", "valueFrom": {"fieldRef": {"fieldPath": path}}}
                                       for i, path in enumerate(FIELD_PATHS)]
                               + [{"name": "V", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid",
                                                                           "apiVersion": "v1"}}}]}),
    "resource-field-refs": ("runtime", {"env": [{"name": f"R{i}", "valueFrom": {"resourceFieldRef": {"resource": r}}}
                                                for i, r in enumerate(("limits.cpu", "requests.memory",
                                                                       "limits.ephemeral-storage",
                                                                       "requests.hugepages-2Mi"))]}),
    "resource-field-ref-own-container": ("runtime", env(resourceFieldRef={"containerName": "server",
                                                                         "resource": "limits.memory"})),
    "spread-int32-max": ("resources", {"topologySpreadConstraints": [
        {"maxSkew": 2**31 - 1, "minDomains": 2**31 - 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]}),
    "annotations-255-kib": ("podMetadata", {"annotations": {"example.com/note": "v" * (255 * 1024 - 16)}}),
    "deletion-cost-int32-min": ("podMetadata", {"annotations": {DELETION_COST: str(-2**31)}}),
    "deletion-cost-int32-max": ("podMetadata", {"annotations": {DELETION_COST: str(2**31 - 1)}}),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeServer]:
    """One API test server for the module with the CRDs of crds/ (no pods: only admission is exercised)."""
    with start_apiserver(tmp_path_factory.mktemp("crd-pod-settings"), simulate_pods=False) as srv:
        yield KubeServer(srv, install_crds(srv))


def spec_with(section: str, value: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = {"model": {"source": "org/name"}, "autoscaling": {"mode": "off"}}
    spec[section] = {**spec.get(section, {}), **value}
    return spec


@pytest.mark.parametrize("case", REFUSED)
def test_the_crd_refuses_pod_settings_kubernetes_refuses_naming_the_field(server, case):
    section, value, field, words = REFUSED[case]
    name = f"refused-{next(_names)}"
    rsp = post(server, LLMDS, doc(name, spec_with(section, value)))
    if rsp.status_code == 201:
        server.kube.delete(f"{LLMDS}/{name}")
    assert rsp.status_code == 422, f"{case}: accepted ({rsp.status_code}), the Deployment would be refused"
    message = rsp.json()["message"]
    assert field in message and words in message, f"{case}: {message!r} does not name {field} with {words!r}"


@pytest.mark.parametrize("case", REFUSED)
def test_parse_spec_refuses_them_too_naming_the_field(case):
    """The operator refuses them as InvalidSpec (once, no retry loop) where the CRD installed is older."""
    section, value, field, _words = REFUSED[case]
    with pytest.raises(SpecError) as refused:
        parse_spec(spec_with(section, value))
    assert str(refused.value).startswith(field), f"{case}: {refused.value} does not start with {field}"


@pytest.mark.parametrize("case", ACCEPTED)
def test_the_valid_neighbours_are_accepted_and_planned_into_a_valid_deployment(server, case):
    section, value = ACCEPTED[case]
    assert_applies_and_plans(server, f"accepted-{next(_names)}", spec_with(section, value), case)


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_still_applies(server, path: Path):
    example = yaml.safe_load(path.read_text())
    rsp = post(server, LLMDS, example)
    assert rsp.status_code == 201, f"{path.name} refused: {rsp.text[:800]}"
    parse_spec(rsp.json()["spec"])
    server.kube.delete(f"{LLMDS}/{example['metadata']['name']}")


def test_the_chart_ships_the_same_crd():
    assert (ROOT / "charts/foresail/crds/llmdeployment.yaml").read_text() == \
        (ROOT / "crds/llmdeployment.yaml").read_text()


def test_every_list_with_a_rule_is_bounded():
    """CEL rules on the items of an unbounded list cost too much for kube-apiserver's estimate (and its
    CRD total): every list whose items (at any depth) carry x-kubernetes-validations has maxItems, and every
    map a rule iterates has maxProperties."""
    crd = yaml.safe_load((ROOT / "crds/llmdeployment.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

    def has_rules(node: dict[str, Any]) -> bool:
        return bool(node.get("x-kubernetes-validations")) or any(
            has_rules(child) for child in [*(node.get("properties") or {}).values(),
                                           *[node[k] for k in ("items", "additionalProperties")
                                             if isinstance(node.get(k), dict)]])

    unbounded = []

    def walk(node: dict[str, Any], where: str) -> None:
        if node.get("type") == "array" and has_rules(node["items"]) and "maxItems" not in node:
            unbounded.append(where)
        if isinstance(node.get("additionalProperties"), dict) and node.get("x-kubernetes-validations") \
                and "maxProperties" not in node:
            unbounded.append(where)
        for key, child in (node.get("properties") or {}).items():
            walk(child, f"{where}.{key}")
        if isinstance(node.get("items"), dict):
            walk(node["items"], where + "[]")

    walk(schema["properties"]["spec"], "spec")
    assert unbounded == []


def test_the_builtin_test_model_is_the_only_builtin_and_runs_only_on_the_foresail_runtime(server):
    """builtin:tiny is the foresail runtime's own test model: vLLM, TGI or SGLang would fail to load it (a crash
    loop), and no other builtin name exists (the server would exit at start)."""
    on_vllm = {"model": {"source": "builtin:tiny"}, "runtime": {"name": "vllm"}, "autoscaling": {"mode": "off"}}
    rsp = post(server, LLMDS, doc(f"refused-{next(_names)}", on_vllm))
    assert rsp.status_code == 422 and "spec.model.source" in rsp.json()["message"] \
        and "runtime.name must be foresail" in rsp.json()["message"], rsp.text[:800]
    other = {"model": {"source": "builtin:huge"}, "autoscaling": {"mode": "off"}}
    rsp = post(server, LLMDS, doc(f"refused-{next(_names)}", other))
    assert rsp.status_code == 422 and "an http(s) URL or builtin:tiny" in rsp.json()["message"], rsp.text[:800]
    for runtime in ({}, {"runtime": {"name": "foresail"}}):
        name = f"accepted-{next(_names)}"
        rsp = post(server, LLMDS, doc(name, {"model": {"source": "builtin:tiny"}, **runtime}))
        assert rsp.status_code == 201, rsp.text[:800]
        server.kube.delete(f"{LLMDS}/{name}")
