"""The LLMDeployment spec as typed Python objects.

The CRD (crds/llmdeployment.yaml) is the source of truth for field names, defaults and validation;
the API server applies its defaults before the operator sees an object. The defaults repeated here
only make the operator safe against objects written before a default existed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from foresail.autoscaler.schedule import Schedule, parse_schedules

RUNTIMES = ("foresail", "vllm", "tgi", "sglang")
MODES = ("predictive", "reactive", "advisory", "off")
DEMAND_UNITS = ("requests", "tokens")


@dataclass(frozen=True)
class ModelSpec:
    """Where the weights come from."""

    source: str
    revision: str | None = None
    served_model_name: str | None = None
    token_secret: str | None = None
    token_secret_key: str = "token"
    cache_pvc: str | None = None
    cache_host_path: str | None = None


@dataclass(frozen=True)
class RuntimeSpec:
    """The inference engine and how to start it."""

    name: str = "foresail"
    image: str | None = None
    args: tuple[str, ...] = ()
    env: tuple[Mapping[str, Any], ...] = ()
    env_from: tuple[Mapping[str, Any], ...] = ()
    mounts: tuple[Mapping[str, str], ...] = ()  # {path, configMap | secret}
    drain_s: int = 110  # how long a replica told to stop may finish the requests in flight
    image_pull_secrets: tuple[str, ...] = ()
    service_account: str | None = None


@dataclass(frozen=True)
class ResourceSpec:
    """What one replica gets."""

    gpus: int = 0
    gpu_resource: str = "nvidia.com/gpu"  # the extended resource a GPU is asked for as
    cpu: str | None = None
    memory: str | None = None
    ephemeral_storage: str | None = None
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    priority_class_name: str | None = None
    affinity: Mapping[str, Any] = field(default_factory=dict)
    topology_spread: tuple[Mapping[str, Any], ...] = ()  # labelSelector defaults to the pods' selector


@dataclass(frozen=True)
class AutoscalingSpec:
    """How the replica count is decided."""

    mode: str = "predictive"
    demand_unit: str = "requests"  # what demand and capacity are counted in: requests/s or tokens/s
    interval_s: float = 15.0
    ttft_s: float = 2.0
    capacity_per_replica: float | None = None
    attainment_target: float | None = None  # the SLO governor's target (None: off)
    kv_cache_saturation: float = 0.8  # KV-cache usage above which replicas count as saturated
    horizon: str = "auto"
    cold_start_s: float = 120.0
    quantile: float = 0.9
    scale_down_stabilization_s: float = 300.0
    scale_to_zero: bool = False
    idle_s: float = 600.0
    schedules: tuple[Schedule, ...] = ()  # windows with a replica floor, raised a horizon ahead
    learn_schedules: bool = False  # also hold windows found recurring in the demand history

    def horizon_s(self, measured_cold_start_s: float | None) -> float:
        """The forecast horizon: a fixed duration, or the (measured) cold start plus one interval."""
        if self.horizon != "auto":
            return float(_duration_s(self.horizon))
        return (self.cold_start_s if measured_cold_start_s is None else measured_cold_start_s) + self.interval_s


@dataclass(frozen=True)
class LLMDeploymentSpec:
    """The whole spec of one LLMDeployment."""

    model: ModelSpec
    runtime: RuntimeSpec
    resources: ResourceSpec
    autoscaling: AutoscalingSpec
    min_replicas: int = 1
    max_replicas: int = 10
    replicas: int | None = None
    max_unavailable: int | str | None = 1  # the PodDisruptionBudget's maxUnavailable (None: no budget)
    rollout: tuple[int | str, int | str] = (1, 0)  # the rolling update's (maxSurge, maxUnavailable)
    pod_labels: Mapping[str, str] = field(default_factory=dict)
    pod_annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def autoscaling_on(self) -> bool:
        """True when the operator decides the replica count (every mode but off)."""
        return self.autoscaling.mode != "off"

    def fixed_replicas(self) -> int:
        """The replica count to run when autoscaling is off."""
        return self.replicas if self.replicas is not None else self.min_replicas

    def clamp(self, replicas: int) -> int:
        """Clamp a replica count into [minReplicas, maxReplicas] (0 allowed with scale-to-zero)."""
        low = 0 if self.autoscaling.scale_to_zero and replicas == 0 else self.min_replicas
        return max(low, min(self.max_replicas, replicas))


class SpecError(ValueError):
    """A spec the schema let through but the operator cannot act on."""


_DURATION = re.compile(r"^(auto|[0-9]+(s|m))$")
# A horizon beyond a day forecasts nothing more (past 60 steps the forecaster holds its last forecast), and
# windows of schedules raised that far ahead are counted one by one at each decision.
MAX_HORIZON_S = 86400
_QUALIFIED_NAME = re.compile(  # a label or annotation key: [DNS subdomain/]name
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_PERCENT = re.compile(r"^([0-9]|[1-9][0-9]|100)%$")
# Kubernetes' own formats (k8s.io/apimachinery/pkg/util/validation), as the CRD checks them
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
# Kubernetes' suffixes: decimal k, M, ... E (a lower-case k), binary Ki ... Ei, or a decimal exponent (1e9).
_BYTES = re.compile(r"^[0-9]+(\.[0-9]+)?([kMGTPE]|[KMGTPE]i|[eE][0-9]+)?$")
_QUANTITIES = {"cpu": re.compile(r"^[0-9]+(\.[0-9]+)?m?$"), "memory": _BYTES, "ephemeralStorage": _BYTES}
_DIVISOR = re.compile(r"^[0-9]+(\.[0-9]+)?(m|[kMGTPE]|[KMGTPE]i)?$")  # a resourceFieldRef's: milli too
# the divisors validateContainerResourceDivisor accepts: cpu's, and memory's (ephemeral-storage's, hugepages')
_CPU_DIVISORS = ("1m", "1")
_BYTE_DIVISORS = ("1", "1k", "1M", "1G", "1T", "1P", "1E", "1Ki", "1Mi", "1Gi", "1Ti", "1Pi", "1Ei")
# what an env var's fieldRef and resourceFieldRef may name (validEnvDownwardAPIFieldPathExpressions and
# validContainerResourceFieldPathExpressions; metadata.labels['KEY'] and metadata.annotations['KEY'] too)
_FIELD_PATHS = ("metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName",
                "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs")
_SUBSCRIPTED_FIELD = re.compile(r"^metadata\.(labels|annotations)\['(.*)'\]$")
_RESOURCES = ("limits.cpu", "limits.memory", "limits.ephemeral-storage", "requests.cpu", "requests.memory",
              "requests.ephemeral-storage")
_INT32_MAX = 2**31 - 1
# runtime.args flags the plan sets and relies on: the value here would break the pods or their routing
_PORT_USE = "the probes, the Service and the metrics scrape use port 8000"
_OWNED_FLAGS = {"--port": _PORT_USE, "-p": _PORT_USE, "--served-model-name": "set spec.model.servedModelName (the "
                "activator routes by it; the runtime answers 404 for another name)"}
_CONTAINER = "server"  # the inference container, where spec.runtime.env goes (plan.pod_template)
# Kubernetes allows 256 KiB of annotations on a pod (keys and values, in bytes): 1 KiB is left for the operator's own
_ANNOTATIONS_MAX_B = 255 * 1024
_DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
_DELETION_COST_VALUE = re.compile(r"^(0|-[0-9]{1,10}|[1-9][0-9]{0,9})$")  # Go's ParseInt, no '+' or leading 0


def _duration_s(text: str) -> int:
    """A forecast horizon such as ``300s`` or ``5m`` in seconds."""
    return int(text[:-1]) * (60 if text.endswith("m") else 1)


def _count_or_percent(value: Any, least: int) -> bool:
    """Whether ``value`` is an int-or-string count of at least ``least``, or a percentage from ``least``% to 100%."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value >= least
    return isinstance(value, str) and bool(_PERCENT.match(value)) and int(value[:-1]) >= least


