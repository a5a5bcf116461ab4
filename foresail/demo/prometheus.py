"""A real Prometheus server on 127.0.0.1 with a generated config, for the demo and the tests.

Targets come from a file_sd JSON file that the pod runner rewrites as inference processes come
and go; each target carries the `namespace` and `llmdeployment` labels the operator groups by. An
activator, if one is given, is scraped as the chart's `foresail-activator` job does, keeping the labels
its series carry (`honor_labels`).
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

INSTALL_HINT = ("Prometheus is not installed. On Debian or Ubuntu: "
                "sudo apt-get update && sudo apt-get install -y --no-install-recommends prometheus")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_binary() -> str:
    """The prometheus binary, or a RuntimeError that says how to install it."""
    path = shutil.which("prometheus")
    if path is None:
        raise RuntimeError(INSTALL_HINT)
    return path


def _write_atomically(path: Path, data: object) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(path)


class PrometheusServer:
    """Start, query and stop one Prometheus process."""

    def __init__(self, workdir: Path, scrape_interval_s: float = 1.0, port: int | None = None,
                 tls: tuple[Path, Path, Path] | None = None) -> None:
        """`tls`: (certificate chain, its key, the CA that signed it) to serve https only."""
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.tls = tls
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.targets_file = self.workdir / "targets.json"
        self.activator_file = self.workdir / "activator-targets.json"
        self.scrape_interval_s = scrape_interval_s
        self.proc: subprocess.Popen | None = None

    def write_config(self) -> Path:
        """Write prometheus.yml scraping the file_sd targets."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.targets_file.exists():
            self.write_targets([])
        if not self.activator_file.exists():
            self.scrape_activator(None)
        interval = f"{max(1, int(self.scrape_interval_s))}s"
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": [{
                "job_name": "foresail-inference",
                "scrape_timeout": interval,
                "file_sd_configs": [{"files": [str(self.targets_file)], "refresh_interval": "1s"}],
            }, {
                "job_name": "foresail-activator",
                "scrape_timeout": interval,
                "honor_labels": True,
                "file_sd_configs": [{"files": [str(self.activator_file)], "refresh_interval": "1s"}],
            }],
        }
        path = self.workdir / "prometheus.yml"
        path.write_text(json.dumps(config))  # JSON is valid YAML
        return path

    def write_targets(self, targets: list[tuple[str, dict[str, str]]]) -> None:
        """Replace the scrape targets: (host:port, labels) pairs, written atomically."""
        _write_atomically(self.targets_file, [{"targets": [t], "labels": labels} for t, labels in targets])

    def scrape_activator(self, address: str | None) -> None:
        """Scrape the activator at ``address`` (host:port), or none."""
        _write_atomically(self.activator_file, [{"targets": [address]}] if address else [])

    def start(self, timeout_s: float = 30.0) -> "PrometheusServer":
        """Start the server and wait until it is ready."""
        config = self.write_config()
        args = [find_binary(), f"--config.file={config}", f"--web.listen-address=127.0.0.1:{self.port}",
                f"--storage.tsdb.path={self.workdir / 'tsdb'}", "--storage.tsdb.retention.time=1d",
                "--web.enable-lifecycle"]
        context = None
        if self.tls:
            web = self.workdir / "web.yml"
            web.write_text(json.dumps({"tls_server_config": {"cert_file": str(self.tls[0]),
                                                             "key_file": str(self.tls[1])}}))
            args.append(f"--web.config.file={web}")
            context = ssl.create_default_context(cafile=str(self.tls[2]))
        self.log = open(self.workdir / "prometheus.log", "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            self._wait_ready(self.proc, timeout_s, context)
        except BaseException:  # not ready, exited, or interrupted: stop what was started
            self.stop()
            raise
        return self

    def _wait_ready(self, proc: subprocess.Popen, timeout_s: float, context: ssl.SSLContext | None) -> None:
        log_path = self.workdir / "prometheus.log"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"Prometheus exited with {proc.returncode}; see {log_path}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=1, context=context) as rsp:
                    if rsp.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"Prometheus did not become ready in {timeout_s:.0f} s; see {log_path}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.log.close()

    def __enter__(self) -> "PrometheusServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
