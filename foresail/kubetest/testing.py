"""Start the Kubernetes API test server as a separate process, for tests.

Usage::

    from foresail.kubetest.testing import start_apiserver

    with start_apiserver(tmp_path, simulate_pods=True, ready_delay_s=0.5) as server:
        apps = kubernetes.client.AppsV1Api(server.api_client())
        ...
        server.faults(method="PATCH", path="/deployments/", status=409, count=2)
        assert {"verb": "patch", ...} in server.audit()

:class:`ApiServerProcess` API:

- ``url``: ``http://127.0.0.1:PORT``; ``kubeconfig``: path of a kubeconfig for it (its current
  context points at the server; pass it as ``KUBECONFIG`` or ``--kubeconfig`` to a subprocess:
  ``env()`` returns ``os.environ`` with ``KUBECONFIG`` set).
- ``api_client()``: a fresh ``kubernetes.client.ApiClient`` configured from that kubeconfig.
- ``faults(method=None, path=".*", status=500, count=1, retry_after=1, message=None)``: the next
  ``count`` requests whose method matches and whose path+query matches the regex ``path`` fail
  with ``status`` (a Kubernetes Status; 429 carries ``Retry-After``). ``clear_faults()``.
- ``drop_watches()``: close every open watch stream (returns how many).
- ``audit(clear=False)``: the resource requests so far, each ``{verb, apiGroup, apiVersion,
  resource, subresource, namespace, name, userAgent}``; ``clear_audit()``.
- ``stop()`` (also on leaving the ``with`` block): SIGTERM, then SIGKILL after 5 s.
The server's output goes to ``<directory>/apiserver.log``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml


class ApiServerProcess:
    """A running ``foresail dev apiserver`` process (see the module docstring)."""

    def __init__(self, process: subprocess.Popen[bytes], kubeconfig: Path, log: Path) -> None:
        self.process = process
        self.kubeconfig = kubeconfig
        self.log = log
        self.url = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]

    def api_client(self) -> Any:
        """A new ``kubernetes.client.ApiClient`` for this server."""
        import kubernetes

        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(self.kubeconfig),
                                           client_configuration=configuration)
        return kubernetes.client.ApiClient(configuration)

    def env(self) -> dict[str, str]:
        """``os.environ`` with ``KUBECONFIG`` pointing at this server."""
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def faults(self, method: str | None = None, path: str = ".*", status: int = 500,
               count: int = 1, retry_after: int = 1, message: str | None = None) -> None:
        """Make the next ``count`` matching requests fail with ``status``."""
        self._call("POST", "/_kubetest/faults", {
            "method": method, "path": path, "status": status, "count": count,
            "retryAfter": retry_after, "message": message})

    def clear_faults(self) -> None:
        """Drop every pending fault."""
        self._call("DELETE", "/_kubetest/faults")

    def drop_watches(self) -> int:
        """Close every open watch stream; returns how many were open."""
        return int(self._call("POST", "/_kubetest/drop-watches")["dropped"])

    def audit(self, clear: bool = False) -> list[dict[str, str]]:
        """The resource requests received so far (then forget them if ``clear``)."""
        entries = self._call("GET", "/_kubetest/audit")
        if clear:
            self.clear_audit()
        return entries

    def clear_audit(self) -> None:
        """Forget the recorded requests."""
        self._call("DELETE", "/_kubetest/audit")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> ApiServerProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def start_apiserver(directory: Path, *, simulate_pods: bool = True, ready_delay_s: float = 0.5,
                    extra_args: tuple[str, ...] = (), timeout_s: float = 20.0) -> ApiServerProcess:
    """Start ``python -m foresail dev apiserver`` on a free port and wait until it answers.

    ``directory`` receives ``kubeconfig`` and ``apiserver.log``. ``extra_args`` are more
    command-line options (e.g. ``("--bookmark-interval", "0.2")``).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    kubeconfig, log = directory / "kubeconfig", directory / "apiserver.log"
    kubeconfig.unlink(missing_ok=True)
    command = [sys.executable, "-m", "foresail", "dev", "apiserver", "--port", "0",
               "--kubeconfig", str(kubeconfig), "--ready-delay", str(ready_delay_s), *extra_args]
    if simulate_pods:
        command.append("--simulate-pods")
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   cwd=Path(__file__).resolve().parents[2])
    try:
        return _wait_until_it_answers(process, kubeconfig, log, timeout_s)
    except BaseException:  # a timeout, or Ctrl-C / SIGTERM while waiting: no server left running
        if process.poll() is None:
            process.kill()
            process.wait()
        raise


def _wait_until_it_answers(process: subprocess.Popen, kubeconfig: Path, log: Path,
                           timeout_s: float) -> ApiServerProcess:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the API test server exited with {process.returncode}:\n"
                               f"{log.read_text()}")
        if kubeconfig.exists():
            server = ApiServerProcess(process, kubeconfig, log)
            try:
                with urllib.request.urlopen(server.url + "/version", timeout=1):
                    return server
            except (urllib.error.URLError, OSError):
                pass
        time.sleep(0.05)
    raise TimeoutError(f"the API test server did not answer within {timeout_s} s:\n"
                       f"{log.read_text()}")
