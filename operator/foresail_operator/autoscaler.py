"""The decision loop of one LLMDeployment: metrics, forecast, policy, scale, report.

One loop per LLMDeployment with autoscaling on (a kopf daemon, so peering pauses it on standby
replicas). The policy is foresail.autoscaler.policy.ForesailPolicy, the same code the backtester
replays. Rules:
- missing or stale metrics: hold the current replicas (never scale down without data) and set
  MetricsAvailable=False with the reason;
- fewer of the pods' scrape targets up than pods ready (a pod Prometheus cannot reach): the demand read
  is that of the others only, so no scale-down until they are all scraped (MetricsAvailable=True, PartlyScraped);
- advisory mode: compute and report recommendedReplicas, never write replicas;
- a scale write the API server refuses (RBAC, an admission webhook, a quota): ScalingLimited=True (ScaleFailed)
  with its error and a Warning Event; the count stays, and is not taken for another writer's;
- a manual scale (kubectl scale) is applied at once by the reconciler and then held as a floor for
  the scale-down stabilisation window; scale-up stays possible;
- the forecast horizon is the measured cold start plus one interval when the spec says auto;
- a schedule's floor (autoscaling.schedules, applied by the policy) holds from a horizon before its
  window opens until it closes; with autoscaling.learnSchedules, so do those of the windows the policy
  finds recurring in the history, shown in status.learnedSchedules and logged when they change.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import kopf
import numpy as np

from foresail.autoscaler.capacity import CapacityModel
from foresail.autoscaler.policy import Decision, ForesailPolicy, Observation, PolicyConfig
from foresail_operator import telemetry
from foresail_operator.activation import requests_waiting
from foresail_operator.collector import Collector
from foresail_operator.kube import ApiError, KubeClient, path_for
from foresail_operator.metrics import MAX_POINTS, MetricsError, Signals
from foresail_operator.reconciler import record_scale
from foresail_operator.runtimes import runtime_for
from foresail_operator.scaler import set_replicas
from foresail_operator.spec import LLMDeploymentSpec
from foresail_operator.status import PodSummary, measured_cold_start, parse_time

DEFAULT_CAPACITY = {"requests": 1.0, "tokens": 1000.0}  # per replica until learned, when the spec gives none
DEFAULT_TOKENS_PER_REQUEST = 1000.0  # what a queued request counts for in tokens until completions show it
UNIT_LABEL = {"requests": "req/s", "tokens": "tok/s"}
BACKFILL_S = 7 * 24 * 3600.0
BACKFILL_RETRY_S = 120.0  # how long after a failed backfill (Prometheus down or restarting) it is tried again
OVERRIDES_TO_REPORT = 2  # decisions in a row that find the replicas changed by another writer (one may be a race)


def _sig(value: float | None) -> float | None:
    """Round to 3 significant digits, so that status changes only when the figure does."""
    if value is None or not math.isfinite(value) or value == 0:
        return value
    return round(value, 2 - int(math.floor(math.log10(abs(value)))))


class Reading(NamedTuple):
    """One deployment's demand as the loop reads it, in its unit."""

    done: float  # completed per second (0 when read at the activator)
    demand: float  # arriving per second
    each: float  # what a queued request counts for
    at_door: bool = False  # the activator's count of arriving requests: no pod reports


