"""The Deployment, Service and PodDisruptionBudget an LLMDeployment owns, planned as data from the spec.

Pure functions: no API calls, so every pod-template rule is testable without a cluster. The
replica count is not part of the plan; scaler.py is the one place that writes it.
"""

from __future__ import annotations

import hashlib
import json
import math
import posixpath
from typing import Any

from foresail_operator.runtimes import CACHE_DIR, MODEL_DIR, PORT, Runtime
from foresail_operator.spec import LLMDeploymentSpec

OWNER_LABEL = "foresail.dev/llmdeployment"
HASH_ANNOTATION = "foresail.dev/plan-hash"
MANAGED_BY = {"app.kubernetes.io/managed-by": "foresail"}
# The default image of the init container that downloads an http(s) model: curl checks TLS certificates, and
# busybox's wget does not.
FETCH_IMAGE = "curlimages/curl:8.22.0"
# Before SIGTERM the pod serves this long while the EndpointSlices, kube-proxy and the activator stop
# sending to it (they learn of its removal at the same time as the kubelet does).
PRE_STOP_S = 5
SHUTDOWN_S = 5  # after the drain: the server's own exit
STARTUP_S = 3600  # the least time the startup probe gives a pod to load its model
# From this Kubernetes version the kubelet sleeps itself (the PodLifecycleSleepAction gate, on by default
# since 1.30); before it the runtime's image must have a `sleep` binary.
SLEEP_ACTION_SINCE = (1, 30)


def pre_stop(sleep_action: bool) -> dict[str, Any]:
    """The preStop hook that keeps a pod serving for PRE_STOP_S: the kubelet's own sleep, or `sleep` in the
    container (clusters older than SLEEP_ACTION_SINCE, or kubelets that lag their API server: see
    reconciler.kubelet_sleeps)."""
    if sleep_action:
        return {"sleep": {"seconds": PRE_STOP_S}}
    return {"exec": {"command": ["sleep", str(PRE_STOP_S)]}}


def labels(name: str, runtime: Runtime) -> dict[str, str]:
    """The app.kubernetes.io labels every owned object carries."""
    return {
        "app.kubernetes.io/name": runtime.name,
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": "inference",
        "app.kubernetes.io/part-of": "foresail",
        **MANAGED_BY,
        OWNER_LABEL: name,
    }


def selector(name: str) -> dict[str, str]:
    """The pod selector of the Deployment and the Service (immutable, so minimal)."""
    return {OWNER_LABEL: name}


def selector_string(name: str) -> str:
    """The selector as a label-selector string, for the scale subresource."""
    return ",".join(f"{k}={v}" for k, v in selector(name).items())


# The fetch-model init container's script ($1: the file, $2: the URL). A file already there is kept; else curl or,
# in an image without it, wget downloads to $1.part, moved into place once complete; a failed download fails the
# container and leaves nothing behind. A cache folder it cannot write (a hostPath is root's) is named, with the uid.
FETCH_SCRIPT = "\n".join((
    '[ -s "$1" ] && exit 0',
    'd=$(dirname "$1")',
    'mkdir -p "$d" && [ -w "$d" ] || { echo "fetch-model: uid $(id -u) cannot write to $d: make the model cache'
    ' (model.cache.hostPath on the node, or the PVC) writable by uid $(id -u)" >&2; exit 1; }',
    'if command -v curl >/dev/null; then curl -fsSL --retry 3 -o "$1.part" "$2"; else wget -q -O "$1.part" "$2"; fi'
    ' && mv "$1.part" "$1" || { rm -f "$1.part"; exit 1; }',
))


