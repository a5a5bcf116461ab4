"""The real operator process against the Kubernetes API test server."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import yaml

from foresail.kubetest.testing import start_apiserver
from tests.helpers import ROOT, Kube, KubeServer, wait_for

CRDS = [ROOT / "crds" / "llmdeployment.yaml", ROOT / "crds" / "kopf-peering.yaml"]
LLMD = "/apis/foresail.dev/v1alpha1/namespaces/{ns}/llmdeployments"


def post(server: KubeServer, path: str, body: dict[str, Any]) -> requests.Response:
    """POST ``body`` to ``path``, the answer as it came (admission tests read refusals)."""
    return requests.post(server.url + path, json=body, timeout=10)


def doc(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """An LLMDeployment named ``name`` with ``spec``."""
    return {"apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": name}, "spec": spec}


def assert_applies_and_plans(server: KubeServer, name: str, spec: dict[str, Any], case: str) -> None:
    """The LLMDeployment ``spec`` is accepted in the default namespace, and so is the Deployment the operator plans
    for it (both deleted after)."""
    from foresail_operator import plan
    from foresail_operator.runtimes import runtime_for
    from foresail_operator.spec import parse_spec
    from tests.reliability.support import DEPLOYS, LLMDS

    rsp = post(server, LLMDS, doc(name, spec))
    assert rsp.status_code == 201, f"{case}: refused: {rsp.text[:800]}"
    try:
        parsed = parse_spec(rsp.json()["spec"])
        deployment = plan.deployment(name, "default", parsed, runtime_for(parsed))
        deployment["spec"]["replicas"] = 1
        created = post(server, DEPLOYS, deployment)
        assert created.status_code == 201, f"{case}: the planned Deployment was refused: {created.text[:800]}"
        server.kube.delete(f"{DEPLOYS}/{name}")
    finally:
        server.kube.delete(f"{LLMDS}/{name}")


class Operator:
    """`foresail operator` as a child process, with its log in a file."""

    def __init__(self, kubeconfig: Path, log: Path, *extra: str) -> None:
        self.kubeconfig, self.log_path, self.extra = kubeconfig, log, extra
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Operator":
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "foresail", "operator", "--kubeconfig", str(self.kubeconfig), *self.extra],
            stdout=self.log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        return self

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)
        self.log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def text(self) -> str:
        return self.log_path.read_text()


@contextlib.contextmanager
def crd_apiserver(tmp_path: Path, **options: Any) -> Iterator[KubeServer]:
    """An API test server (``options`` as start_apiserver takes them) with the CRDs installed."""
    with start_apiserver(tmp_path, **options) as server:
        kube = Kube(server.url)
        for path in CRDS:
            for doc in yaml.safe_load_all(path.read_text()):
                kube.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)
        wait_for(lambda: kube.get("/apis/foresail.dev/v1alpha1"), what="CRD discovery")
        yield KubeServer(server, kube)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[KubeServer]:
    """An API test server with the CRDs installed and pods simulated."""
    with crd_apiserver(tmp_path, simulate_pods=True, ready_delay_s=0.5) as server:
        yield server


@pytest.fixture
def unsimulated(tmp_path: Path) -> Iterator[KubeServer]:
    """An API test server with the CRDs and no pods: nothing but the test and the operator changes a thing."""
    with crd_apiserver(tmp_path, simulate_pods=False) as server:
        yield server


@pytest.fixture
def operator(cluster, tmp_path: Path) -> Iterator[Operator]:
    """The operator, running; stopped (and its log shown on failure) at the end."""
    op = Operator(cluster.kubeconfig, tmp_path / "operator.log", "--standalone").start()
    yield op
    op.kill(signal.SIGTERM)
    print(op.text()[-5000:])