@dataclass
class Loop:
    """The state one LLMDeployment's loop keeps between decisions (rebuilt from Prometheus and the status on
    restart)."""

    key: tuple[str, str]
    forecast_step_s: float
    rate_window_s: float = 120.0  # the rate() window demand is read over (config.rate_window)
    policy: ForesailPolicy | None = None
    capacity: CapacityModel | None = None
    last_in_system: float | None = None
    last_time: float | None = None  # when the snapshot that ``last_in_system`` came from was taken
    last_scraped: float | None = None  # the pods' scrape targets up in that snapshot
    growth: float = 0.0  # the queue's growth per second between the last two snapshots
    unit: str = "requests"  # the spec's autoscaling.demandUnit
    tokens_per_request: float = DEFAULT_TOKENS_PER_REQUEST  # completed tokens per completed request, lately
    images: dict[str, str] = field(default_factory=dict)  # the operator's default image per runtime (config.images)
    basis: str = ""  # what the capacity model was learned for (capacity_basis)
    logged_capacity: float = DEFAULT_CAPACITY["requests"]  # the capacity the log last reported
    backfilled: bool = False  # whether the policy's history was loaded from Prometheus (once per policy)
    backfill_retry_at: float | None = None  # when a failed backfill is tried again (None: not tried yet)
    live_from: float | None = None  # where the demand the policy's decisions saw starts: a later backfill ends there
    left: int | None = None  # the replica count the last acting decision left the Deployment at
    refused: str | None = None  # the API server's refusal of the last scale write, until one succeeds
    unscraped: str | None = None  # why scale-down is held for pods Prometheus does not scrape, while it is
    overrides: int = 0  # decisions in a row that found another count there
    writer: str | None = None  # the autoscalers found targeting the Deployment when that was reported
    manual: tuple[int, float] | None = None  # the replicas of the last manual scale (kubectl scale), and when
    cold_start: float | None = None  # the last measured cold start: it holds while no pod is ready (zero replicas)
    view: dict[str, Any] = field(default_factory=dict)
    learned: list[dict[str, Any]] = field(default_factory=list)  # the learned windows last logged

    def configure(self, spec: LLMDeploymentSpec, cold_start_s: float | None,
                  status: dict[str, Any] | None = None) -> PolicyConfig:
        """(Re)build the policy configuration from the spec and the measured cold start (None where no pod is
        ready: the last one measured, else the status's, still holds, and the horizon with it). The capacity model
        starts over when the starting figure or what a replica's capacity depends on (``capacity_basis``)
        changed; a new one carries on from the one ``status.capacity`` shows, where that was learned in the
        same unit, from the same starting figure, for the same basis: after a restart, replicas sized by the
        learned figure may never saturate again to correct the spec's. A new policy carries on from the
        status too (``_carry_on``)."""
        a = spec.autoscaling
        initial = a.capacity_per_replica or DEFAULT_CAPACITY[a.demand_unit]
        basis = capacity_basis(spec, self.images)
        if a.demand_unit != self.unit:  # history, capacity and forecasts were counted in the other unit
            telemetry.forget_figures(*self.key, self.unit)
            self.unit, self.policy, self.capacity = a.demand_unit, None, None
        elif self.policy is not None and self.policy.config.quantile != a.quantile:
            telemetry.FORECAST[self.unit].remove(*self.key, str(self.policy.config.quantile))  # the old one's series
        if self.capacity is None or self.capacity.initial != initial or self.basis != basis:
            self.capacity, self.basis = CapacityModel(initial), basis
            saved = (status or {}).get("capacity")
            # a status without a basis, or with one without the image, was written by an operator before they were
            # kept: taken as this basis, so that an upgrade keeps what was learned
            if isinstance(saved, dict) and saved.get("unit") == a.demand_unit and saved.get("initial") == initial \
                    and saved.get("basis", basis) in (basis, _replica_basis(spec)):
                estimate, samples = _figure(saved.get("perReplica")), _figure(saved.get("samples"))
                if estimate is not None and samples is not None:
                    self.capacity.resume(estimate, int(samples))
            self.logged_capacity = self.capacity.capacity
        # the saturation thresholds apply from the next scrape; what was learned under the old ones stays
        self.capacity.ttft_slo_s, self.capacity.kv_saturation = a.ttft_s, a.kv_cache_saturation
        if cold_start_s is None:
            cold_start_s = self.cold_start if self.cold_start is not None else _figure(
                (status or {}).get("coldStartSeconds"))
        self.cold_start = cold_start_s
        horizon = a.horizon_s(cold_start_s)
        config = PolicyConfig(
            min_replicas=spec.min_replicas, max_replicas=spec.max_replicas,
            capacity=self.capacity.capacity, cold_start_s=max(0.0, horizon - a.interval_s),
            interval_s=a.interval_s, quantile=a.quantile,
            scale_down_stabilization_s=a.scale_down_stabilization_s, scale_to_zero=a.scale_to_zero,
            idle_s=a.idle_s, predictive=a.mode in ("predictive", "advisory"),
            slo_target=a.attainment_target or 0.0, slo_wait_s=a.ttft_s, schedules=a.schedules,
            learn_schedules=a.learn_schedules, unit=UNIT_LABEL[a.demand_unit], rate_window_s=self.rate_window_s,
        )
        if self.policy is None:
            self.policy = ForesailPolicy(config, forecast_step_s=self.forecast_step_s)
            _carry_on(self.policy, status or {}, a.demand_unit)
            self.backfilled, self.backfill_retry_at, self.live_from = False, None, None
        elif config != self.policy.config:
            changes = {k: v for k, v in vars(config).items() if getattr(self.policy.config, k) != v}
            self.policy.reconfigure(**changes)
        return config

    def needs_backfill(self, spec: LLMDeploymentSpec, now: float | None = None) -> bool:
        """True at start, once ``BACKFILL_RETRY_S`` passed after a backfill that failed, and when the spec's
        demandUnit changed: the history is to be loaded (again) from Prometheus, before the next decision."""
        now = time.time() if now is None else now
        due = self.backfill_retry_at is None or now >= self.backfill_retry_at
        return (not self.backfilled and due) or spec.autoscaling.demand_unit != self.unit

    def read(self, signals: Signals, taken_at: float) -> Reading | None:
        """The demand in ``signals`` (the collector's snapshot taken at ``taken_at``), or None when it counts
        tokens and the runtime's token counters have no series.

        Arrivals are completions plus the growth of what is in the system (queued + running requests), or the
        requests the activator counted arriving where that is more (it counts them before any pod does, also
        those it holds while replicas start) or no pod reports. The growth is timed by the snapshots, not by the
        decisions: decisions between two snapshots read the growth the last two showed. Where the two counted a
        different number of pods' scrape targets up (a scrape failed, so one pod's gauges left the sums for one
        snapshot; a pod came or went), the sums are not of the same pods and there is no growth. A request counts
        for 1, or in tokens for the tokens per completed request lately (``DEFAULT_TOKENS_PER_REQUEST`` until a
        completion was seen)."""
        if signals.requests is None and signals.arrivals is not None:  # no pod reports
            each = self.tokens_per_request if self.unit == "tokens" else 1.0
            self.last_in_system = self.last_time = self.last_scraped = None  # it starts again when pods report
            return Reading(0.0, signals.arrivals * each, each, at_door=True)
        each = 1.0
        done = signals.requests or 0.0
        if self.unit == "tokens":
            if signals.prompt_tokens is None and signals.generation_tokens is None:
                return None
            tokens = (signals.prompt_tokens or 0.0) + (signals.generation_tokens or 0.0)
            if tokens > 0 and done > 0:
                self.tokens_per_request = tokens / done
            done, each = tokens, self.tokens_per_request
        in_system = (signals.waiting or 0.0) + (signals.running or 0.0)
        if taken_at != self.last_time:  # a new snapshot: the growth since the one before
            self.growth = 0.0
            if self.last_in_system is not None and self.last_time is not None and taken_at > self.last_time \
                    and signals.scraped == self.last_scraped:  # as many pods scraped: no failed scrape, no new pod
                self.growth = max(0.0, (in_system - self.last_in_system) / (taken_at - self.last_time))
            self.last_in_system, self.last_time, self.last_scraped = in_system, taken_at, signals.scraped
        demand = done + self.growth * each
        if signals.arrivals is not None:
            demand = max(demand, signals.arrivals * each)
        return Reading(done, demand, each)


