"""The whole system on one machine: API test server, operator, Prometheus, the pod runner, and
optionally the activator (the front door clients send requests to, as installed with the chart).

Used by `foresail demo` and by the end-to-end tests. Every process it starts is stopped on exit,
also when the body raises (Ctrl-C included). The operator and the activator get a minimal environment
(`child_env`), not the caller's: a FORESAIL_* variable in the user's shell does not change them.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
import yaml

from foresail.demo.podrunner import PodRunner, child_env
from foresail.demo.prometheus import PrometheusServer, free_port
from foresail.kubetest.testing import start_apiserver

CRD_FILES = ("llmdeployment.yaml", "kopf-peering.yaml")
# the package's copy of the repository's crds/, so that an installed package has them (tests/test_packaging.py
# keeps the two equal)
CRDS = Path(__file__).parent / "data" / "crds"
LLMD = "/apis/foresail.dev/v1alpha1/namespaces/{ns}/llmdeployments"


def crd_dir() -> Path:
    """The folder of the CRD manifests; RuntimeError if one is missing (a broken install)."""
    missing = [name for name in CRD_FILES if not (CRDS / name).is_file()]
    if missing:
        raise RuntimeError(f"cannot find the CRD {missing[0]} in {CRDS}: reinstall foresail")
    return CRDS


class LocalStack:
    """Start the parts in order; stop them in reverse."""

    def __init__(self, workdir: Path, cold_start_s: float = 15.0, forecast_step_s: float = 5.0,
                 collect_period_s: float = 1.0, rate_window: str = "10s", threads: int = 1,
                 activator: bool = False) -> None:
        self.workdir = Path(workdir)
        self.cold_start_s = cold_start_s
        self.operator_env = {
            "FORESAIL_COLLECT_PERIOD": str(collect_period_s),
            "FORESAIL_FORECAST_STEP": str(forecast_step_s),
            "FORESAIL_RATE_WINDOW": rate_window,
        }
        self.threads = threads
        self.with_activator = activator
        self.activator_url = ""
        self._stack = contextlib.ExitStack()
        self.operator: subprocess.Popen | None = None
        self.activator: subprocess.Popen | None = None
        self.http = requests.Session()

    # ---- lifecycle ----------------------------------------------------------------------
    def __enter__(self) -> "LocalStack":
        try:
            crds = crd_dir()
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.api = self._stack.enter_context(start_apiserver(self.workdir / "apiserver", simulate_pods=False))
            self.url = self.api.url
            for name in CRD_FILES:
                for doc in yaml.safe_load_all((crds / name).read_text()):
                    self.http.post(f"{self.url}/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                                   json=doc, timeout=10).raise_for_status()
            self.prometheus = PrometheusServer(self.workdir / "prometheus")
            self._stack.callback(self.prometheus.stop)
            self.prometheus.start()
            self.runner = PodRunner(self.url, self.workdir / "pods", self.prometheus,
                                    cold_start_s=self.cold_start_s, threads=self.threads).start()
            self._stack.callback(self.runner.stop)
            self.start_operator()
            self._stack.callback(self.stop_operator)
            if self.with_activator:
                self._start_activator()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def start_operator(self) -> None:
        """Start `foresail operator` against the API test server and Prometheus."""
        log = open(self.workdir / "operator.log", "ab")
        env = child_env({"FORESAIL_PROMETHEUS_URL": self.prometheus.url, **self.operator_env})
        self.operator = subprocess.Popen(
            [sys.executable, "-m", "foresail", "operator", "--standalone", "--kubeconfig", str(self.api.kubeconfig)],
            stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()

    def _start_activator(self) -> None:
        """Start `foresail activator` (it finds the pods through the runner's EndpointSlices; the Service
        URL it falls back to is a port nothing listens on) and have Prometheus scrape it."""
        port = free_port()
        log = open(self.workdir / "activator.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "foresail", "activator", "--kubeconfig", str(self.api.kubeconfig),
             "--host", "127.0.0.1", "--port", str(port), "--upstream", "http://127.0.0.1:9"],
            stdout=log, stderr=subprocess.STDOUT, env=child_env())
        log.close()
        self._stack.callback(_stop, proc)
        self.activator = proc
        self.activator_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                self.http.get(self.activator_url + "/healthz", timeout=1).raise_for_status()
                break
            except requests.RequestException:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"the activator did not start; see {self.workdir / 'activator.log'}") from None
                time.sleep(0.2)
        self.prometheus.scrape_activator(f"127.0.0.1:{port}")

    def stop_operator(self, sig: int = signal.SIGTERM) -> None:
        """Stop the operator (SIGKILL to simulate a crash)."""
        if self.operator is not None:
            _stop(self.operator, sig)

    def exited(self) -> str | None:
        """Which of the stack's processes has exited, as "the operator exited with -9; see LOG", or None."""
        processes = [("the Kubernetes API test server", self.api.process, self.api.log),
                     ("Prometheus", self.prometheus.proc, self.workdir / "prometheus" / "prometheus.log"),
                     ("the operator", self.operator, self.workdir / "operator.log"),
                     ("the activator", self.activator, self.workdir / "activator.log")]
        for what, proc, log in processes:
            if proc is not None and proc.poll() is not None:
                return f"{what} exited with {proc.returncode}; see {log}"
        return None

    # ---- the API ------------------------------------------------------------------------
    def apply(self, doc: dict[str, Any], namespace: str = "default") -> None:
        """Create an LLMDeployment."""
        self.http.post(self.url + LLMD.format(ns=namespace), json=doc, timeout=10).raise_for_status()

    def patch(self, name: str, patch: dict[str, Any], namespace: str = "default") -> None:
        """Merge-patch an LLMDeployment."""
        self.http.patch(f"{self.url}{LLMD.format(ns=namespace)}/{name}", json=patch, timeout=10,
                        headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()

    def llmd(self, name: str, namespace: str = "default") -> dict[str, Any]:
        """Read an LLMDeployment."""
        rsp = self.http.get(f"{self.url}{LLMD.format(ns=namespace)}/{name}", timeout=10)
        rsp.raise_for_status()
        return rsp.json()

    def deployment(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        """Read the owned Deployment, or None."""
        rsp = self.http.get(f"{self.url}/apis/apps/v1/namespaces/{namespace}/deployments/{name}", timeout=10)
        return rsp.json() if rsp.status_code == 200 else None

    def wait_ready(self, name: str, replicas: int = 1, timeout_s: float = 120.0) -> None:
        """Wait until `replicas` processes of an LLMDeployment answer /ready."""
        deadline = time.monotonic() + timeout_s
        while self.runner.ready_count("default", name) < replicas:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: {replicas} replicas not ready after {timeout_s:.0f} s; "
                                   f"see {self.workdir}")
            if self.operator is not None and self.operator.poll() is not None:
                raise RuntimeError(f"the operator exited; see {self.workdir / 'operator.log'}")
            time.sleep(0.25)


def _stop(proc: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Signal a process that still runs; SIGKILL it after 20 s."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
