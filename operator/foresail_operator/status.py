"""The LLMDeployment status: replica counts mirrored from the Deployment, and conditions.

Conditions follow the Kubernetes API conventions: type, status ("True", "False", "Unknown"), a
CamelCase reason, a human message, and lastTransitionTime that changes only when status changes.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

from foresail_operator.plan import HASH_ANNOTATION

DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"  # the ReplicaSet controller removes low costs first
AUTOSCALING_OFF = "AutoscalingOff"  # the reason of the decision loop's conditions while autoscaling.mode is off
CONDITION_TYPES = ("Ready", "Progressing", "Degraded", "MetricsAvailable", "ForecastReady", "ScalingLimited")
# The status fields only the decision loop writes, removed when autoscaling is off. status.capacity stays: a loop
# started again (autoscaling on) carries on from what was learned for the same replicas.
LOOP_FIELDS = ("recommendedReplicas", "forecast", "sloGovernor", "learnedSchedules")
# Container waiting reasons that will not fix themselves: the spec or the cluster needs a change.
FAILING_REASONS = {
    "ErrImagePull": "ImagePullFailed",
    "ImagePullBackOff": "ImagePullFailed",
    "InvalidImageName": "ImagePullFailed",
    "CreateContainerConfigError": "ContainerConfigError",
    "CreateContainerError": "ContainerConfigError",
    "CrashLoopBackOff": "CrashLoop",
}


def now_iso() -> str:
    """The current time as RFC 3339, the way Kubernetes writes timestamps."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp, or None."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class PodSummary:
    """What the operator needs to know about one inference pod."""

    name: str
    created: float | None
    ready_since: float | None
    problem: tuple[str, str] | None  # (reason, message) when the pod cannot start
    deletion_cost: str | None = None  # its controller.kubernetes.io/pod-deletion-cost annotation
    metrics_url: str | None = None  # its own /metrics (pod IP, prometheus.io/port and /path annotations)
    terminating: bool = False  # deleted, shutting down (metadata.deletionTimestamp)
    first_ready: float | None = None  # when it first became ready, where known (handlers.owned_pods remembers it)
    restarted: bool = False  # a container of it restarted: its readiness may be a later one than its first
    uid: str = ""
    # first_ready is as handlers.owned_pods saw it; None: its first readiness was not seen (it was first seen ready)
    watched: bool = False

    @classmethod
    def of(cls, pod: Mapping[str, Any]) -> "PodSummary":
        """Summarise a Pod object."""
        meta = pod.get("metadata") or {}
        status = pod.get("status") or {}
        ready_since = unready_since = None
        problem = None
        for cond in status.get("conditions") or []:
            if cond.get("type") == "Ready":
                since = parse_time(cond.get("lastTransitionTime"))
                ready_since, unready_since = (since, None) if cond.get("status") == "True" else (None, since)
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                problem = ("Unschedulable", cond.get("message") or "the pod cannot be scheduled")
        statuses = list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or [])
        for cs in statuses:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in FAILING_REASONS:
                reason = FAILING_REASONS[waiting["reason"]]
                detail = f"container {cs.get('name')}: {waiting['reason']}: {waiting.get('message', '')}".strip()
                problem = (reason, detail + _last_exit(cs))
            elif ready_since is None and _retrying(cs, unready_since):
                problem = ("CrashLoop", f"container {cs.get('name')}: not ready again after {cs['restartCount']} "
                                        f"restarts{_last_exit(cs)}")
        annotations = meta.get("annotations") or {}
        return cls(meta.get("name", ""), parse_time(meta.get("creationTimestamp")), ready_since, problem,
                   annotations.get(DELETION_COST), _metrics_url(status.get("podIP"), annotations),
                   bool(meta.get("deletionTimestamp")),
                   restarted=any(cs.get("restartCount") for cs in status.get("containerStatuses") or []),
                   uid=meta.get("uid", ""))

    @property
    def cold_start_s(self) -> float | None:
        """Seconds from pod creation to its first readiness (not a later one: a readiness blip, a restart); None
        where that is not known: a pod handlers.owned_pods first saw ready (``watched``, no first_ready), or one
        first seen ready after a container restarted."""
        ready = self.first_ready if self.watched or self.first_ready is not None else (
            None if self.restarted else self.ready_since)
        if self.created is None or ready is None:
            return None
        return max(0.0, ready - self.created)


OOM_HINT = "raise resources.memory, the container's memory limit"


def _retrying(cs: Mapping[str, Any], unready_since: float | None) -> bool:
    """Whether a container runs again after a failure (its last exit code not 0) and has not been ready since it
    started (the pod's Ready=False from before): a crash loop between two CrashLoopBackOff waits."""
    last = (cs.get("lastState") or {}).get("terminated") or {}
    running = (cs.get("state") or {}).get("running")
    if running is None or cs.get("ready") or not cs.get("restartCount") or last.get("exitCode") in (None, 0):
        return False
    started = parse_time(running.get("startedAt"))
    return unready_since is None or started is None or unready_since <= started