def _quantity(resources: Mapping[str, Any], key: str) -> str | None:
    """An int-or-string resource quantity of spec.resources as text (8 and "8" alike), or None."""
    value = resources.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not (isinstance(value, int) and value >= 0
                                       or isinstance(value, str) and _QUANTITIES[key].match(value)):
        raise SpecError(f"spec.resources.{key}: {value!r} is not a quantity of at least 0 (e.g. "
                        f"{'4 or 500m' if key == 'cpu' else '32Gi'})")
    return str(value)


def _label_key(key: Any) -> bool:
    """Whether ``key`` is a label key: an optional DNS-subdomain prefix and '/', then a name of at most 63."""
    if not isinstance(key, str):
        return False
    prefix, _, name = key.rpartition("/")
    return bool(_QUALIFIED_NAME.match(key)) and len(prefix) <= 253 and len(name) <= 63


def _label_value(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= 63 and bool(_LABEL_VALUE.match(value))


def _dns_subdomain(name: Any) -> bool:
    return isinstance(name, str) and len(name) <= 253 and bool(_DNS_SUBDOMAIN.match(name))


_LABEL_KEY_RULE = ("must be a label key: an optional DNS subdomain prefix and '/', then a name of at most 63 "
                   "letters, digits, '-', '_' or '.' that starts and ends with a letter or digit")
_LABEL_VALUE_RULE = "must be a label value: at most 63 letters, digits, '-', '_' or '.', a letter or digit at each end"
_DNS_RULE = "must be a lowercase RFC 1123 subdomain: lower case letters, digits, '-' and '.', at most 253"


def _tolerations(items: Any) -> tuple[Mapping[str, Any], ...]:
    """spec.resources.tolerations, checked as Kubernetes checks a pod's."""
    for i, t in enumerate(items or ()):
        where = f"spec.resources.tolerations[{i}]"
        key, operator, value = t.get("key") or "", t.get("operator") or "Equal", t.get("value") or ""
        if key and not _label_key(key):
            raise SpecError(f"{where}.key: {key!r} {_LABEL_KEY_RULE}")
        if not key and operator != "Exists":
            raise SpecError(f"{where}.operator: operator must be Exists when `key` is empty, which means "
                            '"match all values and all keys"')
        if operator == "Exists" and value:
            raise SpecError(f"{where}.operator: value must be empty when `operator` is 'Exists'")
        if not _label_value(value):
            raise SpecError(f"{where}.value: {value!r} {_LABEL_VALUE_RULE}")
        if t.get("tolerationSeconds") is not None and t.get("effect") != "NoExecute":
            raise SpecError(f"{where}.effect: effect must be 'NoExecute' when `tolerationSeconds` is set")
    return tuple(items or ())


def _labels(labels: Any, where: str) -> dict[str, str]:
    """A node selector or a label selector's matchLabels, each key and value checked as Kubernetes checks them."""
    for key, value in (labels or {}).items():
        if not _label_key(key):
            raise SpecError(f"{where}: {key!r} {_LABEL_KEY_RULE}")
        if not _label_value(value):
            raise SpecError(f"{where}.{key}: {value!r} {_LABEL_VALUE_RULE}")
    return dict(labels or {})


def _priority_class(name: Any) -> str | None:
    if name is not None and not _dns_subdomain(name):
        raise SpecError(f"spec.resources.priorityClassName: {name!r} {_DNS_RULE}")
    return name


def _requirements(items: Any, where: str, label_values: bool) -> None:
    """The matchExpressions (or matchFields) of a node selector term or a label selector."""
    for i, req in enumerate(items or ()):
        at, operator, values = f"{where}[{i}]", req.get("operator"), req.get("values") or ()
        if not _label_key(req.get("key")):
            raise SpecError(f"{at}.key: {req.get('key')!r} {_LABEL_KEY_RULE}")
        if operator in ("In", "NotIn") and not values:
            raise SpecError(f"{at}.values: values must be given when `operator` is 'In' or 'NotIn'")
        if operator in ("Exists", "DoesNotExist") and values:
            raise SpecError(f"{at}.values: values may not be given when `operator` is 'Exists' or 'DoesNotExist'")
        if operator in ("Gt", "Lt") and len(values) != 1:
            raise SpecError(f"{at}.values: values must be a single value (an integer) when `operator` is 'Gt' or 'Lt'")
        for j, value in enumerate(values if label_values else ()):
            if not _label_value(value):
                raise SpecError(f"{at}.values[{j}]: {value!r} {_LABEL_VALUE_RULE}")


def _label_selector(selector: Any, where: str) -> None:
    if selector:
        _requirements(selector.get("matchExpressions"), f"{where}.matchExpressions", label_values=True)
        _labels(selector.get("matchLabels"), f"{where}.matchLabels")


def _topology_key(term: Mapping[str, Any], where: str) -> None:
    if not _label_key(term.get("topologyKey")):
        raise SpecError(f"{where}.topologyKey: {term.get('topologyKey')!r} {_LABEL_KEY_RULE}")


def _affinity(affinity: Any) -> dict[str, Any]:
    """spec.resources.affinity, its selectors checked as Kubernetes checks a pod's."""
    affinity = dict(affinity or {})
    node, where = affinity.get("nodeAffinity") or {}, "spec.resources.affinity.nodeAffinity"
    required = node.get("requiredDuringSchedulingIgnoredDuringExecution")
    if required is not None and not required.get("nodeSelectorTerms"):
        raise SpecError(f"{where}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms: must have at "
                        "least one node selector term")
    terms = [(f"{where}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[{i}]", term) for i, term in
             enumerate((required or {}).get("nodeSelectorTerms") or ())]
    terms += [(f"{where}.preferredDuringSchedulingIgnoredDuringExecution[{i}].preference", p.get("preference") or {})
              for i, p in enumerate(node.get("preferredDuringSchedulingIgnoredDuringExecution") or ())]
    for at, term in terms:
        _requirements(term.get("matchExpressions"), f"{at}.matchExpressions", label_values=False)
        _requirements(term.get("matchFields"), f"{at}.matchFields", label_values=False)
    for kind in ("podAffinity", "podAntiAffinity"):
        pod, where = affinity.get(kind) or {}, f"spec.resources.affinity.{kind}"
        pod_terms = [(f"{where}.requiredDuringSchedulingIgnoredDuringExecution[{i}]", term)
                     for i, term in enumerate(pod.get("requiredDuringSchedulingIgnoredDuringExecution") or ())]
        pod_terms += [(f"{where}.preferredDuringSchedulingIgnoredDuringExecution[{i}].podAffinityTerm",
                       p.get("podAffinityTerm") or {})
                      for i, p in enumerate(pod.get("preferredDuringSchedulingIgnoredDuringExecution") or ())]
        for at, term in pod_terms:
            _label_selector(term.get("labelSelector"), f"{at}.labelSelector")
            _label_selector(term.get("namespaceSelector"), f"{at}.namespaceSelector")
            _topology_key(term, at)
    return affinity


def _topology_spread(items: Any) -> tuple[Mapping[str, Any], ...]:
    """spec.resources.topologySpreadConstraints, checked as Kubernetes checks a pod's."""
    pairs = [(c.get("topologyKey"), c.get("whenUnsatisfiable")) for c in items or ()]
    if len(set(pairs)) < len(pairs):
        raise SpecError("spec.resources.topologySpreadConstraints: two constraints have the same topologyKey and "
                        "whenUnsatisfiable: Kubernetes takes one of each pair")
    for i, constraint in enumerate(items or ()):
        _label_selector(constraint.get("labelSelector"), f"spec.resources.topologySpreadConstraints[{i}].labelSelector")
        _topology_key(constraint, f"spec.resources.topologySpreadConstraints[{i}]")
        for key in ("maxSkew", "minDomains"):
            if constraint.get(key) is not None and constraint[key] > _INT32_MAX:
                raise SpecError(f"spec.resources.topologySpreadConstraints[{i}].{key}: {constraint[key]} is more "
                                f"than {_INT32_MAX} (a 32-bit integer)")
    return tuple(items or ())


def _key_ref(ref: Mapping[str, Any], where: str) -> None:
    """A Secret's or ConfigMap's name and key, as an env var's valueFrom (or the hub token) names them."""
    if not _dns_subdomain(ref.get("name")):
        raise SpecError(f"{where}.name: {ref.get('name')!r} {_DNS_RULE}")
    key = ref.get("key")
    if key is not None and not (isinstance(key, str) and len(key) <= 253 and _CONFIG_KEY.match(key)):
        raise SpecError(f"{where}.key: {key!r} must be a valid config key: letters, digits, '-', '_' or '.'")


def _divisor(ref: Mapping[str, Any], i: int) -> None:
    """An env var's resourceFieldRef.divisor, if any: one Kubernetes accepts for its resource (1m or 1 for cpu;
    1, 1k ... 1E or 1Ki ... 1Ei for memory, ephemeral-storage and hugepages)."""
    value, where = ref.get("divisor"), f"spec.runtime.env[{i}].valueFrom.resourceFieldRef.divisor"
    if value is None:
        return
    if isinstance(value, bool) or not (isinstance(value, int) and value >= 0 or
                                       isinstance(value, str) and _DIVISOR.match(value)):
        raise SpecError(f"{where}: {value!r} is not a quantity (e.g. 1Mi, 1k or 1m)")
    cpu = ref.get("resource") in ("limits.cpu", "requests.cpu")
    if str(value) not in (_CPU_DIVISORS if cpu else _BYTE_DIVISORS):
        raise SpecError(f"{where}: {value!r} is not a divisor Kubernetes accepts for {ref.get('resource')}: "
                        f"one of {', '.join(_CPU_DIVISORS if cpu else _BYTE_DIVISORS)}")


def _image(image: str | None) -> str | None:
    """spec.runtime.image, without leading or trailing whitespace (Kubernetes refuses such a pod)."""
    if image is not None and image != image.strip():
        raise SpecError(f"spec.runtime.image: {image!r} must not have leading or trailing whitespace")
    return image


def _field_ref(ref: Mapping[str, Any], where: str) -> None:
    """An env var's fieldRef: a field Kubernetes can put in an environment variable, of the v1 pod."""
    if ref.get("apiVersion") not in (None, "", "v1"):
        raise SpecError(f"{where}.apiVersion: {ref['apiVersion']!r} must be v1 (the only version of a pod's fields)")
    path = ref.get("fieldPath")
    subscripted = _SUBSCRIPTED_FIELD.match(path) if isinstance(path, str) else None
    if path in _FIELD_PATHS or subscripted and _label_key(
            subscripted[2].lower() if subscripted[1] == "annotations" else subscripted[2]):
        return
    raise SpecError(f"{where}.fieldPath: {path!r} must be one of {', '.join(_FIELD_PATHS)}, or "
                    "metadata.labels['KEY'] or metadata.annotations['KEY'] with KEY a label or annotation key")


def _args(args: Any) -> tuple[str, ...]:
    """spec.runtime.args, without a flag the operator's plan relies on (``_OWNED_FLAGS``)."""
    out = tuple(str(a) for a in args)
    for i, arg in enumerate(out):
        flag = arg.split("=", 1)[0]
        if flag in _OWNED_FLAGS:
            raise SpecError(f"spec.runtime.args[{i}]: {flag} is set by the operator: {_OWNED_FLAGS[flag]}")
    return out


def _resource_ref(ref: Mapping[str, Any], where: str) -> None:
    """An env var's resourceFieldRef: a resource Kubernetes can put in an environment variable, of the inference
    container, where the env goes (the API server accepts any containerName; the kubelet does not start a container
    whose env names one it does not find)."""
    resource = ref.get("resource")
    if resource not in _RESOURCES and not str(resource).startswith(("limits.hugepages-", "requests.hugepages-")):
        raise SpecError(f"{where}.resource: {resource!r} must be one of {', '.join(_RESOURCES)}, "
                        "limits.hugepages-SIZE or requests.hugepages-SIZE")
    if ref.get("containerName") not in (None, "", _CONTAINER):
        raise SpecError(f"{where}.containerName: {ref['containerName']!r} must be {_CONTAINER!r} (the inference "
                        "container, where spec.runtime.env goes) or left out: the kubelet does not start a container "
                        "whose env names one it does not find (CreateContainerConfigError)")


def _host_path(cache: Mapping[str, Any]) -> str | None:
    """spec.model.cache.hostPath, without a '..' component (Kubernetes refuses the volume)."""
    path = cache.get("hostPath")
    if path is not None and ".." in str(path).split("/"):
        raise SpecError(f"spec.model.cache.hostPath: {path!r} must not contain a '..' path component")
    return path


def _argument(model: Mapping[str, Any], key: str) -> str | None:
    """spec.model's ``key``, passed to the server as a command-line argument: not one that reads as an option."""
    value = model.get(key)
    if value is not None and str(value).startswith("-"):
        raise SpecError(f"spec.model.{key}: {value!r} must not start with '-': the server would read it as an option")
    return value


def _token_secret(ref: Mapping[str, Any]) -> str | None:
    """spec.model.tokenSecretRef's Secret name (checked with its key), or None."""
    if ref:
        _key_ref(ref, "spec.model.tokenSecretRef")
    return ref.get("name")


def _env(runtime: Mapping[str, Any]) -> tuple[tuple[Mapping[str, Any], ...], tuple[Mapping[str, Any], ...]]:
    """spec.runtime.env and envFrom, the Secrets and ConfigMaps they name checked as Kubernetes checks a pod's."""
    env, env_from = tuple(runtime.get("env") or ()), tuple(runtime.get("envFrom") or ())
    for i, var in enumerate(env):
        value_from, where = var.get("valueFrom") or {}, f"spec.runtime.env[{i}].valueFrom"
        for kind in ("secretKeyRef", "configMapKeyRef"):
            if value_from.get(kind) is not None:
                _key_ref(value_from[kind], f"{where}.{kind}")
        if value_from.get("fieldRef") is not None:
            _field_ref(value_from["fieldRef"], f"{where}.fieldRef")
        if value_from.get("resourceFieldRef") is not None:
            _resource_ref(value_from["resourceFieldRef"], f"{where}.resourceFieldRef")
            _divisor(value_from["resourceFieldRef"], i)
    for i, source in enumerate(env_from):
        prefix = source.get("prefix") or ""
        if prefix and not _ENV_NAME.match(prefix):
            raise SpecError(f"spec.runtime.envFrom[{i}].prefix: {prefix!r} must be a valid environment variable name")
        for kind in ("configMapRef", "secretRef"):
            if source.get(kind) is not None and not _dns_subdomain(source[kind].get("name")):
                raise SpecError(f"spec.runtime.envFrom[{i}].{kind}.name: {source[kind].get('name')!r} {_DNS_RULE}")
    return env, env_from


def _rollout(rollout: Mapping[str, Any]) -> tuple[int | str, int | str]:
    """spec.rollout as the rolling update's (maxSurge, maxUnavailable)."""
    values = []
    for key, default in (("maxSurge", 1), ("maxUnavailable", 0)):
        value = rollout.get(key, default)
        if not _count_or_percent(value, 0):
            raise SpecError(f"spec.rollout.{key} must be a count of at least 0 or a percentage from 0% to 100%")
        values.append(value)
    if all(str(v) in ("0", "0%") for v in values):
        raise SpecError("spec.rollout.maxSurge and spec.rollout.maxUnavailable cannot both be 0: "
                        "no replica could be replaced")
    return values[0], values[1]


def _pod_metadata(spec: Mapping[str, Any], kind: str) -> dict[str, str]:
    """spec.podMetadata.labels or .annotations, each key checked as Kubernetes checks it."""
    values = dict((spec.get("podMetadata") or {}).get(kind) or {})
    for key in values:  # Kubernetes checks an annotation key in lower case: its prefix may have capitals
        if not _label_key(key.lower() if kind == "annotations" else key):
            raise SpecError(f"spec.podMetadata.{kind}: {key!r} is not a valid key (an optional DNS-subdomain "
                            "prefix and '/', then a name of at most 63 letters, digits, '-', '_' or '.')")
    size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in values.items())
    if kind == "annotations" and size > _ANNOTATIONS_MAX_B:
        raise SpecError(f"spec.podMetadata.annotations: keys and values together are {size} bytes, more than "
                        f"{_ANNOTATIONS_MAX_B} (255 KiB): Kubernetes allows 256 KiB of annotations on a pod and the "
                        "operator adds its own")
    cost = values.get(_DELETION_COST) if kind == "annotations" else None
    if cost is not None and not (_DELETION_COST_VALUE.match(str(cost)) and -2**31 <= int(cost) < 2**31):
        raise SpecError(f"spec.podMetadata.annotations: {_DELETION_COST} {cost!r} must be a 32-bit integer (e.g. 0 "
                        "or -5, no '+' or leading zeros)")
    return values