def _carry_on(policy: ForesailPolicy, status: dict[str, Any], unit: str) -> None:
    """What a new policy takes from the status an earlier one wrote: the SLO governor's multiplier, and the
    record of recent forecast checks where the status counted demand in ``unit`` (a new unit starts the
    forecaster over), so that the headroom stays widened after a restart where the forecasts fell short."""
    multiplier = _figure(status.get("sloGovernor"))
    if multiplier is not None:
        policy.resume_governor(multiplier)
    forecast, capacity = status.get("forecast"), status.get("capacity")
    if isinstance(forecast, dict) and isinstance(capacity, dict) and capacity.get("unit") == unit:
        coverage, checked, quantile = (_figure(forecast.get(k)) for k in ("coverage", "checked", "quantile"))
        if coverage is not None and checked is not None and quantile is not None:
            policy.resume_coverage(coverage, int(checked), quantile)


def _figure(value: object) -> float | None:
    """A figure read back from the status: a finite int or float (not a bool), else None (a garbled status)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def capacity_basis(spec: LLMDeploymentSpec, images: dict[str, str] | None = None) -> str:
    """What one replica's capacity depends on, as status.capacity.basis: the runtime, the model and its
    revision, the GPUs per replica, the image the pods run (the spec's, else ``images``' or the runtime's
    default) and the args (a hash of them), e.g. ``vllm/org/model@main x2 nvidia.com/gpu vllm/vllm-openai:v0.11.0
    args 1f2e3d4c``."""
    args = hashlib.sha256(json.dumps(spec.runtime.args).encode()).hexdigest()[:8] if spec.runtime.args else ""
    return f"{_replica_basis(spec)} {runtime_for(spec, images).image}" + (f" args {args}" if args else "")


def _replica_basis(spec: LLMDeploymentSpec) -> str:
    """The basis without the image and args, as operators before they were kept wrote it."""
    revision = f"@{spec.model.revision}" if spec.model.revision else ""
    return (f"{spec.runtime.name}/{spec.model.source}{revision} x{spec.resources.gpus} "
            f"{spec.resources.gpu_resource}")


def _capacity_source(model: CapacityModel, spec: LLMDeploymentSpec) -> str:
    """Where the capacity per replica in use comes from."""
    if model.learned:
        return f"learned from {model.n_samples_} saturated scrapes"
    if spec.autoscaling.capacity_per_replica is not None:
        return "spec (slo.capacityPerReplica)"
    unit = spec.autoscaling.demand_unit
    return f"default {DEFAULT_CAPACITY[unit]:g} {UNIT_LABEL[unit]} until learned"


def _capacity_status(model: CapacityModel, spec: LLMDeploymentSpec, basis: str,
                     signals: Signals | None) -> dict[str, Any]:
    """status.capacity: demand per replica in use (req/s or tok/s), where that figure comes from, the KV
    cache's use, and what a restart needs to carry on learning (unit, starting figure, basis, samples)."""
    out: dict[str, Any] = {"perReplica": _sig(model.capacity), "source": _capacity_source(model, spec),
                           "unit": spec.autoscaling.demand_unit, "initial": model.initial,
                           "basis": basis, "samples": model.n_samples_,
                           "kvCacheUsage": None}  # null: the merge patch removes a figure the pods stopped giving
    if signals is not None and signals.kv_cache is not None:
        out["kvCacheUsage"] = round(signals.kv_cache, 2)
    return out


