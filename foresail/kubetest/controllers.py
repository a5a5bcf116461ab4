"""A simulated Deployment controller and kubelet, for tests (opt-in: ``--simulate-pods``).

What it does:
- For each Deployment it keeps ``spec.replicas`` Pods owned directly by the Deployment, named
  ``<deployment>-<template hash>-<5 random>``, labelled with the template's labels plus
  ``pod-template-hash``. A template change starts a simplified rolling update: all new pods
  are created at once and an old pod is deleted for each new pod that becomes ready. With
  ``strategy.type: Recreate`` every old pod is deleted first, and new pods start only once none of them
  is left, terminating ones included (its maxUnavailable is 0, as the real controller's).
- It maintains the Deployment status (observedGeneration, replicas, updatedReplicas,
  readyReplicas, availableReplicas, unavailableReplicas; zero counts are omitted as the real
  server omits them) and the ``Available``, ``Progressing`` and ``ReplicaFailure`` conditions as
  syncRolloutStatus sets them: a completed rollout stays ``NewReplicaSetAvailable`` through scaling and
  replaced pods, a rollout's ``lastUpdateTime`` moves with each bit of progress and
  ``ProgressDeadlineExceeded`` comes ``progressDeadlineSeconds`` after the last; a pod it cannot create
  sets ``ReplicaFailure`` ``FailedCreate`` with the API error (the first one, until a pass creates them all).
- An object it cannot handle (an error other than an API error) is logged with its traceback, once per
  object and error, and skipped; the other objects go on.
- As the kubelet, every Pod becomes Running and Ready ``ready_delay_s`` after it is first seen,
  unless an image matches ``unpullable_images`` (waiting ``ErrImagePull``, later
  ``ImagePullBackOff``) or its env/envFrom references a missing Secret or ConfigMap, or an env var's
  ``resourceFieldRef.containerName`` names no container of the pod (waiting ``CreateContainerConfigError``, e.g.
  ``secret "x" not found``, ``container x not found``); it recovers once the cause is gone.
- Pods to remove go in the ReplicaSet controller's order: not ready first, then the lowest
  ``controller.kubernetes.io/pod-deletion-cost``, then the most recently ready, then the newest.
- As the kubelet, it registers Node ``kubetest-node`` (``status.nodeInfo.kubeletVersion`` the server's
  version) when it starts.
- As the scheduler, it binds every Pod to node ``kubetest-node`` (``spec.nodeName``), so a DELETE
  is graceful (the API server keeps the pod, ``deletionTimestamp`` set, and the Deployment
  controller replaces it at once); as the kubelet, it runs the container's preStop ``sleep``
  (bounded by the grace period) and, the container exiting on SIGTERM, then removes the pod.

What it does NOT emulate: ReplicaSet objects (pods are owned by the Deployment), maxSurge and
maxUnavailable pacing, minReadySeconds, paused Deployments, probes, restarts and crash loops,
scheduling and resources (nothing is ever unschedulable), volumes, preStop hooks other than a sleep,
containers that outlive SIGTERM, Events, StatefulSets/Jobs, and Services' Endpoints.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import logging
import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .api import Api, now, random_suffix
from .builtin_admission import DELETION_COST, KUBERNETES_VERSION, valid_deletion_cost
from .errors import ApiError
from .store import Obj, name_of, namespace_of

log = logging.getLogger(__name__)

_HASH_CHARS = "bcdfghjklmnpqrstvwxz2456789"
NODE = "kubetest-node"


@dataclass
class ControllerConfig:
    """Timing and failure rules of the simulation."""

    ready_delay_s: float = 0.5
    unpullable_images: str = r".*(doesnotexist|unpullable).*"
    tick_s: float = 0.1


def node_status() -> dict[str, Any]:
    """The status a Ready kubelet of the test server's Kubernetes version writes for its Node."""
    info = dict.fromkeys(("machineID", "systemUUID", "bootID", "kernelVersion"), "kubetest")
    info.update(osImage="kubetest", containerRuntimeVersion="kubetest://0", operatingSystem="linux",
                architecture="amd64", kubeletVersion=f"v{KUBERNETES_VERSION}", kubeProxyVersion="")
    return {"nodeInfo": info, "conditions": [
        {"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now(),
         "lastTransitionTime": now(), "message": "kubelet is posting ready status"}]}


