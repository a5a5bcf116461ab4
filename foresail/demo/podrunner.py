"""A local stand-in for the kubelet and the Deployment controller that runs REAL server processes.

For every Deployment the operator owns, it keeps `spec.replicas` inference server processes
(`foresail serve`, the command from the pod template, on 127.0.0.1 and a free port), each started
after a configurable cold-start delay that stands in for image pull and weight loading on a GPU
node. It writes Pod objects and the Deployment status to the API server the way the real
controllers do, so the operator sees pods come and go, measures their cold start, and Prometheus
scrapes their real metrics (the file_sd targets carry `namespace` and `llmdeployment` labels; the Pod
objects' `prometheus.io/port` annotation is the process's port, for the operator's own reads). As the
EndpointSlice controller, it lists each started pod in an EndpointSlice of every Service that selects
it (labelled with the Service's labels), ready as the pod is: one slice per pod, because each process
listens on its own port of 127.0.0.1 (in a cluster, pods differ by IP; the controller groups endpoints
with the same ports in one slice).
A scale-down removes pods in the ReplicaSet controller's order, pod-deletion-cost included, and ends
each the way a kubelet does, without holding up the other pods: the Pods are bound to node `local` (which
it registers at the API server's version, as a kubelet does), so
their DELETE is graceful (the object stays, `deletionTimestamp` set), the endpoint turns `terminating`
(not ready, still serving), the container's preStop `sleep` runs, then SIGTERM, SIGKILL once the pod's
`terminationGracePeriodSeconds` (counted from the start of preStop) are up, and once the process is
gone the runner removes the Pod object (a DELETE with grace period 0), as the kubelet does. A Pod deleted
through the API (kubectl delete, an eviction) ends the same way, within its `deletionGracePeriodSeconds`,
and the runner, as the ReplicaSet controller, creates a replacement.
Each process gets a minimal environment (`child_env`) plus the container's `env` entries that have a
`value`, as a kubelet gives; a process that exits is restarted in place, counted in `restartCount`, with
`lastState.terminated` saying how it ended.
Not emulated: scheduling, rolling updates with surge (a template change replaces pods at once),
restarts with backoff, `valueFrom` and `envFrom` (a local process has no Secrets or ConfigMaps mounted).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import requests

from foresail.demo.prometheus import PrometheusServer, free_port
from foresail.kubetest.controllers import deletion_order, node, node_status, termination_times

log = logging.getLogger("foresail.demo.podrunner")
MANAGED = "app.kubernetes.io/managed-by=foresail"
SLICE_MANAGER = "podrunner.demo.foresail.dev"  # endpointslice.kubernetes.io/managed-by of the slices it writes
SLICES = "apis/discovery.k8s.io/v1"
OWNER_LABEL = "foresail.dev/llmdeployment"
NODE = "local"  # the node the runner's pods are bound to
BASE_ENV = ("PATH", "HOME", "LANG", "PYTHONPATH")  # what a child process keeps of the caller's environment


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class LocalPod:
    """One inference process standing in for a pod."""

    name: str
    namespace: str
    owner: str
    template_key: str
    start_at: float  # when the process starts (creation + cold-start delay)
    port: int
    labels: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    ready: bool = False
    terminating: bool = False
    stop_times: tuple[float, float] = (0.0, 30.0)  # (preStop sleep, grace period) from its own spec
    started_at: str = ""  # when the running process started (RFC 3339)
    restarts: int = 0
    last_exit: dict[str, Any] | None = None  # lastState.terminated: how the previous process ended

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a process the demo starts: PATH, HOME, LANG and PYTHONPATH where set (the same
    interpreter and packages), unbuffered output, and ``extra``; nothing else of the caller's."""
    base = {name: os.environ[name] for name in BASE_ENV if name in os.environ}
    return {**base, "PYTHONUNBUFFERED": "1", **(extra or {})}


def pod_env(container: dict) -> dict[str, str]:
    """A pod process's environment: `child_env` and the container's `env` entries that have a `value`."""
    return child_env({e["name"]: str(e["value"]) for e in container.get("env") or [] if "value" in e})