def _history_s(policy: ForesailPolicy) -> int:
    """Seconds of demand history the forecaster holds (survives restarts through the backfill)."""
    history = policy.forecaster.history_
    return int((~np.isnan(history)).sum() * policy.forecaster.step_s) if history is not None else 0


def _learned(loop: Loop, spec: LLMDeploymentSpec, unit: str, logger: logging.Logger) -> list[dict[str, Any]] | None:
    """status.learnedSchedules (None without autoscaling.learnSchedules): the windows the policy found
    recurring, with the evidence and their floors as held (at most maxReplicas); logged (so also posted as
    an Event by kopf) when they change."""
    assert loop.policy is not None
    if not spec.autoscaling.learn_schedules:
        loop.learned = []
        return None
    cap = spec.max_replicas
    found = loop.policy.learned
    held = [replace(w, replicas=min(w.replicas, cap)) for w in found]
    capped = [f"; it needs {w.replicas}, held at maxReplicas {cap}" if w.replicas > cap else "" for w in found]
    entries = [w.entry() for w in held]
    if entries != loop.learned:
        message = ("held from now on: " + "; ".join(w.describe(unit) + c for w, c in zip(held, capped, strict=True))
                   if held else "no window recurs in the demand history any more")
        logger.info("%s/%s: learned schedules %s", *loop.key, message)
        loop.learned = entries
    return [{**e, "evidence": w.evidence(unit) + c} for e, w, c in zip(entries, held, capped, strict=True)]


def _manual_hold(status: dict[str, Any], spec: LLMDeploymentSpec, now: float) -> bool:
    """True while a manual scale is younger than the scale-down stabilisation window."""
    reason = status.get("lastScaleReason") or ""
    since = parse_time(status.get("lastScaleTime"))
    return reason.startswith("manual scale") and since is not None and \
        now - since < spec.autoscaling.scale_down_stabilization_s


def _unscraped(signals: Signals | None, ready: int, at_door: bool) -> str | None:
    """Why the demand read is that of only some of the ready pods (fewer scrape targets up than pods ready), or
    None."""
    if signals is None or signals.scraped is None or at_door or signals.scraped >= ready:
        return None
    return (f"only {signals.scraped:.0f} of the {ready} ready pods' metrics are scraped (Prometheus's up): the "
            "demand read is the others' only")


