"""The operator and the activator run as a user the image does not list in /etc/passwd: OpenShift's restricted-v2
SCC gives each pod a UID from its namespace's range (docs/install.md: `podSecurityContext.runAsUser=null`), and
`podSecurityContext.runAsUser` may name any UID. Each runs with the environment and command line the chart gives its
pod, in a user namespace where it is that UID, against the Kubernetes API test server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from foresail.demo.prometheus import free_port
from foresail.kubetest.testing import start_apiserver
from tests.chart.helm import RELEASE_NS, crds, find, render, the
from tests.chart.test_rbac import fetch, install
from tests.helpers import ROOT, Kube, logged_process, wait_for

UID = 1000680000  # as OpenShift gives: no user of the image has it
POD = "fs-foresail-7d9f8b6c5-x2x4q"


def as_uid(command: list[str]) -> list[str]:
    """``command`` run as UID (and GID) in a user namespace, where no user has that UID; skips where this host
    cannot make one."""
    wrapper = ["unshare", "--user", f"--map-user={UID}", f"--map-group={UID}"]
    try:
        made = subprocess.run([*wrapper, "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        made = False
    if not made:
        pytest.skip("cannot make a user namespace here (unshare --user)")
    return [*wrapper, *command]


def pod_env(container: dict[str, Any], kubeconfig: Path) -> dict[str, str]:
    """A container's environment as the kubelet gives it: no USER or LOGNAME, the variables the chart sets, the
    pod's name for a fieldRef to metadata.name."""
    env = {"PATH": os.environ["PATH"], "HOME": "/", "PYTHONUNBUFFERED": "1", "KUBECONFIG": str(kubeconfig)}
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = var["value"]
        elif (var.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[var["name"]] = POD
    return env


def test_the_operator_runs_as_a_uid_the_image_does_not_list(tmp_path: Path) -> None:
    """kopf names its peer after the user (getpass: a KeyError for such a UID, and the operator stopped at start)
    unless told the pod's name: the chart tells it, and the leader shows in the peering object by that name."""
    health, metrics = free_port(), free_port()
    objects = render(tmp_path, {"operator": {"healthPort": health, "metricsPort": metrics},
                                "podSecurityContext": {"runAsUser": UID, "runAsGroup": UID}})
    container = the(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    peering = f"/apis/kopf.dev/v1/clusterkopfpeerings/{the(objects, 'ClusterKopfPeering')['metadata']['name']}"
    with start_apiserver(tmp_path / "api", simulate_pods=False) as server:
        kube = Kube(server.url)
        install(kube, objects, [RELEASE_NS])
        with logged_process(as_uid([sys.executable, "-m", "foresail", "operator"]), tmp_path / "operator.log",
                            env=pod_env(container, server.kubeconfig), cwd=ROOT) as operator:
            wait_for(lambda: operator.poll() is not None or fetch(f"http://127.0.0.1:{health}/healthz") is not None,
                     timeout=30, what="/healthz")
            peers = wait_for(lambda: operator.poll() is not None or kube.read(peering).get("status"),
                             timeout=30, what="the operator in the peering object")
            assert operator.poll() is None, (tmp_path / "operator.log").read_text()[-3000:]
    assert list(peers) == [POD]


def test_the_activator_runs_as_a_uid_the_image_does_not_list(tmp_path: Path) -> None:
    port = free_port()
    objects = render(tmp_path, {"activator": {"enabled": True, "port": port,
                                              "podSecurityContext": {"runAsUser": UID, "runAsGroup": UID}}})
    deployment = next(d for d in find(objects, "Deployment") if d["metadata"]["name"].endswith("-activator"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == UID
    with start_apiserver(tmp_path / "api", simulate_pods=False) as server:
        kube = Kube(server.url)
        for crd in crds():
            kube.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        wait_for(lambda: kube.get("/apis/foresail.dev/v1alpha1"), what="CRD discovery")
        command = [sys.executable, "-m", "foresail", *container["command"][1:], *container["args"]]
        with logged_process(as_uid(command), tmp_path / "activator.log", env=pod_env(container, server.kubeconfig),
                            cwd=ROOT) as activator:
            wait_for(lambda: activator.poll() is not None or fetch(f"http://127.0.0.1:{port}/healthz") is not None,
                     timeout=30, what="/healthz")
            assert activator.poll() is None, (tmp_path / "activator.log").read_text()[-3000:]
            assert b"foresail_activator_" in (fetch(f"http://127.0.0.1:{port}/metrics") or b"")
