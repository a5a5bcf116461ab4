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
            value = int(self.horizon[:-1])
            return float(value * 60 if self.horizon.endswith("m") else value)
        return (measured_cold_start_s or self.cold_start_s) + self.interval_s


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
_QUALIFIED_NAME = re.compile(  # a label or annotation key: [DNS subdomain/]name
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_PERCENT = re.compile(r"^([0-9]|[1-9][0-9]|100)%$")


def _count_or_percent(value: Any, least: int) -> bool:
    """Whether ``value`` is an int-or-string count of at least ``least``, or a percentage from ``least``% to 100%."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value >= least
    return isinstance(value, str) and bool(_PERCENT.match(value)) and int(value[:-1]) >= least


def _quantity(resources: Mapping[str, Any], key: str) -> str | None:
    """An int-or-string resource quantity of spec.resources as text (8 and "8" alike), or None."""
    return None if resources.get(key) is None else str(resources[key])


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
    for key in values:
        prefix, _, name = key.rpartition("/")
        if not _QUALIFIED_NAME.match(key) or len(prefix) > 253 or len(name) > 63:
            raise SpecError(f"spec.podMetadata.{kind}: {key!r} is not a valid key (an optional DNS-subdomain "
                            "prefix and '/', then a name of at most 63 letters, digits, '-', '_' or '.')")
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
    if not _DURATION.match(horizon):
        raise SpecError("spec.autoscaling.forecast.horizon must be auto or a duration such as 300s or 5m")
    parsed = LLMDeploymentSpec(
        model=ModelSpec(
            source=str(model["source"]),
            revision=model.get("revision"),
            served_model_name=model.get("servedModelName"),
            token_secret=token.get("name"),
            token_secret_key=token.get("key", "token"),
            cache_pvc=cache.get("pvc"),
            cache_host_path=cache.get("hostPath"),
        ),
        runtime=RuntimeSpec(
            name=runtime.get("name", "foresail"),
            image=runtime.get("image"),
            args=tuple(str(a) for a in runtime.get("args") or ()),
            env=tuple(runtime.get("env") or ()),
            env_from=tuple(runtime.get("envFrom") or ()),
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
            node_selector=dict(resources.get("nodeSelector") or {}),
            tolerations=tuple(resources.get("tolerations") or ()),
            priority_class_name=resources.get("priorityClassName"),
            affinity=dict(resources.get("affinity") or {}),
            topology_spread=tuple(resources.get("topologySpreadConstraints") or ()),
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
    return parsed
