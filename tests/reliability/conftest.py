"""Fixtures for the reliability suite: the API test server with the CRDs, and the real operator.

Every wait here is bounded; the operator's log is printed when a test fails.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from foresail.kubetest.testing import ApiServerProcess, start_apiserver
from tests.helpers import Kube, KubeServer, wait_for
from tests.operator.conftest import CRDS, Operator


def install_crds(server: ApiServerProcess) -> Kube:
    """Register the LLMDeployment (and kopf peering) CRDs; return a client for the server."""
    kube = Kube(server.url)
    for path in CRDS:
        for doc in yaml.safe_load_all(path.read_text()):
            kube.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)
    wait_for(lambda: kube.get("/apis/foresail.dev/v1alpha1"), what="CRD discovery")
    return kube


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[KubeServer]:
    """A fresh API test server per test (faults and the audit log are per server), pods simulated."""
    with start_apiserver(tmp_path, simulate_pods=True, ready_delay_s=0.3) as server:
        yield KubeServer(server, install_crds(server))


@pytest.fixture
def start_operator(cluster: ApiServerProcess, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator:
    """A factory that starts the real operator process (again after a kill), with one log file."""
    started: list[Operator] = []
    log = tmp_path / "operator.log"

    def start(*extra: str) -> Operator:
        op = Operator(cluster.kubeconfig, log, "--standalone", *extra).start()
        started.append(op)
        return op

    yield start
    for op in started:
        op.kill(signal.SIGKILL)  # the operator is built to survive SIGKILL; a graceful stop costs seconds
    if log.exists():
        print(log.read_text()[-6000:])