def _max_unavailable(budget: Mapping[str, Any]) -> int | str | None:
    """spec.disruptionBudget as the budget's maxUnavailable: a count of at least 1, a percentage, or None."""
    if not budget.get("enabled", True):
        return None
    value = budget.get("maxUnavailable", 1)
    if _count_or_percent(value, 1):
        return value
    raise SpecError("spec.disruptionBudget.maxUnavailable must be a count of at least 1 or a percentage "
                    "from 1% to 100% (0 would block every node drain)")


def _schedules(items: Any) -> tuple[Schedule, ...]:
    """spec.autoscaling.schedules; SpecError names the field."""
    try:
        return parse_schedules(items)
    except ValueError as exc:
        raise SpecError(str(exc)) from None


def parse_spec(spec: Mapping[str, Any]) -> LLMDeploymentSpec:
    """Turn the `spec` of an LLMDeployment into typed objects; raise SpecError with the field name."""
    model = spec.get("model") or {}
    if not model.get("source"):
        raise SpecError("spec.model.source is required")
    token = model.get("tokenSecretRef") or {}
    cache = model.get("cache") or {}
    runtime = spec.get("runtime") or {}
    if runtime.get("name", "foresail") not in RUNTIMES:
        raise SpecError(f"spec.runtime.name must be one of {', '.join(RUNTIMES)}")
    resources = spec.get("resources") or {}
    env, env_from = _env(runtime)
    scaling = spec.get("autoscaling") or {}
    slo = scaling.get("slo") or {}
    forecast = scaling.get("forecast") or {}
    mode = scaling.get("mode", "predictive")
    if mode not in MODES:
        raise SpecError(f"spec.autoscaling.mode must be one of {', '.join(MODES)}")
    demand_unit = scaling.get("demandUnit", "requests")
    if demand_unit not in DEMAND_UNITS:
        raise SpecError(f"spec.autoscaling.demandUnit must be one of {', '.join(DEMAND_UNITS)}")
    horizon = str(forecast.get("horizon", "auto"))
    if not _DURATION.fullmatch(horizon) or horizon != "auto" and _duration_s(horizon) > MAX_HORIZON_S:
        raise SpecError("spec.autoscaling.forecast.horizon must be auto or a duration of at most a day (86400s or "
                        "1440m), such as 300s or 5m")
    parsed = LLMDeploymentSpec(
        model=ModelSpec(
            source=str(model["source"]),
            revision=_argument(model, "revision"),
            served_model_name=_argument(model, "servedModelName"),
            token_secret=_token_secret(token),
            token_secret_key=token.get("key", "token"),
            cache_pvc=cache.get("pvc"),
            cache_host_path=_host_path(cache),
        ),
        runtime=RuntimeSpec(
            name=runtime.get("name", "foresail"),
            image=_image(runtime.get("image")),
            args=_args(runtime.get("args") or ()),
            env=env,
            env_from=env_from,
            mounts=tuple(runtime.get("mounts") or ()),
            drain_s=int(runtime.get("drainSeconds", 110)),
            image_pull_secrets=tuple(str(ref["name"]) for ref in runtime.get("imagePullSecrets") or ()),
            service_account=runtime.get("serviceAccountName"),
        ),
        resources=ResourceSpec(
            gpus=int(resources.get("gpus", 0)),
            gpu_resource=str(resources.get("gpuResource", "nvidia.com/gpu")),
            cpu=_quantity(resources, "cpu"),
            memory=_quantity(resources, "memory"),
            ephemeral_storage=_quantity(resources, "ephemeralStorage"),
            node_selector=_labels(resources.get("nodeSelector"), "spec.resources.nodeSelector"),
            tolerations=_tolerations(resources.get("tolerations")),
            priority_class_name=_priority_class(resources.get("priorityClassName")),
            affinity=_affinity(resources.get("affinity")),
            topology_spread=_topology_spread(resources.get("topologySpreadConstraints")),
        ),
        autoscaling=AutoscalingSpec(
            mode=mode,
            demand_unit=demand_unit,
            interval_s=float(scaling.get("intervalSeconds", 15)),
            ttft_s=float(slo.get("ttftSeconds", 2.0)),
            capacity_per_replica=(
                None if slo.get("capacityPerReplica") is None else float(slo["capacityPerReplica"])
            ),
            attainment_target=(
                None if slo.get("attainmentTarget") is None else float(slo["attainmentTarget"])
            ),
            kv_cache_saturation=float(slo.get("kvCacheSaturation", 0.8)),
            horizon=horizon,
            cold_start_s=float(forecast.get("coldStartSeconds", 120)),
            quantile=float(forecast.get("quantile", 0.9)),
            scale_down_stabilization_s=float(
                (scaling.get("scaleDown") or {}).get("stabilizationSeconds", 300)
            ),
            scale_to_zero=bool((scaling.get("scaleToZero") or {}).get("enabled", False)),
            idle_s=float((scaling.get("scaleToZero") or {}).get("idleSeconds", 600)),
            schedules=_schedules(scaling.get("schedules") or ()),
            learn_schedules=bool(scaling.get("learnSchedules", False)),
        ),
        min_replicas=int(spec.get("minReplicas", 1)),
        max_replicas=int(spec.get("maxReplicas", 10)),
        replicas=None if spec.get("replicas") is None else int(spec["replicas"]),
        max_unavailable=_max_unavailable(spec.get("disruptionBudget") or {}),
        rollout=_rollout(spec.get("rollout") or {}),
        pod_labels=_pod_metadata(spec, "labels"),
        pod_annotations=_pod_metadata(spec, "annotations"),
    )
    if parsed.min_replicas > parsed.max_replicas:
        raise SpecError("spec.minReplicas must be less than or equal to spec.maxReplicas")
    if parsed.min_replicas == 0 and not parsed.autoscaling.scale_to_zero:
        raise SpecError("spec.minReplicas may be 0 only with spec.autoscaling.scaleToZero.enabled (at zero replicas "
                        "only the activator sees demand and wakes a replica)")
    for i, schedule in enumerate(parsed.autoscaling.schedules):
        if schedule.min_replicas > parsed.max_replicas:
            raise SpecError(f"spec.autoscaling.schedules[{i}].minReplicas must be at most spec.maxReplicas")
    if parsed.resources.gpus > 1 and parsed.runtime.name == "foresail":
        raise SpecError("spec.resources.gpus: the foresail runtime runs a model on one GPU (0 or 1); vllm, tgi "
                        "and sglang use more, in tensor parallel")
    if parsed.resources.gpus > 1 and parsed.resources.gpu_resource.startswith("nvidia.com/mig-"):
        raise SpecError("spec.resources.gpus: a process uses one MIG slice: 0 or 1 with a nvidia.com/mig-* "
                        "gpuResource (tensor parallel needs whole GPUs)")
    return parsed
