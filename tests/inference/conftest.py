"""Start the real inference server process (`python -m foresail serve`) and talk to it over HTTP."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from bench.inference import server_env

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "sk-test-7f3a9c"  # the main server's key; tests check it never reaches the log
MODEL = "builtin:tiny"


@dataclass
class Server:
    """A running `foresail serve` process."""

    proc: subprocess.Popen
    url: str
    log_path: Path
    headers: dict[str, str] = field(default_factory=dict)

    def log(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> dict[str, float]:
        """The /metrics samples, keyed by sample name with labels, as Prometheus prints them."""
        text = requests.get(f"{self.url}/metrics", timeout=10).text
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                samples[key] = float(value)
        return samples

    def metric(self, name: str, **labels: str) -> float:
        """One sample, with the model_name label filled in."""
        all_labels = {"model_name": MODEL, **labels}
        rendered = ",".join(f'{k}="{v}"' for k, v in sorted(all_labels.items()))
        return self.metrics()[f"{name}{{{rendered}}}"]

    def rss(self) -> int:
        """Resident memory of the server process, in bytes."""
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss


def start_server(*extra: str, ready_timeout: float = 90.0, model: str = MODEL) -> Server:
    """Start the server on a free port and wait until /ready answers 200."""
    log_file = tempfile.NamedTemporaryFile(prefix="foresail-serve-", suffix=".log", delete=False)
    env = {**server_env(), "PYTHONUNBUFFERED": "1", "MALLOC_ARENA_MAX": "2"}  # as the image sets it
    env.pop("FORESAIL_API_KEY", None)
    cmd = [sys.executable, "-m", "foresail", "serve", "--model", model, "--port", "0", "--threads", "1", *extra]
    proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    log_path = Path(log_file.name)
    deadline = time.monotonic() + ready_timeout
    url = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
        if url is None:
            found = re.search(r"listening on (http://\S+)", log_path.read_text())
            url = found.group(1) if found else None
        if url is not None:
            try:
                if requests.get(f"{url}/ready", timeout=2).status_code == 200:
                    return Server(proc, url, log_path)
            except requests.ConnectionError:
                pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"server not ready after {ready_timeout}s:\n{log_path.read_text()}")


def stop_server(server: Server) -> int:
    """SIGTERM the server and return its exit code."""
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait()
    return server.proc.returncode


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """The shared server: small limits so overload is reachable, an API key."""
    srv = start_server("--api-key", API_KEY, "--max-waiting", "8", "--max-tokens-in-flight", "4096",
                       "--max-body-bytes", "65536")
    srv.headers = {"Authorization": f"Bearer {API_KEY}"}
    yield srv
    stop_server(srv)
    srv.log_path.unlink(missing_ok=True)


@pytest.fixture()
def client(server: Server):
    """An `openai` client pointed at the shared server."""
    from openai import OpenAI

    return OpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0, timeout=60)


@pytest.fixture()
def aclient(server: Server):
    """An async `openai` client pointed at the shared server."""
    from openai import AsyncOpenAI

    return AsyncOpenAI(base_url=f"{server.url}/v1", api_key=API_KEY, max_retries=0, timeout=60)