def local_command(container: dict, port: int, workdir: Path, threads: int) -> list[str]:
    """The container's `foresail serve` command, rewritten for a local process."""
    cmd = list(container.get("command") or []) + list(container.get("args") or [])
    if cmd[:2] != ["foresail", "serve"]:
        raise ValueError(f"the local pod runner only runs the foresail runtime, not {cmd[:2]}")
    args = cmd[2:]
    out: list[str] = []
    skip = {"--host", "--port", "--cache-dir"}
    i = 0
    while i < len(args):
        if args[i] in skip:
            i += 2
            continue
        out.append(args[i])
        i += 1
    return [sys.executable, "-m", "foresail", "serve", *out, "--host", "127.0.0.1", "--port", str(port),
            "--cache-dir", str(workdir / "hf-cache"), "--threads", str(threads)]


class PodRunner:
    """Reconciles owned Deployments into local processes until stopped."""

    def __init__(self, api_url: str, workdir: Path, prometheus: PrometheusServer | None = None,
                 cold_start_s: float = 15.0, threads: int = 1, poll_s: float = 0.5) -> None:
        self.api = api_url.rstrip("/")
        self.workdir = Path(workdir)
        self.prometheus = prometheus
        self.cold_start_s = cold_start_s
        self.threads = threads
        self.poll_s = poll_s
        self.http = requests.Session()
        self.pods: dict[str, LocalPod] = {}
        self.terminating: dict[str, LocalPod] = {}  # removed pods whose processes are shutting down
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="podrunner", daemon=True)
        self.lock = threading.Lock()

    # ---- public -------------------------------------------------------------------------
    def start(self) -> "PodRunner":
        """Register node NODE and start reconciling."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._register_node()
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the loop and every process it started."""
        self._stop.set()
        self._thread.join(timeout=10)
        for pod in list(self.pods.values()) + list(self.terminating.values()):
            self._kill(pod, grace_s=10)

    def endpoints(self, namespace: str, owner: str) -> list[str]:
        """Base URLs of the ready processes of one LLMDeployment."""
        with self.lock:
            return [p.url for p in self.pods.values() if p.ready and (p.namespace, p.owner) == (namespace, owner)]

    def ready_count(self, namespace: str, owner: str) -> int:
        """How many processes of one LLMDeployment are ready."""
        return len(self.endpoints(namespace, owner))

    def running_count(self, namespace: str, owner: str) -> int:
        """How many pods of one LLMDeployment the runner holds: starting, ready or draining (what a cluster
        pays for)."""
        with self.lock:
            held = list(self.pods.values()) + list(self.terminating.values())
        return sum((p.namespace, p.owner) == (namespace, owner) for p in held)

    # ---- the loop -----------------------------------------------------------------------
    def _register_node(self) -> None:
        """Register NODE as a kubelet does, at the API server's version (the operator reads it: preStop)."""
        created = self.http.post(f"{self.api}/api/v1/nodes", json=node(NODE), timeout=10)
        created.raise_for_status()
        self.http.put(f"{self.api}/api/v1/nodes/{NODE}/status", json={**created.json(), "status": node_status()},
                      timeout=10).raise_for_status()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._tick()
            except requests.RequestException as exc:
                log.warning("API server unreachable: %s", exc)
            except Exception:  # keep the demo's pods alive whatever one tick hit
                log.exception("pod runner tick failed")
            self._stop.wait(self.poll_s)

    def _tick(self) -> None:
        self._stop_deleted_pods()
        rsp = self.http.get(f"{self.api}/apis/apps/v1/deployments", params={"labelSelector": MANAGED}, timeout=10)
        rsp.raise_for_status()
        seen: set[tuple[str, str]] = set()
        for dep in rsp.json()["items"]:
            meta = dep["metadata"]
            key = (meta["namespace"], meta["name"])
            seen.add(key)
            self._reconcile(dep)
        for pod in [p for p in self.pods.values() if (p.namespace, p.owner) not in seen]:
            self._remove(pod, delete_object=False)  # the API server garbage-collected it
        self._write_targets()
        self._sync_endpoint_slices()

    def _stop_deleted_pods(self) -> None:
        """As the kubelet: stop the pods whose objects were deleted through the API (deletionTimestamp set,
        or gone), within their deletionGracePeriodSeconds."""
        rsp = self.http.get(f"{self.api}/api/v1/pods", timeout=10)
        rsp.raise_for_status()
        objects = {(o["metadata"]["namespace"], o["metadata"]["name"]): o["metadata"] for o in rsp.json()["items"]}
        for pod in list(self.pods.values()):
            meta = objects.get((pod.namespace, pod.name))
            if meta is not None and not meta.get("deletionTimestamp"):
                continue
            grace = (meta or {}).get("deletionGracePeriodSeconds")
            if grace is not None:
                pod.stop_times = (pod.stop_times[0], float(grace))
            log.info("pod %s deleted through the API", pod.name)
            self._remove(pod, delete_object=False)

    def _reconcile(self, dep: dict) -> None:
        meta, spec = dep["metadata"], dep["spec"]
        ns, name = meta["namespace"], meta["name"]
        template = spec["template"]
        key = str(meta.get("annotations", {}).get("foresail.dev/plan-hash") or meta.get("generation"))
        mine = [p for p in self.pods.values() if (p.namespace, p.owner) == (ns, name)]
        for pod in [p for p in mine if p.template_key != key]:  # template changed: replace
            self._remove(pod)
        mine = [p for p in mine if p.template_key == key]
        desired = int(spec.get("replicas") or 0)
        while len(mine) < desired:
            mine.append(self._create(ns, name, key, template, dep))
        extra = len(mine) - desired
        if extra > 0:
            for pod in self._removal_order(ns, name, mine)[:extra]:
                self._remove(pod)
                mine.remove(pod)
        container = template["spec"]["containers"][0]
        for pod in mine:
            self._advance(pod, container)
        ready = sum(p.ready for p in mine)
        status = {"observedGeneration": meta.get("generation"), "replicas": len(mine),
                  "updatedReplicas": len(mine), "readyReplicas": ready, "availableReplicas": ready,
                  "unavailableReplicas": len(mine) - ready}
        if any(status.get(k) != (dep.get("status") or {}).get(k) for k in status):
            self.http.patch(f"{self.api}/apis/apps/v1/namespaces/{ns}/deployments/{name}/status",
                            json={"status": status}, timeout=10,
                            headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()

    def _removal_order(self, ns: str, owner: str, pods: list[LocalPod]) -> list[LocalPod]:
        """``pods`` in the ReplicaSet controller's order of removal (not ready first, then the lowest
        pod-deletion-cost, then the most recently ready), read from their Pod objects."""
        rsp = self.http.get(f"{self.api}/api/v1/namespaces/{ns}/pods", timeout=10,
                            params={"labelSelector": f"{OWNER_LABEL}={owner}"})
        rsp.raise_for_status()
        by_name = {p.name: p for p in pods}
        ranked = [by_name[o["metadata"]["name"]] for o in deletion_order(rsp.json()["items"])
                  if o["metadata"]["name"] in by_name]
        return ranked + [p for p in pods if p not in ranked]

    def _create(self, ns: str, owner: str, key: str, template: dict, dep: dict) -> LocalPod:
        pod = LocalPod(f"{owner}-{uuid.uuid4().hex[:5]}", ns, owner, key, time.time() + self.cold_start_s,
                       labels=dict(template["metadata"].get("labels") or {}), port=self._free_port(),
                       stop_times=termination_times(template["spec"]))
        annotations = {**(template["metadata"].get("annotations") or {}), "prometheus.io/port": str(pod.port)}
        body: dict[str, Any] = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod.name, "namespace": ns, "labels": pod.labels, "annotations": annotations,
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": owner,
                                              "uid": dep["metadata"]["uid"], "controller": True}]},
            "spec": {**template["spec"], "nodeName": NODE}}
        self.http.post(f"{self.api}/api/v1/namespaces/{ns}/pods", json=body, timeout=10).raise_for_status()
        self._pod_status(pod, ready=False, phase="Pending")
        with self.lock:
            self.pods[pod.name] = pod
        log.info("pod %s created; process starts in %.0f s", pod.name, self.cold_start_s)
        return pod

    def _free_port(self) -> int:
        """A free port no pod holds: one still in its cold start has not bound its port yet, and the kernel may
        hand the same one out again (the second server could not listen, and its pod's URL reached the first)."""
        with self.lock:
            held = {p.port for p in list(self.pods.values()) + list(self.terminating.values())}
        port = free_port()
        while port in held:
            port = free_port()
        return port

    def _advance(self, pod: LocalPod, container: dict) -> None:
        if pod.proc is None and time.time() >= pod.start_at:
            cmd = local_command(container, pod.port, self.workdir, self.threads)
            out = open(self.workdir / f"{pod.name}.log", "ab")
            pod.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=pod_env(container))
            out.close()
            pod.started_at = _now_iso()
            self._pod_status(pod, ready=False, phase="Running")
        elif pod.proc is not None and pod.proc.poll() is not None:
            log.warning("pod %s process exited with %s; restarting", pod.name, pod.proc.returncode)
            code = pod.proc.returncode if pod.proc.returncode >= 0 else 128 - pod.proc.returncode  # 137: SIGKILL
            pod.last_exit = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                             "startedAt": pod.started_at, "finishedAt": _now_iso()}
            pod.restarts += 1
            pod.proc, pod.ready = None, False
            self._pod_status(pod, ready=False, phase="Running")
        elif pod.proc is not None and not pod.ready:
            try:
                ok = self.http.get(pod.url + "/ready", timeout=0.5).status_code == 200
            except requests.RequestException:
                ok = False
            if ok:
                with self.lock:
                    pod.ready = True
                self._pod_status(pod, ready=True, phase="Running")
                log.info("pod %s ready", pod.name)

    def _pod_status(self, pod: LocalPod, ready: bool, phase: str) -> None:
        state = {"running": {"startedAt": pod.started_at}} if pod.proc else {"waiting": {"reason": "ContainerCreating"}}
        container: dict[str, Any] = {"name": "server", "ready": ready, "restartCount": pod.restarts, "state": state,
                                     "image": "local", "imageID": "local"}
        if pod.last_exit is not None:
            container["lastState"] = {"terminated": pod.last_exit}
        status: dict[str, Any] = {
            "phase": phase, "podIP": "127.0.0.1",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": _now_iso()}],
            "containerStatuses": [container]}
        self.http.patch(f"{self.api}/api/v1/namespaces/{pod.namespace}/pods/{pod.name}/status",
                        json={"status": status}, headers={"Content-Type": "application/merge-patch+json"},
                        timeout=10).raise_for_status()

    def _remove(self, pod: LocalPod, delete_object: bool = True) -> None:
        """Delete the pod and shut its process down in the background as a kubelet does (the module's
        docstring), with the preStop sleep and grace period of the pod's own spec."""
        with self.lock:
            pod.ready, pod.terminating = False, True
            self.pods.pop(pod.name, None)
            self.terminating[pod.name] = pod
        if delete_object:
            self.http.delete(f"{self.api}/api/v1/namespaces/{pod.namespace}/pods/{pod.name}", timeout=10)
        grace_s = pod.stop_times[1]
        # the grace period bounds the preStop hook, which runs only in a started container
        pre_stop_s = min(pod.stop_times[0], grace_s) if pod.proc is not None else 0.0
        log.info("pod %s removed; preStop %.0f s, then SIGTERM", pod.name, pre_stop_s)
        threading.Thread(target=self._terminate, args=(pod, pre_stop_s, grace_s), daemon=True,
                         name=f"terminate-{pod.name}").start()

    def _terminate(self, pod: LocalPod, pre_stop_s: float, grace_s: float) -> None:
        self._stop.wait(pre_stop_s)
        self._kill(pod, grace_s=max(2.0, grace_s - pre_stop_s))  # as the kubelet: at least 2 s after SIGTERM
        with self.lock:
            self.terminating.pop(pod.name, None)
        try:  # the container is gone: the kubelet's final DELETE removes the object
            self.http.delete(f"{self.api}/api/v1/namespaces/{pod.namespace}/pods/{pod.name}",
                             params={"gracePeriodSeconds": 0}, timeout=10)
        except requests.RequestException as exc:
            log.warning("pod %s stopped but not removed from the API server: %s", pod.name, exc)

    def _kill(self, pod: LocalPod, grace_s: float) -> None:
        if pod.proc is not None and pod.proc.poll() is None:
            pod.proc.terminate()  # the server drains in-flight requests on SIGTERM
            try:
                pod.proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pod.proc.kill()
                pod.proc.wait()

    def _sync_endpoint_slices(self) -> None:
        """Create, update and delete EndpointSlices until each started pod is in one per Service selecting it."""
        services = self.http.get(f"{self.api}/api/v1/services", timeout=10)
        services.raise_for_status()
        with self.lock:
            started = [p for p in self.pods.values() if p.proc is not None] + \
                      [p for p in self.terminating.values() if p.proc is not None and p.proc.poll() is None]
        want: dict[tuple[str, str], dict] = {}
        for svc in services.json()["items"]:
            selector, meta = (svc.get("spec") or {}).get("selector"), svc["metadata"]
            for pod in started:
                if selector and pod.namespace == meta["namespace"] and \
                        all(pod.labels.get(k) == v for k, v in selector.items()):
                    body = _endpoint_slice(svc, pod)
                    want[(pod.namespace, body["metadata"]["name"])] = body
        have = self.http.get(f"{self.api}/{SLICES}/endpointslices", timeout=10,
                             params={"labelSelector": f"endpointslice.kubernetes.io/managed-by={SLICE_MANAGER}"})
        have.raise_for_status()
        existing = {(s["metadata"]["namespace"], s["metadata"]["name"]): s for s in have.json()["items"]}
        for (ns, name), body in want.items():
            old = existing.get((ns, name))
            if old is None:
                self.http.post(f"{self.api}/{SLICES}/namespaces/{ns}/endpointslices", json=body, timeout=10)
            elif (old.get("endpoints"), old.get("ports")) != (body["endpoints"], body["ports"]):
                self.http.patch(f"{self.api}/{SLICES}/namespaces/{ns}/endpointslices/{name}", timeout=10,
                                json={"endpoints": body["endpoints"], "ports": body["ports"]},
                                headers={"Content-Type": "application/merge-patch+json"})
        for ns, name in existing.keys() - want.keys():
            self.http.delete(f"{self.api}/{SLICES}/namespaces/{ns}/endpointslices/{name}", timeout=10)

    def _write_targets(self) -> None:
        if self.prometheus is None:
            return
        with self.lock:
            targets = [(f"127.0.0.1:{p.port}", {"namespace": p.namespace, "llmdeployment": p.owner, "pod": p.name})
                       for p in self.pods.values() if p.proc is not None]
        self.prometheus.write_targets(targets)


def _endpoint_slice(service: dict, pod: LocalPod) -> dict:
    """The EndpointSlice of ``service`` listing ``pod``: its address, readiness and (every Service port
    resolving to the one the process listens on) its port; labelled as the controller does, with the
    Service's labels and the two well-known ones."""
    meta = service["metadata"]
    ports = [{"name": p.get("name", ""), "port": pod.port, "protocol": p.get("protocol", "TCP")}
             for p in service["spec"].get("ports") or []]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{meta['name']}-{pod.name.rsplit('-', 1)[-1]}", "namespace": pod.namespace,
                         "labels": {**(meta.get("labels") or {}), "kubernetes.io/service-name": meta["name"],
                                    "endpointslice.kubernetes.io/managed-by": SLICE_MANAGER},
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": meta["name"],
                                              "uid": meta["uid"], "controller": True}]},
            "addressType": "IPv4", "ports": ports,
            "endpoints": [{"addresses": ["127.0.0.1"],
                           "conditions": {"ready": pod.ready, "serving": pod.ready or pod.terminating,
                                          "terminating": pod.terminating},
                           "targetRef": {"kind": "Pod", "namespace": pod.namespace, "name": pod.name}}]}