def _model_location(spec: LLMDeploymentSpec, fetch_image: str) -> tuple[str, list[dict], list[dict], list[dict]]:
    """Resolve the model source into (model argument, volumes, mounts, init containers); an http(s) source is
    downloaded by an init container of `fetch_image` (with `sh`, and `curl` or `wget`)."""
    source = spec.model.source
    volumes: list[dict] = []
    mounts: list[dict] = []
    init: list[dict] = []
    if source.startswith("pvc://"):
        claim, _, sub = source[len("pvc://"):].partition("/")
        volumes.append({"name": "model-source", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        mounts.append({"name": "model-source", "mountPath": MODEL_DIR, "readOnly": True})
        return posixpath.join(MODEL_DIR, sub) if sub else MODEL_DIR, volumes, mounts, init
    if source.startswith(("http://", "https://")):
        filename = posixpath.basename(source.split("?", 1)[0]) or "model"
        target = f"{CACHE_DIR}/downloads/{filename}"
        init.append({
            "name": "fetch-model",
            "image": fetch_image,
            "command": ["sh", "-c", FETCH_SCRIPT, "fetch", target, source],
            "volumeMounts": [{"name": "model-cache", "mountPath": CACHE_DIR}],
            "terminationMessagePolicy": "FallbackToLogsOnError",  # the pod's status shows why a download failed
            "securityContext": _container_security(non_root=True),
        })
        return target, volumes, mounts, init
    if source.startswith("hf://"):
        return source[len("hf://"):], volumes, mounts, init
    return source, volumes, mounts, init


def _container_security(non_root: bool) -> dict[str, Any]:
    """Least privilege for a container; third-party engine images often need to run as root, which keeps
    DAC_OVERRIDE: without it root may not write to a model cache folder of uid 10001 (a hostPath made as
    docs/install.md says, or what fetch-model and the foresail runtime made in a shared cache)."""
    context: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    if non_root:
        context.update(runAsNonRoot=True, runAsUser=10001, runAsGroup=10001, readOnlyRootFilesystem=True)
    else:
        context["capabilities"]["add"] = ["DAC_OVERRIDE"]
    return context


def _env(spec: LLMDeploymentSpec) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "HF_HOME", "value": f"{CACHE_DIR}/hf"},
        {"name": "HOME", "value": "/tmp"},
    ]
    if spec.model.token_secret:
        ref = {"name": spec.model.token_secret, "key": spec.model.token_secret_key}
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": ref}})
    return env + [dict(e) for e in spec.runtime.env]


def _resources(spec: LLMDeploymentSpec) -> dict[str, Any]:
    amounts: dict[str, Any] = {}
    if spec.resources.cpu:
        amounts["cpu"] = spec.resources.cpu
    if spec.resources.memory:
        amounts["memory"] = spec.resources.memory
    if spec.resources.ephemeral_storage:
        amounts["ephemeral-storage"] = spec.resources.ephemeral_storage
    limits = dict(amounts)
    if spec.resources.gpus:
        limits[spec.resources.gpu_resource] = spec.resources.gpus
    out: dict[str, Any] = {}
    if amounts:
        out["requests"] = amounts
    if limits:
        out["limits"] = limits
    return out