def _conditions(signals: Signals | None, error: str | None, decision: Decision, policy: ForesailPolicy,
                spec: LLMDeploymentSpec, current: int, at_door: bool,
                unscraped: str | None) -> dict[str, tuple[bool | None, str, str]]:
    if at_door:
        metrics = (True, "CountedAtActivator", "no pod reports demand; the activator's count of arriving requests "
                   "is read instead")
    elif unscraped:
        metrics = (True, "PartlyScraped", f"{unscraped}; no scale-down below {current} replicas until every ready "
                   "pod is scraped")
    elif signals is not None:
        metrics = (True, "MetricsFresh", "demand and queue metrics are being read")
    else:
        metrics = (False, error.split(":")[0] if error else "NoData",
                   f"{error or 'no data'}; holding {current} replicas until metrics return")
    if spec.autoscaling.mode == "reactive":
        forecast = (False, "ReactiveMode", "autoscaling.mode is reactive: no forecast")
    elif decision.forecast_ready:
        forecast = (True, "Forecasting", f"forecasting {decision.horizon_s:.0f} s ahead")
    else:
        why = policy.last_forecast.reason if policy.last_forecast is not None else "no metrics yet"
        forecast = (False, "InsufficientHistory" if signals is not None else "MetricsMissing",
                    f"{why}; the reactive floor decides")
    return {"MetricsAvailable": metrics, "ForecastReady": forecast, "ScalingLimited": _limited(decision, spec)}


def _limited(decision: Decision, spec: LLMDeploymentSpec) -> tuple[bool, str, str]:
    """ScalingLimited, as the HPA reports it: whether spec.minReplicas or spec.maxReplicas bound what the
    current demand and the forecast need."""
    need = max(decision.reactive_floor, decision.predicted_replicas or 0)
    if need > spec.max_replicas:
        return True, "TooManyReplicas", f"{need} replicas needed, capped at spec.maxReplicas {spec.max_replicas}"
    if need < spec.min_replicas and decision.replicas == spec.min_replicas:
        return True, "TooFewReplicas", f"{need} replicas needed, held at spec.minReplicas {spec.min_replicas}"
    return False, "DesiredWithinRange", f"the {need} replicas needed are within spec.minReplicas and maxReplicas"


async def _overridden(loop: Loop, acting: bool, current: int, body: dict[str, Any], client: KubeClient,
                      logger: logging.Logger) -> str | None:
    """Why the replica count is not Foresail's to set, when decisions in a row find that another writer
    changed the count the last one left (an HPA or a KEDA ScaledObject on the Deployment); else None."""
    if not acting or loop.left is None or current == loop.left:
        loop.overrides, loop.writer = 0, None
        return None
    loop.overrides += 1
    if loop.overrides < OVERRIDES_TO_REPORT:
        return None
    ns, name = loop.key
    if loop.overrides == OVERRIDES_TO_REPORT:
        loop.writer = await _autoscalers_of(client, ns, name, logger)
    writer = loop.writer or "a HorizontalPodAutoscaler or a KEDA ScaledObject that targets it"
    message = (f"another writer keeps changing Deployment {name}'s replicas (to {current}, from the {loop.left} "
               f"Foresail set), such as {writer}; Foresail sets them back at each decision. Remove the other "
               "autoscaler, or set autoscaling.mode: off to leave the count to it; to scale by hand: kubectl scale "
               f"llmdeployment {name}")
    if loop.overrides == OVERRIDES_TO_REPORT:
        logger.warning("%s/%s: %s", ns, name, message)
        kopf.warn(body, reason="ReplicasOverridden", message=message)
    return message


async def _autoscalers_of(client: KubeClient, namespace: str, deployment: str, logger: logging.Logger) -> str | None:
    """The HorizontalPodAutoscalers (KEDA makes one per ScaledObject) that target the Deployment, named; None
    when there are none or they cannot be listed."""
    try:
        hpas = await client.request("GET", path_for("autoscaling/v2", "horizontalpodautoscalers", namespace))
    except ApiError as exc:
        logger.info("%s/%s: cannot list HorizontalPodAutoscalers to name the other writer: %s", namespace,
                    deployment, exc)
        return None
    names = []
    for hpa in hpas.get("items") or []:
        target = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        if target.get("kind") == "Deployment" and target.get("name") == deployment:
            meta = hpa.get("metadata") or {}
            keda = (meta.get("labels") or {}).get("scaledobject.keda.sh/name")
            names.append(f"HorizontalPodAutoscaler {meta.get('name')}"
                         + (f" (KEDA ScaledObject {keda})" if keda else ""))
    return " and ".join(names) or None