def _last_exit(cs: Mapping[str, Any]) -> str:
    """How a container that restarts last ended, e.g. " (last exit: OOMKilled, code 137: raise ...)", with the
    container's termination message (the last line of a failed model download's log), cut to 200 characters."""
    last = (cs.get("lastState") or {}).get("terminated") or {}
    if not last.get("reason"):
        return ""
    hint = f": {OOM_HINT}" if last["reason"] == "OOMKilled" else ""
    said = " ".join(str(last.get("message") or "").split())[-200:]
    return f" (last exit: {last['reason']}, code {last.get('exitCode')}{hint}{': ' + said if said else ''})"


def pod_warnings(pod: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """What happened to a pod that a person should hear about once, as (key, reason, message): an eviction
    (key: the pod's uid), or a container killed for memory (key: uid, container and the dead container's id,
    the same before and after its restart)."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    uid, name = meta.get("uid", ""), meta.get("name", "")
    out = []
    if status.get("phase") == "Failed" and status.get("reason") == "Evicted":
        message = status.get("message") or "no reason given"
        hint = "; raise resources.ephemeralStorage" if "ephemeral" in message.lower() else ""
        out.append((f"{uid}/evicted", "PodEvicted", f"pod {name} was evicted: {message}{hint}"))
    for cs in status.get("containerStatuses") or []:
        for state in ("state", "lastState"):  # the death as it happens, and once the container restarted
            ended = (cs.get(state) or {}).get("terminated") or {}
            if ended.get("reason") == "OOMKilled":
                death = ended.get("containerID") or ended.get("finishedAt") or cs.get("restartCount")
                out.append((f"{uid}/{cs.get('name')}/{death}", "OOMKilled",
                            f"container {cs.get('name')} of pod {name} ran out of memory (OOMKilled; restarts: "
                            f"{cs.get('restartCount') or 0}): {OOM_HINT}"))
    return out


def _metrics_url(ip: str | None, annotations: Mapping[str, str]) -> str | None:
    """Where a pod serves its metrics, as the prometheus.io annotations the operator plans say."""
    port = annotations.get("prometheus.io/port")
    if not ip or not port:
        return None
    host = f"[{ip}]" if ":" in ip else ip
    return f"http://{host}:{port}{annotations.get('prometheus.io/path', '/metrics')}"


def measured_cold_start(pods: Iterable[PodSummary], recent: int = 5) -> float | None:
    """The median cold start of the most recently created ready pods."""
    done = sorted((p for p in pods if p.cold_start_s is not None), key=lambda p: p.created or 0)
    values = [p.cold_start_s for p in done[-recent:] if p.cold_start_s is not None]
    return round(statistics.median(values), 1) if values else None


@dataclass
class Conditions:
    """Builds the conditions list, keeping lastTransitionTime where status did not change."""

    previous: list[Mapping[str, Any]]
    generation: int | None
    out: dict[str, dict[str, Any]] = field(default_factory=dict)

    def set(self, type_: str, status: bool | None, reason: str, message: str) -> None:
        """Set one condition (None = Unknown)."""
        value = "Unknown" if status is None else ("True" if status else "False")
        old = next((c for c in self.previous if c.get("type") == type_), None)
        since = None if old is None or old.get("status") != value else old.get("lastTransitionTime")
        self.out[type_] = {
            "type": type_,
            "status": value,
            "reason": reason,
            "message": message,
            "lastTransitionTime": since or now_iso(),
            "observedGeneration": self.generation,
        }

    def keep(self, type_: str, default: tuple[bool | None, str, str], unless: str = "") -> None:
        """Keep a condition another component owns, or set a default if it has none yet (or one of reason
        ``unless``: written before that component ran)."""
        old = next((c for c in self.previous if c.get("type") == type_), None)
        if old is not None and not (unless and old.get("reason") == unless):
            self.out[type_] = dict(old)
        else:
            self.set(type_, *default)

    def as_list(self) -> list[dict[str, Any]]:
        """The conditions in a stable order."""
        return [self.out[t] for t in CONDITION_TYPES if t in self.out]


def _replica_failures(name: str, dep_status: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The Deployment's ReplicaFailure=True condition as a problem: its ReplicaSet cannot create (or delete) pods,
    so no pod shows why (a ServiceAccount, PriorityClass or ResourceQuota refusing them, a PodSecurity level)."""
    return [(c.get("reason") or "ReplicaFailure", f"Deployment {name}: {c.get('message') or 'no message'}")
            for c in dep_status.get("conditions") or []
            if c.get("type") == "ReplicaFailure" and c.get("status") == "True"]


def _timed_out(name: str, dep_status: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The Deployment's Progressing=False ProgressDeadlineExceeded condition as a problem: its controller gave up
    on the rollout or scale-up after spec.progressDeadlineSeconds without progress (pods never ready)."""
    return [("ProgressDeadlineExceeded", f"Deployment {name}: {c.get('message') or 'no message'}")
            for c in dep_status.get("conditions") or []
            if c.get("type") == "Progressing" and c.get("status") == "False"
            and c.get("reason") == "ProgressDeadlineExceeded"]


def _progressing(rolled: bool, ready: int, updated: int, replicas: int, desired: int,
                 timed_out: list[tuple[str, str]]) -> tuple[bool, str, str]:
    """The Progressing condition of an existing Deployment: False once its controller gave up (`timed_out`)."""
    if timed_out:
        return (False, *timed_out[0])
    if not rolled or updated < desired or ready < desired or replicas > desired:
        verb = "rolling out" if rolled and updated < desired else "scaling"
        return (True, "RollingOut" if verb == "rolling out" else "Scaling",
                f"{verb}: {ready} ready, {updated} updated, {replicas} running, {desired} desired")
    return False, "Stable", f"{ready} replicas ready and up to date"


def workload_status(
    *,
    name: str,
    generation: int | None,
    desired: int,
    deployment: Mapping[str, Any] | None,
    pods: list[PodSummary],
    problems: list[tuple[str, str]],
    previous: Mapping[str, Any],
    autoscaling_on: bool,
    autoscaler: Mapping[str, tuple[bool | None, str, str]] | None = None,
    plan_hash: str | None = None,
) -> dict[str, Any]:
    """The status fields the reconciler owns, from the Deployment, its pods and known problems.

    `autoscaler` carries the MetricsAvailable, ForecastReady and ScalingLimited conditions from the decision loop;
    without it, the previous ones are kept. With autoscaling off, the loop's fields (LOOP_FIELDS) are null.
    A Deployment is rolled out once its controller saw its generation and, given `plan_hash` (the spec's plan),
    it carries that plan.
    """
    dep_status = (deployment or {}).get("status") or {}
    dep_meta = (deployment or {}).get("metadata") or {}
    replicas = int(dep_status.get("replicas") or 0)
    ready = int(dep_status.get("readyReplicas") or 0)
    updated = int(dep_status.get("updatedReplicas") or 0)
    planned = plan_hash is None or (dep_meta.get("annotations") or {}).get(HASH_ANNOTATION) == plan_hash
    rolled = deployment is not None and planned and dep_status.get("observedGeneration") == dep_meta.get("generation")
    conds = Conditions(list(previous.get("conditions") or []), generation)

    # a timed-out rollout of the current plan (of an older one, the Deployment is about to change), last: what the
    # pods or the ReplicaSet say is more precise
    timed_out = _timed_out(name, dep_status) if rolled else []
    problems = (problems + _replica_failures(name, dep_status) + [p.problem for p in pods if p.problem is not None]
                + timed_out)
    if problems:
        reason, message = problems[0]
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        conds.set("Degraded", True, reason, message + more)
    else:
        conds.set("Degraded", False, "AsExpected", "no problem found")

    if deployment is None:
        conds.set("Ready", False, "DeploymentMissing", f"Deployment {name} does not exist yet")
        conds.set("Progressing", True, "Creating", f"creating Deployment {name}")
    else:
        if desired == 0:
            conds.set("Ready", True, "ScaledToZero",
                      "scaled to zero: a request through the activator waits while a replica starts; sent to "
                      "the Service it fails. A replica is also asked for a cold start ahead of demand that came "
                      "a day or a week earlier, or by kubectl scale")
        elif ready >= desired:
            conds.set("Ready", True, "ReplicasReady", f"{ready}/{desired} replicas ready")
        else:
            conds.set("Ready", False, "ReplicasNotReady", f"{ready}/{desired} replicas ready")
        conds.set("Progressing", *_progressing(rolled, ready, updated, replicas, desired, timed_out))

    if autoscaling_on and autoscaler:
        for type_, value in autoscaler.items():
            conds.set(type_, *value)
    elif autoscaling_on:  # the loop's, until it decides; not "off" from before autoscaling was turned on
        conds.keep("MetricsAvailable", (None, "Pending", "the autoscaler has not read metrics yet"), AUTOSCALING_OFF)
        conds.keep("ForecastReady", (None, "Pending", "the forecaster has not run yet"), AUTOSCALING_OFF)
        conds.keep("ScalingLimited", (None, "Pending", "the autoscaler has not decided yet"), AUTOSCALING_OFF)
    else:
        for type_ in ("MetricsAvailable", "ForecastReady", "ScalingLimited"):
            conds.set(type_, False, AUTOSCALING_OFF, "autoscaling.mode is off")

    status: dict[str, Any] = {
        "observedGeneration": generation,
        "replicas": replicas,
        "readyReplicas": ready,
        "desiredReplicas": desired,
        "conditions": conds.as_list(),
    }
    if not autoscaling_on:
        status.update(dict.fromkeys(LOOP_FIELDS))  # null: the merge patch removes them
    cold = measured_cold_start(pods)
    if cold is not None:
        status["coldStartSeconds"] = cold
    return status
