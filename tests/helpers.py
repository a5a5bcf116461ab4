"""Helpers shared by the suites: a small REST client, kubectl, waiting, a stand-in HTTP server."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator, Mapping

import requests
from aiohttp import web

from foresail.kubetest.testing import ApiServerProcess

ROOT = Path(__file__).resolve().parents[1]
# a kubeconfig that parses and names a server nobody listens on (port 9)
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:9"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
"""


class Kube:
    """A minimal JSON client for the API test server (real HTTP, no client library in between)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.http = requests.Session()

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
             ok: tuple[int, ...] = (200, 201)) -> dict[str, Any]:
        rsp = self.http.request(method, self.url + path, data=None if body is None else json.dumps(body),
                                headers={"Content-Type": content_type}, timeout=10)
        if rsp.status_code not in ok:
            raise AssertionError(f"{method} {path} -> {rsp.status_code}: {rsp.text[:500]}")
        return rsp.json() if rsp.text else {}

    def get(self, path: str) -> dict[str, Any] | None:
        rsp = self.http.get(self.url + path, timeout=10)
        if rsp.status_code == 404:
            return None
        assert rsp.status_code == 200, rsp.text
        return rsp.json()

    def read(self, path: str) -> dict[str, Any]:
        """`get` of an object that exists (see `found`)."""
        return found(self.get(path), f"GET {path}")

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.call("POST", path, body)

    def merge(self, path: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.call("PATCH", path, patch, "application/merge-patch+json")

    def delete(self, path: str) -> None:
        self.call("DELETE", path, ok=(200, 202, 404))


class KubeServer(ApiServerProcess):
    """A running API test server (the same process) with a `Kube` client for it: what the suites'
    `cluster` fixtures yield."""

    def __init__(self, server: ApiServerProcess, kube: Kube) -> None:
        super().__init__(server.process, server.kubeconfig, server.log)
        self.kube = kube


def kubectl(kubeconfig: Path, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run kubectl against the API test server."""
    cmd = ["kubectl", f"--kubeconfig={kubeconfig}", *args]
    done = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed: {done.stderr}")
    return done


@contextlib.contextmanager
def logged_process(args: list[str], log_path: Path, **popen: Any) -> Iterator[subprocess.Popen]:
    """Run a process with its output in ``log_path``; on exit SIGTERM it, wait, and print the log's tail."""
    log = open(log_path, "w")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, **popen)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
        log.close()
        print(Path(log_path).read_text()[-4000:])


def found(obj: dict[str, Any] | None, what: str = "the object") -> dict[str, Any]:
    """An object read back that exists: None (a 404) raises LookupError, not an AssertionError, so that
    `wait_for` does not retry it, as it would not retry indexing the None."""
    if obj is None:
        raise LookupError(f"{what}: not found")
    return obj


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    """The status condition of that type on an object, or {}."""
    return next((c for c in ((obj or {}).get("status") or {}).get("conditions") or [] if c["type"] == type_), {})


def wait_for(check: Callable[[], Any], timeout: float = 20.0, interval: float = 0.2, what: str = "") -> Any:
    """Poll until check() returns something truthy; fail with the last value after timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except AssertionError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: last={last!r}")


@contextlib.asynccontextmanager
async def http_server(path: str, handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
                      more: Mapping[str, Callable[[web.Request], Awaitable[web.StreamResponse]]] | None = None,
                      method: str = "GET") -> AsyncIterator[str]:
    """An aiohttp server on 127.0.0.1 answering ``method`` (``*``: any) ``path`` with ``handler`` (and each path
    of ``more`` with its handler), for answers no API test server gives; yields its URL."""
    app = web.Application()
    for route, answer in {path: handler, **(more or {})}.items():
        app.router.add_route(method, route, answer)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield "http://127.0.0.1:%d" % runner.addresses[0][1]
    finally:
        await runner.cleanup()