async def backfill(loop: Loop, collector: Collector, runtime: str, logger: logging.Logger) -> None:
    """Load the deployment's demand history from Prometheus, the durable store, into the forecaster: at start,
    after a demandUnit change started the history over, and every ``BACKFILL_RETRY_S`` after a failure until
    Prometheus answers (with history or without). A backfill after the policy's decisions ends at the forecast step
    in which the demand they saw starts, and keeps that demand as they saw it."""
    if loop.capacity is not None and loop.capacity.learned and loop.backfill_retry_at is None:  # (Loop.configure)
        logger.info("%s/%s: capacity per replica %.3g %s, learned before from %d saturated scrapes (status)",
                    *loop.key, loop.capacity.capacity, UNIT_LABEL[loop.unit], loop.capacity.n_samples_)
    if collector.source is None or loop.policy is None:
        loop.backfilled = True
        return
    now = time.time()
    step_s = loop.forecast_step_s
    end = math.floor((now if loop.live_from is None else min(now, loop.live_from)) / step_s) * step_s  # on the steps
    span = min(BACKFILL_S, step_s * MAX_POINTS)
    try:
        times, values = await asyncio.to_thread(
            collector.source.demand_history, loop.key, runtime, end - span, end, step_s, loop.unit,
            loop.tokens_per_request)
    except MetricsError as exc:
        loop.backfill_retry_at = now + BACKFILL_RETRY_S
        logger.warning("could not backfill history from Prometheus: %s; trying again in %.0f s, the forecaster "
                       "meanwhile learns from the decisions alone", exc, BACKFILL_RETRY_S)
        return
    loop.backfilled = True
    if not times:
        logger.info("%s/%s: no demand history in Prometheus to backfill, the forecaster starts from its prior",
                    *loop.key)
        return
    loop.policy.warm_start(times, values)
    logger.info("%s/%s: backfilled %d points (%.0f min) of demand history from Prometheus",
                *loop.key, len(times), (times[-1] - times[0]) / 60)


def _learn_capacity(loop: Loop, measured: Reading, signals: Signals, ready: int, spec: LLMDeploymentSpec,
                    logger: logging.Logger) -> None:
    """Feed the capacity model what the pods served; hand the policy a changed capacity and log it once it
    has moved by a tenth or more."""
    assert loop.policy is not None and loop.capacity is not None
    capacity = loop.capacity.observe(measured.done, signals.waiting, ready, signals.ttft_p90, signals.kv_cache)
    if capacity != loop.policy.config.capacity:
        loop.policy.reconfigure(capacity=capacity)
    if abs(capacity / loop.logged_capacity - 1) >= 0.1:
        logger.info("%s/%s: capacity per replica %.3g -> %.3g %s (%s)", *loop.key, loop.logged_capacity,
                    capacity, UNIT_LABEL[loop.unit], _capacity_source(loop.capacity, spec))
        loop.logged_capacity = capacity


def _log_unscraped(loop: Loop, unscraped: str | None, logger: logging.Logger) -> None:
    """Log when scale-down starts being held for pods Prometheus does not scrape, and when that ends."""
    if unscraped and not loop.unscraped:
        logger.warning("%s/%s: %s; no scale-down until every ready pod is scraped", *loop.key, unscraped)
    elif loop.unscraped and not unscraped:
        logger.info("%s/%s: every ready pod is scraped again", *loop.key)
    loop.unscraped = unscraped