def _volumes(spec: LLMDeploymentSpec, volumes: list[dict[str, Any]], mounts: list[dict[str, Any]]
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The pod's volumes and the server's mounts: the model cache, /tmp, shared memory for tensor
    parallelism and the spec's ConfigMaps and Secrets, with the model location's ``volumes`` and ``mounts``."""
    if spec.model.cache_pvc:
        cache_volume: dict[str, Any] = {"persistentVolumeClaim": {"claimName": spec.model.cache_pvc}}
    elif spec.model.cache_host_path:
        cache_volume = {"hostPath": {"path": spec.model.cache_host_path, "type": "DirectoryOrCreate"}}
    else:
        cache_volume = {"emptyDir": {}}
    volumes = [{"name": "model-cache", **cache_volume}, {"name": "tmp", "emptyDir": {}}] + volumes
    mounts = [{"name": "model-cache", "mountPath": CACHE_DIR}, {"name": "tmp", "mountPath": "/tmp"}] + mounts
    if spec.resources.gpus > 1:  # tensor parallelism talks through shared memory
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory"}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    for i, mount in enumerate(spec.runtime.mounts):
        source = ({"configMap": {"name": mount["configMap"]}} if "configMap" in mount
                  else {"secret": {"secretName": mount["secret"]}})
        volumes.append({"name": f"mount-{i}", **source})
        mounts.append({"name": f"mount-{i}", "mountPath": mount["path"], "readOnly": True})
    return volumes, mounts


def _placement(name: str, spec: LLMDeploymentSpec) -> dict[str, Any]:
    """The pod spec's scheduling fields the spec sets: node selector, tolerations, priority class, affinity,
    topology spread."""
    r = spec.resources
    out: dict[str, Any] = {}
    if r.node_selector:
        out["nodeSelector"] = dict(r.node_selector)
    if r.tolerations:
        out["tolerations"] = [dict(t) for t in r.tolerations]
    if r.priority_class_name:
        out["priorityClassName"] = r.priority_class_name
    if r.affinity:
        out["affinity"] = dict(r.affinity)
    if r.topology_spread:
        # Without a labelSelector a constraint counts no pods at all: count this LLMDeployment's.
        out["topologySpreadConstraints"] = [{"labelSelector": {"matchLabels": selector(name)}, **constraint}
                                            for constraint in r.topology_spread]
    return out


def startup_checks(spec: LLMDeploymentSpec) -> int:
    """The startup probe's failureThreshold at 10-s periods: an hour, or twice the cold start the spec assumes
    where that is longer (forecast.coldStartSeconds goes up to 2 h: the pod must not be killed while loading)."""
    return math.ceil(max(STARTUP_S, 2 * spec.autoscaling.cold_start_s) / 10)


def pod_template(name: str, spec: LLMDeploymentSpec, runtime: Runtime, sleep_action: bool = False,
                 fetch_image: str = FETCH_IMAGE) -> dict[str, Any]:
    """The pod template of the inference Deployment (`sleep_action`: the cluster's kubelets sleep in preStop;
    `fetch_image`: the image that downloads an http(s) model)."""
    model, volumes, mounts, init = _model_location(spec, fetch_image)
    served_name = spec.model.served_model_name or name
    volumes, mounts = _volumes(spec, volumes, mounts)
    probe = {"httpGet": {"path": runtime.health_path, "port": "http"}}
    container: dict[str, Any] = {
        "name": "server",
        "image": runtime.image,
        "command": runtime.command(spec, model, served_name),
        "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
        "env": _env(spec),
        "resources": _resources(spec),
        # Loading weights can take many minutes: the startup probe holds off liveness until then.
        "startupProbe": {**probe, "periodSeconds": 10, "failureThreshold": startup_checks(spec),
                         "timeoutSeconds": runtime.health_timeout_s},
        "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 6, "timeoutSeconds": 5},
        "readinessProbe": {"httpGet": {"path": runtime.ready_path, "port": "http"},
                           "periodSeconds": 5, "failureThreshold": 2, "timeoutSeconds": 3},
        "volumeMounts": mounts,
        "securityContext": _container_security(runtime.non_root),
        "lifecycle": {"preStop": pre_stop(sleep_action)},
    }
    if spec.runtime.env_from:
        container["envFrom"] = [dict(e) for e in spec.runtime.env_from]
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": volumes,
        "terminationGracePeriodSeconds": PRE_STOP_S + spec.runtime.drain_s + SHUTDOWN_S,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"},
                            **({"runAsNonRoot": True, "fsGroup": 10001} if runtime.non_root else {})},
    }
    if init:
        pod_spec["initContainers"] = init
    if spec.runtime.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": secret} for secret in spec.runtime.image_pull_secrets]
    if spec.runtime.service_account:
        pod_spec["serviceAccountName"] = spec.runtime.service_account
    pod_spec.update(_placement(name, spec))
    return {
        "metadata": {
            "labels": {**spec.pod_labels, **labels(name, runtime)},
            "annotations": {
                **spec.pod_annotations,
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(PORT),
                "prometheus.io/path": "/metrics",
            },
        },
        "spec": pod_spec,
    }


def _owned(api_version: str, kind: str, name: str, namespace: str, runtime: Runtime,
           spec: dict[str, Any]) -> dict[str, Any]:
    """An owned object with the common labels and a hash of its spec (what _ensure compares)."""
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "labels": labels(name, runtime),
                     "annotations": {HASH_ANNOTATION: digest}},
        "spec": spec,
    }


def deployment(name: str, namespace: str, spec: LLMDeploymentSpec, runtime: Runtime,
               sleep_action: bool = False, fetch_image: str = FETCH_IMAGE) -> dict[str, Any]:
    """The Deployment, without spec.replicas (see scaler.py), with a hash of the plan (`sleep_action` and
    `fetch_image`: as pod_template's)."""
    return _owned("apps/v1", "Deployment", name, namespace, runtime, {
        "selector": {"matchLabels": selector(name)},
        "template": pod_template(name, spec, runtime, sleep_action, fetch_image),
        # By default capacity holds while a new model rolls out: add one, then remove one.
        "strategy": {"type": "RollingUpdate",
                     "rollingUpdate": {"maxSurge": spec.rollout[0], "maxUnavailable": spec.rollout[1]}},
        "progressDeadlineSeconds": 3600,
        "revisionHistoryLimit": 3,
    })


def service(name: str, namespace: str, runtime: Runtime) -> dict[str, Any]:
    """The ClusterIP Service in front of the inference pods (OpenAI API and metrics)."""
    return _owned("v1", "Service", name, namespace, runtime, {
        "type": "ClusterIP",
        "selector": selector(name),
        "ports": [{"name": "http", "port": PORT, "targetPort": "http", "protocol": "TCP"}],
    })


def disruption_budget(name: str, namespace: str, spec: LLMDeploymentSpec, runtime: Runtime) -> dict[str, Any] | None:
    """The PodDisruptionBudget that makes a node drain evict the pods a few at a time; None when disabled.

    Pods that are not ready (loading a model, crash-looping) may always be evicted, so that they
    never hold a drain up.
    """
    if spec.max_unavailable is None:
        return None
    return _owned("policy/v1", "PodDisruptionBudget", name, namespace, runtime, {
        "selector": {"matchLabels": selector(name)},
        "maxUnavailable": spec.max_unavailable,
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
    })
