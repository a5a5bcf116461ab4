"""A small async Kubernetes REST client on kopf's credentials.

kopf watches and dispatches; the operator's own reads and writes (owned objects, status, scale)
go through this client, which shares kopf's login (in-cluster service account or kubeconfig); given the
token's file, it reads the token again whenever the file changes, as client-go does (the kubelet rotates a
service account's projected token, and the old one expires). Errors come back as ApiError with the Status
object's reason and message.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import math
import os
import re
import time
from datetime import timezone
from typing import Any, AsyncGenerator, AsyncIterator, Mapping

import aiohttp
import kopf

from foresail_operator.telemetry import API_ERRORS

MERGE_PATCH = "application/merge-patch+json"
RETRY_STATUSES = {409, 429, 500, 502, 503, 504}
USER_AGENT = "foresail-operator/0.1.0"
MAX_RETRY_AFTER_S = 60.0  # the longest wait a Retry-After header gets; a longer one is cut to it
SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"  # where kopf's login reads it in a pod
log = logging.getLogger("foresail.kube")


class ApiError(Exception):
    """A Kubernetes API call that failed, with the Status reason and message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


def path_for(api_version: str, plural: str, namespace: str | None, name: str | None = None,
             subresource: str | None = None) -> str:
    """The REST path of a collection or an object."""
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    parts = [base]
    if namespace:
        parts.append(f"namespaces/{namespace}")
    parts.append(plural)
    if name:
        parts.append(name)
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


def _kubelet_version(node: Mapping[str, Any]) -> tuple[int, int] | None:
    """A Node's kubelet (major, minor), from ``status.nodeInfo.kubeletVersion``; None where it gives none."""
    info = (node.get("status") or {}).get("nodeInfo") or {}
    found = re.match(r"v?(\d+)\.(\d+)", str(info.get("kubeletVersion", "")))
    return (int(found.group(1)), int(found.group(2))) if found else None