async def _scale(loop: Loop, client: KubeClient, body: dict[str, Any], spec: LLMDeploymentSpec,
                 current: int, target: int, reason: str, pods: list[PodSummary], logger: logging.Logger) -> str | None:
    """Set the Deployment's replicas from ``current`` to ``target`` and record it; None when done, else why
    the API server refused, for ScalingLimited (logged, and posted as a Warning Event, when the refusal starts or
    its error changes; the next decision tries again)."""
    ns, name = loop.key
    try:
        await set_replicas(client, loop.key, current, target, spec.runtime.name, pods, logger)
    except ApiError as exc:
        message = (f"cannot scale Deployment {name} {current} -> {target}, the API server refused: {exc}. The "
                   "replicas stay as they are and each decision tries again: let the operator patch "
                   "deployments/scale (its RBAC; the chart's rbac.create), or ease the admission webhook or quota "
                   "that refuses it")
        if str(exc) != loop.refused:
            logger.warning("%s/%s: %s", ns, name, message)
            kopf.warn(body, reason="ScaleFailed", message=message)
        loop.refused = str(exc)
        return message
    if loop.refused:
        logger.info("%s/%s: the Deployment's replicas can be set again, after: %s", ns, name, loop.refused)
        loop.refused = None
    logger.info("scaled %s/%s %d -> %d: %s", ns, name, current, target, reason)
    kopf.info(body, reason="Scaled", message=f"{current} -> {target}: {reason}")
    try:
        await record_scale(client, ns, name, current, target, reason)
    except ApiError as exc:  # the replicas are set: only their record in the status failed
        logger.warning("scaled %s/%s %d -> %d, but cannot record it in the status: %s", ns, name, current, target, exc)
    return None


def _decide(loop: Loop, body: dict[str, Any], signals: Signals | None, measured: Reading | None, ready: int,
            current: int, now: float) -> Decision:
    """The policy's decision on what was read; the queue counts the requests held at the activator, which no
    pod reports, and the reason says where demand or queue came from the activator."""
    assert loop.policy is not None
    demand, each = (measured.demand, measured.each) if measured is not None else (None, 1.0)
    waiting = None if signals is None else (signals.waiting or 0.0) * each
    held = max(requests_waiting(body, now), round(signals.held or 0) if signals is not None else 0)
    if waiting is not None and held:
        waiting = max(waiting, held * each)
    counted = signals is not None and signals.arrivals is not None  # the activator counts this deployment's requests
    decision = loop.policy.decide(Observation(time_s=now, demand=demand, waiting=waiting, ready_replicas=ready,
                                              provisioned_replicas=current, counted=counted, arrival_size=each))
    if measured is not None and measured.at_door:
        decision.reason += " (demand counted at the activator: no pod reports it)"
    if held and waiting is not None:
        decision.reason += f" ({held} of the queued requests held at the activator)"
    return decision


def _export(loop: Loop, spec: LLMDeploymentSpec, decision: Decision, action: str, desired: int,
            demand: float | None, cold_start: float | None, coverage: tuple[float, int] | None) -> None:
    """Set the decision's gauges; a figure there is none of has no series (as in the status), not its last
    value."""
    assert loop.capacity is not None
    labels = loop.key
    telemetry.DECISIONS.labels(*labels, action).inc()
    telemetry.DESIRED.labels(*labels).set(desired)
    telemetry.RECOMMENDED.labels(*labels).set(decision.replicas)
    telemetry.REACTIVE_FLOOR.labels(*labels).set(decision.reactive_floor)
    telemetry.HORIZON.labels(*labels).set(decision.horizon_s)
    if demand is not None:
        telemetry.DEMAND[loop.unit].labels(*labels).set(demand)
    else:
        telemetry.DEMAND[loop.unit].remove(*labels)
    upper_label = str(spec.autoscaling.quantile)
    if decision.forecast_upper is not None:
        telemetry.FORECAST[loop.unit].labels(*labels, "0.5").set(decision.forecast_median or 0.0)
        telemetry.FORECAST[loop.unit].labels(*labels, upper_label).set(decision.forecast_upper)
    else:
        telemetry.FORECAST[loop.unit].remove(*labels, "0.5")
        telemetry.FORECAST[loop.unit].remove(*labels, upper_label)
    telemetry.CAPACITY[loop.unit].labels(*labels).set(loop.capacity.capacity)
    if cold_start is not None:
        telemetry.COLD_START.labels(*labels).set(cold_start)
    if coverage is not None:
        telemetry.COVERAGE.labels(*labels).set(coverage[0])
        telemetry.QUANTILE.labels(*labels).set(spec.autoscaling.quantile)
    else:
        telemetry.COVERAGE.remove(*labels)
        telemetry.QUANTILE.remove(*labels)


