"""The pod runner gives each pod its own port, also where the kernel hands the same free port out twice."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from foresail.demo import prometheus
from foresail.demo.podrunner import OWNER_LABEL, PodRunner
from foresail.demo.prometheus import free_port
from foresail.kubetest.testing import start_apiserver
from tests.helpers import wait_for


class ReportedPorts:
    """socket.socket() whose bound port is the next of ``ports``: what free_port() reports."""

    def __init__(self, ports: Iterator[int]) -> None:
        self.ports = ports

    def socket(self) -> Any:
        real, port = socket.socket(), next(self.ports)

        class Bound:
            def __enter__(self) -> "Bound":
                return self

            def __exit__(self, *exc: object) -> None:
                real.close()

            def bind(self, address: tuple[str, int]) -> None:
                real.bind(address)

            def getsockname(self) -> tuple[str, int]:
                return "127.0.0.1", port

        return Bound()


@pytest.mark.slow
def test_two_pods_never_share_a_port_the_kernel_gave_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pod's port is picked at creation and bound only when its process starts, after the cold start; the kernel
    may give the same free port to the next pod (about 1 demo in 250): that pod's server could not listen and was
    restarted for ever, while its URL, answered by the other pod, counted it ready."""
    with start_apiserver(tmp_path / "api", simulate_pods=False) as api:
        http = requests.Session()
        labels = {"app.kubernetes.io/managed-by": "foresail", OWNER_LABEL: "tiny"}
        container = {"name": "server", "image": "local", "command": ["foresail", "serve", "--model", "builtin:tiny"]}
        dep: dict[str, Any] = {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "tiny", "labels": labels},
            "spec": {"replicas": 2, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}}}
        http.post(api.url + "/apis/apps/v1/namespaces/default/deployments", json=dep, timeout=10).raise_for_status()
        first, *others = [free_port() for _ in range(4)]
        monkeypatch.setattr(prometheus, "socket", ReportedPorts(iter([first, first, *others])))
        runner = PodRunner(api.url, tmp_path / "pods", cold_start_s=0.0, poll_s=0.2).start()
        try:
            wait_for(lambda: len(runner.pods) == 2, timeout=10, what="two pods created")
            assert len({pod.port for pod in runner.pods.values()}) == 2
            wait_for(lambda: runner.ready_count("default", "tiny") == 2, timeout=120, what="both pods ready")
            items = http.get(api.url + "/api/v1/namespaces/default/pods", timeout=10).json()["items"]
            assert len({p["metadata"]["annotations"]["prometheus.io/port"] for p in items}) == 2
            for pod in runner.pods.values():
                assert pod.proc is not None and pod.proc.poll() is None and pod.restarts == 0, pod
        finally:
            runner.stop()