def node(name: str) -> dict[str, Any]:
    """A Node object as a kubelet registers it (its status goes through the status subresource)."""
    return {"apiVersion": "v1", "kind": "Node", "metadata": {
        "name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}}}


def template_hash(template: dict[str, Any]) -> str:
    """A stable short hash of a pod template (the ``pod-template-hash`` label)."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(_HASH_CHARS[b % len(_HASH_CHARS)] for b in digest[:10])


def termination_times(pod_spec: dict[str, Any]) -> tuple[float, float]:
    """(preStop sleep, terminationGracePeriodSeconds) of a pod spec: the first container's preStop
    ``exec: sleep N`` or ``sleep: {seconds: N}`` (0 for any other hook or none), and the grace period
    (Kubernetes' default 30 s when unset)."""
    grace = float(pod_spec.get("terminationGracePeriodSeconds", 30))
    containers = pod_spec.get("containers") or [{}]
    hook = ((containers[0].get("lifecycle") or {}).get("preStop")) or {}
    command = (hook.get("exec") or {}).get("command") or []
    try:
        if len(command) == 2 and command[0] == "sleep":
            return float(command[1]), grace
        return float((hook.get("sleep") or {}).get("seconds", 0)), grace
    except ValueError:
        return 0.0, grace


def _is_ready(pod: Obj) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def _missing_container(pod: Obj, container: dict[str, Any]) -> str | None:
    """The kubelet's error for an env var's resourceFieldRef whose containerName names no container of the pod (the
    API server accepts any name; the kubelet finds none and cannot create the container)."""
    spec = pod.get("spec") or {}
    names = {c.get("name") for kind in ("containers", "initContainers") for c in spec.get(kind) or []
             if isinstance(c, dict)}
    for env in container.get("env") or []:
        ref = ((env or {}).get("valueFrom") or {}).get("resourceFieldRef") or {}
        if ref.get("containerName") and ref["containerName"] not in names:
            return f"container {ref['containerName']} not found"
    return None


def deletion_cost(pod: Obj) -> int:
    """The pod's ``controller.kubernetes.io/pod-deletion-cost``; 0 when unset or not an int32, as the
    ReplicaSet controller reads it."""
    value = ((pod.get("metadata") or {}).get("annotations") or {}).get(DELETION_COST)
    return int(value) if isinstance(value, str) and valid_deletion_cost(value) else 0


def _seconds(stamp: str | None) -> float:
    """Seconds since the epoch of an RFC 3339 timestamp; 0 when there is none or it is not one (the server
    stores any string a client writes there)."""
    try:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() if stamp else 0.0
    except ValueError:
        return 0.0


def _ready_since(pod: Obj) -> str | None:
    return next((c.get("lastTransitionTime") for c in (pod.get("status") or {}).get("conditions") or []
                 if c.get("type") == "Ready" and c.get("status") == "True"), None)


def deletion_order(pods: list[Obj]) -> list[Obj]:
    """``pods`` in the order the ReplicaSet controller removes them on a scale-down: not ready before
    ready, lower deletion cost first, then ready for the shortest time, then created most recently."""
    return sorted(pods, key=lambda pod: (_is_ready(pod), deletion_cost(pod), -_seconds(_ready_since(pod)),
                                         -_seconds(pod["metadata"].get("creationTimestamp")),
                                         pod["metadata"]["name"]))


def _condition(old: list[dict[str, Any]], kind: str, status: str, reason: str = "",
               message: str = "", with_update_time: bool = False) -> dict[str, Any]:
    """A condition that keeps its timestamps while its status, reason and message stay."""
    previous = next((c for c in old if c.get("type") == kind), {})
    same = (previous.get("status"), previous.get("reason", ""), previous.get("message", "")) == (
        status, reason, message)
    condition: dict[str, Any] = {"type": kind, "status": status}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    if with_update_time:
        condition["lastUpdateTime"] = previous.get("lastUpdateTime") if same else now()
    transitioned = previous.get("status") != status
    condition["lastTransitionTime"] = now() if transitioned or not previous.get(
        "lastTransitionTime") else previous["lastTransitionTime"]
    return condition


def _strategy(deployment: Obj) -> dict[str, Any]:
    """The Deployment's ``spec.strategy``."""
    return deployment["spec"].get("strategy") or {}


def _max_unavailable(deployment: Obj, replicas: int) -> int:
    """How many of ``replicas`` may be unavailable: the rolling update's maxUnavailable (a percentage rounds
    down), 0 for any other strategy, as the real controller's MaxUnavailable()."""
    strategy = _strategy(deployment)
    if strategy.get("type", "RollingUpdate") != "RollingUpdate":
        return 0
    value = (strategy.get("rollingUpdate") or {}).get("maxUnavailable", "25%")
    if isinstance(value, str) and value.endswith("%"):
        return int(replicas * int(value[:-1]) / 100)
    return int(value)


def _progressing(deployment: Obj, counts: dict[str, int], replicas: int, rs_name: str,
                 rolled: bool) -> dict[str, Any]:
    """The Progressing condition as the real syncRolloutStatus sets it from the previous status and the new
    ``counts``: a completed rollout keeps ``NewReplicaSetAvailable`` (scaling and replaced pods do not reopen
    it); otherwise progress (a new template, ``rolled``, or more updated, ready or available pods, or fewer
    old ones) refreshes ``lastUpdateTime``, and ``progressDeadlineSeconds`` without any is a timeout."""
    status = deployment.get("status") or {}
    conditions = status.get("conditions") or []
    previous = next((c for c in conditions if c.get("type") == "Progressing"), None)
    reason = (previous or {}).get("reason")
    if previous and not rolled and reason == "NewReplicaSetAvailable" and \
            counts["replicas"] == counts["updatedReplicas"]:
        return previous
    if counts["updatedReplicas"] == counts["replicas"] == counts["availableReplicas"] == replicas:
        return _condition(conditions, "Progressing", "True", "NewReplicaSetAvailable",
                          f'ReplicaSet "{rs_name}" has successfully progressed.', True)
    old_pods = status.get("replicas", 0) - status.get("updatedReplicas", 0)
    if previous is None or rolled or counts["replicas"] - counts["updatedReplicas"] < old_pods or any(
            counts[k] > status.get(k, 0) for k in ("updatedReplicas", "readyReplicas", "availableReplicas")):
        return {**_condition(conditions, "Progressing", "True", "ReplicaSetUpdated",
                             f'ReplicaSet "{rs_name}" is progressing.', True), "lastUpdateTime": now()}
    deadline = float(deployment["spec"].get("progressDeadlineSeconds", 600))
    if reason == "ProgressDeadlineExceeded" or (
            reason != "NewReplicaSetAvailable" and time.time() - _seconds(previous.get("lastUpdateTime")) > deadline):
        return _condition(conditions, "Progressing", "False", "ProgressDeadlineExceeded",
                          f'ReplicaSet "{rs_name}" has timed out progressing.', True)
    return previous


class Simulator:
    """Runs the simulated Deployment controller and kubelet on the server's event loop."""

    def __init__(self, api: Api, config: ControllerConfig | None = None) -> None:
        self.api = api
        self.config = config or ControllerConfig()
        self._unpullable = re.compile(self.config.unpullable_images)
        self._first_seen: dict[str, float] = {}
        self._stopping: dict[str, float] = {}  # pod uid -> when its kubelet began stopping it
        self._rollouts: dict[str, str] = {}  # uid: the template hash of the last status written
        self._failures: dict[str, str] = {}  # uid: the unexpected error last logged for the object
        self._hashes: dict[str, tuple[int, str]] = {}  # uid: (generation, template hash)
        self._task: asyncio.Task[None] | None = None
        self.pods = api.resource("", "v1", "pods")
        self.deployments = api.resource("apps", "v1", "deployments")

    def start(self) -> None:
        """Register the node and start reconciling in the background."""
        self._register_node()
        self._task = asyncio.create_task(self._run())

    def _register_node(self) -> None:
        """Create Node NODE, with the node info a kubelet of the server's version reports."""
        nodes = self.api.resource("", "v1", "nodes")
        self._write_status(nodes, self.api.create(nodes, "", node(NODE)), node_status())

    async def stop(self) -> None:
        """Stop reconciling."""
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        _, sub = self.api.store.subscribe(None, None, droppable=False)
        try:
            while True:
                self.reconcile()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(sub.queue.get(), self.config.tick_s)
                    while not sub.queue.empty():
                        sub.queue.get_nowait()
        finally:
            self.api.store.unsubscribe(sub)

    def reconcile(self) -> None:
        """One pass over every Deployment and Pod; writes only what changed.

        Reads the stored objects without copying them (the simulator never modifies them), and
        groups the pods by owner once per pass, so a pass costs O(Deployments + Pods).
        """
        owned: dict[str, list[Obj]] = {}
        for pod in self.api.store.stored(self.pods.key):
            for uid in {r.get("uid") for r in pod["metadata"].get("ownerReferences") or []}:
                owned.setdefault(uid, []).append(pod)
        for deployment in self.api.store.stored(self.deployments.key):
            with self._isolated(deployment):
                self._reconcile_deployment(deployment, [
                    p for p in owned.get(deployment["metadata"]["uid"], [])
                    if namespace_of(p) == namespace_of(deployment)])
        for pod in self.api.store.stored(self.pods.key):
            with self._isolated(pod):
                self._reconcile_pod(pod)

    @contextlib.contextmanager
    def _isolated(self, obj: Obj) -> Iterator[None]:
        """Confine a failure to one object's step: an API error waits for the next pass (the object changed or
        went meanwhile); any other is logged with its traceback, once per object and error, and skipped."""
        uid = obj["metadata"]["uid"]
        try:
            yield
        except ApiError:
            pass
        except Exception as exc:
            if self._failures.get(uid) != repr(exc):
                self._failures[uid] = repr(exc)
                log.exception("the simulated controllers skip %s %s/%s", obj.get("kind"), namespace_of(obj),
                              name_of(obj))
        else:
            self._failures.pop(uid, None)

    # -- Deployment controller ------------------------------------------------------------

    def _reconcile_deployment(self, deployment: Obj, owned: list[Obj]) -> None:
        """Converge one Deployment's pods (``owned``: those it owns); of one being deleted only the status is
        brought up to date, as the real controller's syncStatusOnly does."""
        meta, spec = deployment["metadata"], deployment.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        current_hash = self._template_hash(deployment)
        current: list[Obj] = []
        old: list[Obj] = []
        stopping_old = False
        for pod in owned:
            updated = pod["metadata"].get("labels", {}).get("pod-template-hash") == current_hash
            if pod["metadata"].get("deletionTimestamp"):
                stopping_old = stopping_old or not updated
            else:
                (current if updated else old).append(pod)
        failure = None
        if not meta.get("deletionTimestamp"):
            failure = self._scale(deployment, replicas, current, old, current_hash, stopping_old)
        self._write_deployment_status(deployment, replicas, current, old, current_hash, failure)

    def _scale(self, deployment: Obj, replicas: int, current: list[Obj], old: list[Obj], current_hash: str,
               stopping_old: bool) -> str | None:
        """Create and delete pods towards ``replicas`` of the current template; ``current`` and ``old`` (the pods
        of the current and of older templates) are updated to match. With the Recreate strategy the old pods go
        first, and no pod is created while one of them (``stopping_old``: a terminating one) is left. Returns the
        API error of a pod that could not be created, if any."""
        if _strategy(deployment).get("type") == "Recreate" and (old or stopping_old):
            for pod in list(old):
                self._delete_pod(pod)
                old.remove(pod)
            return None
        template = (deployment.get("spec") or {}).get("template") or {}
        failure = None
        try:
            for _ in range(replicas - len(current)):
                current.append(self._create_pod(deployment, template, current_hash))
        except ApiError as exc:
            failure = exc.message
        for pod in deletion_order(current)[:max(0, len(current) - replicas)]:
            self._delete_pod(pod)
            current.remove(pod)
        ready_new = sum(1 for p in current if _is_ready(p))
        keep_old = max(0, replicas - ready_new)
        for pod in deletion_order(old)[:max(0, len(old) - keep_old)]:
            self._delete_pod(pod)
            old.remove(pod)
        return failure

    def _template_hash(self, deployment: Obj) -> str:
        """The Deployment's template hash, computed once per generation (a template change
        bumps the generation)."""
        meta = deployment["metadata"]
        generation = int(meta.get("generation") or 0)
        cached = self._hashes.get(meta["uid"])
        if cached is None or cached[0] != generation:
            template = (deployment.get("spec") or {}).get("template") or {}
            cached = (generation, template_hash(template))
            self._hashes[meta["uid"]] = cached
        return cached[1]

    def _create_pod(self, deployment: Obj, template: dict[str, Any], pod_hash: str) -> Obj:
        meta = deployment["metadata"]
        template_meta = template.get("metadata") or {}
        pod: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": f"{meta['name']}-{pod_hash}-{random_suffix()}",
                "namespace": meta["namespace"],
                "labels": {**(template_meta.get("labels") or {}), "pod-template-hash": pod_hash},
                "annotations": dict(template_meta.get("annotations") or {}),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": meta["name"], "uid": meta["uid"],
                                     "controller": True, "blockOwnerDeletion": True}],
            },
            "spec": copy.deepcopy(template.get("spec") or {}),
        }
        if not pod["metadata"]["annotations"]:
            del pod["metadata"]["annotations"]
        return self.api.create(self.pods, meta["namespace"], pod)

    def _delete_pod(self, pod: Obj) -> None:
        self.api.delete(self.pods, namespace_of(pod), name_of(pod))
        self._first_seen.pop(pod["metadata"]["uid"], None)

    def _write_deployment_status(self, deployment: Obj, replicas: int, current: list[Obj],
                                 old: list[Obj], pod_hash: str, failure: str | None) -> None:
        """Write the status of ``current`` and ``old`` pods; ``failure``: why a pod could not be created."""
        ready = sum(1 for p in current + old if _is_ready(p))
        pods = len(current) + len(old)
        counts = {"replicas": pods, "updatedReplicas": len(current),
                  "readyReplicas": ready, "availableReplicas": ready,
                  "unavailableReplicas": max(0, max(replicas, pods) - ready)}
        previous = deployment.get("status") or {}
        conditions = previous.get("conditions") or []
        rs_name = f"{deployment['metadata']['name']}-{pod_hash}"
        if ready >= replicas - _max_unavailable(deployment, replicas):
            available = _condition(conditions, "Available", "True", "MinimumReplicasAvailable",
                                   "Deployment has minimum availability.", True)
        else:
            available = _condition(conditions, "Available", "False",
                                   "MinimumReplicasUnavailable",
                                   "Deployment does not have minimum availability.", True)
        rolled = self._rollouts.get(deployment["metadata"]["uid"]) != pod_hash
        written = [available, _progressing(deployment, counts, replicas, rs_name, rolled)]
        if failure:  # the real ReplicaSet controller keeps its first failure's condition until a pass succeeds
            kept = next((c for c in conditions if c.get("type") == "ReplicaFailure"), None)
            written.append(kept or _condition([], "ReplicaFailure", "True", "FailedCreate", failure, True))
        status = {"observedGeneration": deployment["metadata"].get("generation", 1),
                  **{k: v for k, v in counts.items() if v}, "conditions": written}
        if status != previous:
            self._write_status(self.deployments, deployment, status)
        self._rollouts[deployment["metadata"]["uid"]] = pod_hash

    def _write_status(self, rt: Any, obj: Obj, status: dict[str, Any]) -> None:
        latest = self.api.store.get(rt.key, namespace_of(obj), name_of(obj))
        if latest is None:
            return
        new = copy.deepcopy(latest)
        new["status"] = status
        self.api.update(rt, latest, new, subresource="status")

    # -- kubelet ---------------------------------------------------------------------------

    def _reconcile_pod(self, pod: Obj) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        if meta.get("deletionTimestamp"):
            self._stop_pod(pod)
            return
        if not spec.get("nodeName"):  # the scheduler's binding
            bound = copy.deepcopy(pod)
            bound["spec"]["nodeName"] = NODE
            self.api.store.put(self.pods.key, bound, pod)
            return
        first = self._first_seen.setdefault(meta["uid"], time.monotonic())
        age = time.monotonic() - first
        previous = pod.get("status") or {}
        conditions = previous.get("conditions") or []
        containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
        started = age >= self.config.ready_delay_s
        statuses = [self._container_status(pod, c, started, age) for c in containers]
        all_ready = started and all(s.get("ready") for s in statuses)
        running = started and all("running" in s["state"] for s in statuses)
        ready_state = "True" if all_ready else "False"
        status: dict[str, Any] = {
            "phase": "Running" if running else "Pending",
            "conditions": [
                _condition(conditions, "PodScheduled", "True"),
                _condition(conditions, "Initialized", "True"),
                _condition(conditions, "ContainersReady", ready_state,
                           "" if all_ready else "ContainersNotReady",
                           "" if all_ready else "containers with unready status: [" + " ".join(
                               s["name"] for s in statuses if not s.get("ready")) + "]"),
                _condition(conditions, "Ready", ready_state,
                           "" if all_ready else "ContainersNotReady",
                           "" if all_ready else "containers with unready status: [" + " ".join(
                               s["name"] for s in statuses if not s.get("ready")) + "]"),
            ],
            "hostIP": "10.0.0.1",
            "podIP": previous.get("podIP") or f"10.244.{random.randint(0, 255)}."
                                               f"{random.randint(1, 254)}",
            "startTime": previous.get("startTime") or now(),
            "containerStatuses": statuses,
            "qosClass": "BestEffort",
        }
        status["podIPs"] = [{"ip": status["podIP"]}]
        if status != previous:
            self._write_status(self.pods, pod, status)

    def _stop_pod(self, pod: Obj) -> None:
        """The kubelet's part in a graceful deletion: the preStop sleep of a started container runs
        (at most the grace period), the container exits on SIGTERM, and the pod is removed."""
        meta = pod["metadata"]
        if not meta.get("deletionGracePeriodSeconds"):
            return  # removed already, or held by finalizers
        since = self._stopping.setdefault(meta["uid"], time.monotonic())
        pre_stop_s, _ = termination_times(pod.get("spec") or {})
        running = (pod.get("status") or {}).get("phase") == "Running"
        if time.monotonic() - since >= min(pre_stop_s if running else 0.0,
                                           float(meta["deletionGracePeriodSeconds"])):
            self._stopping.pop(meta["uid"], None)
            self._first_seen.pop(meta["uid"], None)
            self.api.delete(self.pods, namespace_of(pod), name_of(pod), {"gracePeriodSeconds": 0})

    def _container_status(self, pod: Obj, container: dict[str, Any], started: bool,
                          age: float) -> dict[str, Any]:
        image = str(container.get("image", ""))
        previous: dict[str, Any] = next(
            (s for s in (pod.get("status") or {}).get("containerStatuses") or []
             if s.get("name") == container.get("name")), {})
        base = {"name": container.get("name", ""), "image": image, "imageID": "",
                "restartCount": 0, "started": False, "ready": False}
        if not started:
            return {**base, "state": {"waiting": {"reason": "ContainerCreating"}}}
        if self._unpullable.match(image):
            backoff = age >= 2 * self.config.ready_delay_s
            reason = "ImagePullBackOff" if backoff else "ErrImagePull"
            message = (f'Back-off pulling image "{image}"' if backoff else
                       f'rpc error: code = NotFound desc = failed to pull and unpack image '
                       f'"{image}": not found')
            return {**base, "state": {"waiting": {"reason": reason, "message": message}}}
        problem = self._config_problem(namespace_of(pod), container) or _missing_container(pod, container)
        if problem:
            return {**base, "state": {"waiting": {"reason": "CreateContainerConfigError",
                                                  "message": problem}}}
        started_at = (previous.get("state") or {}).get("running", {}).get("startedAt") or now()
        container_id = hashlib.sha256(f"{pod['metadata']['uid']}/{base['name']}".encode())
        return {**base, "imageID": f"{image}@sha256:{hashlib.sha256(image.encode()).hexdigest()}",
                "containerID": f"containerd://{container_id.hexdigest()}",
                "started": True, "ready": True, "state": {"running": {"startedAt": started_at}}}

    def _config_problem(self, namespace: str, container: dict[str, Any]) -> str | None:
        """Why the kubelet could not build this container's environment, if it could not."""
        refs: list[tuple[str, dict[str, Any], str | None]] = []
        for env in container.get("env") or []:
            source = (env or {}).get("valueFrom") or {}
            for kind, field in (("secret", "secretKeyRef"), ("configmap", "configMapKeyRef")):
                if source.get(field):
                    refs.append((kind, source[field], source[field].get("key")))
        for env_from in container.get("envFrom") or []:
            for kind, field in (("secret", "secretRef"), ("configmap", "configMapRef")):
                if (env_from or {}).get(field):
                    refs.append((kind, env_from[field], None))
        for kind, ref, key in refs:
            if ref.get("optional"):
                continue
            plural = "secrets" if kind == "secret" else "configmaps"
            obj = self.api.store.get(("", plural), namespace, ref.get("name", ""))
            if obj is None:
                return f'{kind} "{ref.get("name")}" not found'
            if key and key not in (obj.get("data") or {}) and key not in (
                    obj.get("binaryData") or {}):
                label = "Secret" if kind == "secret" else "ConfigMap"
                return f"couldn't find key {key} in {label} {namespace}/{ref.get('name')}"
        return None