def _forecast_status(loop: Loop, spec: LLMDeploymentSpec, decision: Decision, demand: float | None,
                     coverage: tuple[float, int] | None) -> dict[str, Any]:
    """status.forecast; a figure there is none of is null, which the merge patch removes."""
    assert loop.policy is not None
    forecast: dict[str, Any] = {"horizonSeconds": round(decision.horizon_s), "quantile": spec.autoscaling.quantile,
                                "demand": _sig(demand), "historySeconds": _history_s(loop.policy),
                                "median": None, "upper": None, "coverage": None, "checked": None}
    if decision.forecast_upper is not None:
        q = round(spec.autoscaling.quantile * 100)
        forecast.update(median=_sig(decision.forecast_median), upper=_sig(decision.forecast_upper),
                        summary=f"{_sig(decision.forecast_upper)} {UNIT_LABEL[loop.unit]} p{q} "
                                f"@+{decision.horizon_s:.0f}s")
    else:
        forecast["summary"] = "reactive" if spec.autoscaling.mode == "reactive" else "warming up"
    if coverage is not None:
        forecast.update(coverage=round(coverage[0], 4), checked=coverage[1])
    return forecast


async def step(loop: Loop, client: KubeClient, collector: Collector, body: dict[str, Any],
               spec: LLMDeploymentSpec, deployment: dict[str, Any] | None, pods: list[PodSummary],
               logger: logging.Logger) -> Decision:
    """One decision: read signals, decide, scale (unless advisory), update the loop's status view. A scale the API
    server refuses is reported there (ScalingLimited, ScaleFailed), not raised."""
    started = time.perf_counter()
    now = time.time()
    ns, name = loop.key
    current = int(((deployment or {}).get("spec") or {}).get("replicas") or 0)
    ready = int(((deployment or {}).get("status") or {}).get("readyReplicas") or 0)
    loop.configure(spec, measured_cold_start(pods), body.get("status"))
    cold_start = loop.cold_start
    assert loop.policy is not None and loop.capacity is not None
    signals, error = collector.lookup(loop.key, replicas=current)
    measured = loop.read(signals, collector.taken_at or now) if signals is not None else None
    if signals is not None and measured is None:
        signals, error = None, f"NoData: no token counters for {ns}/{name} (autoscaling.demandUnit is tokens)"
    at_door = measured is not None and measured.at_door
    unscraped = _unscraped(signals, ready, at_door)
    _log_unscraped(loop, unscraped, logger)
    if signals is not None and measured is not None and not at_door and not unscraped:  # the pods' signals, all
        _learn_capacity(loop, measured, signals, ready, spec, logger)
    decision = _decide(loop, body, signals, measured, ready, current, now)
    if loop.live_from is None:  # the policy's own history starts with this decision's interval
        loop.live_from = now - spec.autoscaling.interval_s
    target = decision.replicas
    status = body.get("status") or {}
    if (unscraped or _manual_hold(status, spec, now)) and target < current:
        target = current
    if loop.manual is not None and now - loop.manual[1] < spec.autoscaling.scale_down_stabilization_s:
        target = max(target, spec.clamp(loop.manual[0]))  # held here too: the status read may predate it
    acting = spec.autoscaling.mode in ("predictive", "reactive") and deployment is not None
    overridden = await _overridden(loop, acting, current, body, client, logger)
    refused = None
    if acting and target != current:
        reason = decision.reason if target == decision.replicas else f"hold {target}: a manual scale's floor"
        refused = await _scale(loop, client, body, spec, current, target, reason, pods, logger)
    left = current if refused else target  # what the next decision checks another writer against
    loop.left = left if acting else None
    action = "up" if acting and left > current else "down" if acting and left < current else "hold"
    demand = measured.demand if measured is not None else None
    coverage = loop.policy.forecast_coverage()
    _export(loop, spec, decision, action, target if acting else current, demand, cold_start, coverage)
    conditions = _conditions(signals, error, decision, loop.policy, spec, current, at_door, unscraped)
    if overridden:
        conditions["ScalingLimited"] = (True, "ReplicasOverridden", overridden)
    if refused:
        conditions["ScalingLimited"] = (True, "ScaleFailed", refused)
    loop.view = {
        "conditions": conditions,
        "fields": {"recommendedReplicas": decision.replicas,
                   "sloGovernor": _sig(loop.policy.governor) if spec.autoscaling.attainment_target else None,
                   "forecast": _forecast_status(loop, spec, decision, demand, coverage),
                   "capacity": _capacity_status(loop.capacity, spec, loop.basis, signals),
                   "learnedSchedules": _learned(loop, spec, UNIT_LABEL[loop.unit], logger)},
    }
    telemetry.LOOP_SECONDS.observe(time.perf_counter() - started)
    return decision
