"""The activator's port and the operator's /healthz and /metrics answer over IPv4 and IPv6 alike: on an
IPv6-only cluster the kubelet probes, and Prometheus scrapes, the pod's IPv6 address. Each process runs as
the chart runs it, with no address to listen on given, in a private network namespace (root's `unshare -n`)
whose only addresses are its loopback's, so that nothing listens beyond this machine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from foresail.kubetest.testing import start_apiserver
from tests.helpers import ROOT, Kube, logged_process, wait_for
from tests.operator.conftest import CRDS

PORTS = {"activator /healthz": (18282, "/healthz"), "operator /healthz": (18181, "/healthz"),
         "operator /metrics": (19191, "/metrics")}


def _private_network() -> bool:
    """Whether this user may run a command in a network namespace of its own."""
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return False
    return subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=30).returncode == 0


def answers(host: str, port: int, path: str) -> str:
    """The status of GET ``path`` at ``host``, or why there is none."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=5) as rsp:
            return str(rsp.status)
    except OSError as exc:
        return str(getattr(exc, "reason", exc))


def probe_all(workdir: str) -> None:
    """Run the API test server, the operator and the activator here (in the private namespace), and print how
    each port answers over IPv4 and IPv6, as JSON on the last line."""
    with start_apiserver(Path(workdir), simulate_pods=False) as server:
        kube = Kube(server.url)
        for crds in CRDS:
            for doc in yaml.safe_load_all(crds.read_text()):
                kube.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", doc)
        env = {k: v for k, v in os.environ.items() if not k.startswith("FORESAIL_")}
        env.update(KUBECONFIG=str(server.kubeconfig), FORESAIL_HEALTH_PORT=str(PORTS["operator /healthz"][0]),
                   FORESAIL_METRICS_PORT=str(PORTS["operator /metrics"][0]), PYTHONUNBUFFERED="1")
        activator = [sys.executable, "-m", "foresail", "activator", "--port", str(PORTS["activator /healthz"][0])]
        with logged_process([sys.executable, "-m", "foresail", "operator", "--standalone"], Path(workdir) / "op.log",
                            env=env, cwd=ROOT), \
                logged_process(activator, Path(workdir) / "activator.log", env=env, cwd=ROOT):
            wait_for(lambda: all(answers("127.0.0.1", port, path) == "200" for port, path in PORTS.values()),
                     timeout=60, what="every port over IPv4")
            found = {what: [answers(host, port, path) for host in ("127.0.0.1", "[::1]")]
                     for what, (port, path) in PORTS.items()}
    print(json.dumps(found))


@pytest.mark.skipif(not _private_network(), reason="needs a network namespace of its own (root's unshare -n)")
def test_the_activator_and_the_operator_answer_over_ipv4_and_ipv6(tmp_path: Path):
    code = f"import sys; from tests.operator.test_activator_listen import probe_all; probe_all({str(tmp_path)!r})"
    done = subprocess.run(["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" -c "$1"', sys.executable, code],
                          cwd=ROOT, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {what: ["200", "200"] for what in PORTS}