class KubeClient:
    """Async JSON calls to the Kubernetes API with one shared connection pool."""

    def __init__(self, info: kopf.ConnectionInfo, timeout_s: float = 30.0, token_file: str | None = None) -> None:
        """``token_file``: where ``info``'s bearer token was read, to read again whenever it changes."""
        self._server = info.server.rstrip("/")
        self._headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **info.as_http_headers()}
        self._token_file = token_file
        self._token_read = self._token_version()
        self._ssl: Any = info.as_ssl_context() if self._server.startswith("https") else None
        if self._ssl is not None and info.insecure:
            self._ssl = False
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._version: tuple[int, int] | None = None
        self._kubelet: tuple[int, int] | None = None  # the oldest kubelet's version, once read
        self._kubelet_read = False

    async def request(self, method: str, path: str, body: Any = None, *,
                      content_type: str = "application/json", params: Mapping[str, str] | None = None,
                      retries: int = 3) -> dict[str, Any]:
        """Call the API; retry conflicts, throttling and server errors with backoff; raise ApiError."""
        session = self._open_session()
        self._reread_token()
        data = None if body is None else json.dumps(body)
        headers = dict(self._headers, **({"Content-Type": content_type} if body is not None else {}))
        for attempt in range(retries + 1):
            try:
                async with session.request(method, self._server + path, data=data, params=params,
                                           headers=headers, ssl=self._ssl) as rsp:
                    text = await rsp.text()
                    if rsp.status < 400:
                        return json.loads(text) if text else {}
                    error = _api_error(rsp.status, text)
                    retry_after = _retry_after(rsp.headers.get("Retry-After"))
            except RuntimeError:
                if not self._closed:
                    raise
                raise ApiError(503, "ServiceUnavailable", "the operator is shutting down") from None
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                error = ApiError(503, "ServiceUnavailable", f"cannot reach the API server: {exc!r}")
                retry_after = 0.0
            # A 409 on create means it exists: the caller decides. Others are worth retrying; a write
            # that still fails is counted in foresail_api_errors_total.
            exists = error.status == 409 and method == "POST"
            if error.status not in RETRY_STATUSES or exists or attempt == retries:
                if method != "GET" and not exists:
                    API_ERRORS.labels(str(error.status)).inc()
                raise error
            await asyncio.sleep(max(retry_after, 0.2 * 2 ** attempt))
        raise AssertionError("unreachable")

    async def get(self, path: str) -> dict[str, Any] | None:
        """GET an object; None when it does not exist."""
        try:
            return await self.request("GET", path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def server_version(self) -> tuple[int, int]:
        """The API server's (major, minor) from /version, read once; a provider's minor such as "30+"
        counts as 30. ApiError when it cannot be read, so nothing is planned for a version guessed."""
        if self._version is None:
            got = await self.request("GET", "/version")
            fields = got if isinstance(got, dict) else {}
            major, minor = (re.match(r"\d+", str(fields.get(key, ""))) for key in ("major", "minor"))
            if major is None or minor is None:
                raise ApiError(500, "InternalError", f"cannot read the server version from /version: {got}")
            self._version = (int(major.group()), int(minor.group()))
        return self._version

    async def oldest_kubelet(self) -> tuple[int, int] | None:
        """The oldest (major, minor) among the nodes' kubelets (``status.nodeInfo.kubeletVersion``), read
        once, a page of 500 nodes at a time; None where the nodes cannot be listed (403: no RBAC for them;
        404: a server without them) or none reports a version. ApiError on other failures, so nothing is
        planned for a version guessed."""
        if not self._kubelet_read:
            oldest: tuple[int, int] | None = None
            params, nodes = {"limit": "500"}, 0
            try:
                while True:
                    page = await self.request("GET", "/api/v1/nodes", params=params)
                    items = page.get("items") or []
                    nodes += len(items)
                    oldest = min(filter(None, [oldest, *map(_kubelet_version, items)]), default=None)
                    params["continue"] = (page.get("metadata") or {}).get("continue") or ""
                    if not params["continue"]:
                        break
            except ApiError as exc:
                if exc.status not in (403, 404):
                    raise
                log.info("cannot list the nodes to read their kubelets' versions (%s)", exc)
            else:
                counted = f"{nodes} node{'' if nodes == 1 else 's'}"
                if oldest is None:
                    log.info("no kubelet version among %s", counted)
                else:
                    log.info("the oldest kubelet of %s is %d.%d", counted, *oldest)
            self._kubelet, self._kubelet_read = oldest, True
        return self._kubelet

    async def merge_patch(self, path: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a JSON merge patch."""
        return await self.request("PATCH", path, patch, content_type=MERGE_PATCH)

    @contextlib.asynccontextmanager
    async def watch(self, path: str, params: Mapping[str, str],
                    timeout_s: float) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """Open a watch and give its events (``{"type", "object"}``, one per line) until the server ends it;
        ApiError when it cannot be opened or breaks off (no read for ``timeout_s``: a dead connection)."""
        session = self._open_session()
        self._reread_token()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._timeout.total, sock_read=timeout_s)
        try:
            async with session.get(self._server + path, params={**params, "watch": "true"},
                                   headers=self._headers, ssl=self._ssl, timeout=timeout) as rsp:
                if rsp.status >= 400:
                    raise _api_error(rsp.status, await rsp.text())
                async with contextlib.aclosing(_events(rsp, path)) as events:
                    yield events
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise ApiError(503, "ServiceUnavailable", f"cannot watch {path}: {exc!r}") from exc

    def _token_version(self) -> tuple[int, int] | None:
        """The token file's inode and modification time, which change as it is rewritten or replaced; None without
        one."""
        try:
            found = os.stat(self._token_file) if self._token_file else None
        except OSError:
            return None
        return (found.st_ino, found.st_mtime_ns) if found else None

    def _reread_token(self) -> None:
        """Send the token file's token from now on, if the file changed since it was last read."""
        version = self._token_version()
        if self._token_file is None or version is None or version == self._token_read:
            return
        try:
            with open(self._token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except OSError:
            return
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
            self._token_read = version
            log.info("read the rotated token in %s", self._token_file)

    def _open_session(self) -> aiohttp.ClientSession:
        """The connection pool, opened on first use; ApiError once the client is closed."""
        if self._closed:
            raise ApiError(503, "ServiceUnavailable", "the operator is shutting down")
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def close(self) -> None:
        """Close the connection pool; later calls fail with ApiError instead of reopening it."""
        self._closed = True
        if self._session is not None:
            await self._session.close()


async def _events(rsp: aiohttp.ClientResponse, path: str) -> AsyncGenerator[dict[str, Any], None]:
    """The events of an open watch, line by line (a line may be longer than aiohttp's readline allows)."""
    pending = b""
    try:
        async for chunk in rsp.content.iter_any():
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                if line.strip():
                    event = json.loads(line)
                    if not isinstance(event, dict):
                        raise ValueError(f"not a watch event: {line[:200]!r}")
                    yield event
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        raise ApiError(503, "ServiceUnavailable", f"the watch of {path} broke off: {exc!r}") from exc


def _retry_after(value: str | None) -> float:
    """The seconds a Retry-After header asks to wait, given as seconds or as an HTTP date (RFC 9110: proxies send
    dates), at most ``MAX_RETRY_AFTER_S``; 0 where there is none, it has passed or it is neither."""
    if not value:
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except ValueError:
            return 0.0
        seconds = when.replace(tzinfo=when.tzinfo or timezone.utc).timestamp() - time.time()  # no zone: UTC
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S) if math.isfinite(seconds) else 0.0


def _api_error(status: int, text: str) -> ApiError:
    try:
        body = json.loads(text)
        return ApiError(status, body.get("reason") or str(status), body.get("message") or text)
    except (ValueError, AttributeError):
        return ApiError(status, str(status), text[:500])
