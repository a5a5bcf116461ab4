"""The operator's API client against the Kubernetes API test server: retries and shutdown."""
from pathlib import Path

import kopf
import pytest

from foresail.kubetest.testing import start_apiserver
from foresail_operator.kube import ApiError, KubeClient


async def test_retries_a_conflict_and_fails_clearly_after_close(tmp_path: Path) -> None:
    with start_apiserver(tmp_path, simulate_pods=False) as server:
        client = KubeClient(kopf.ConnectionInfo(server=server.url, insecure=True))
        server.faults(method="GET", path="/api/v1/namespaces/default$", status=500, count=2)
        namespace = await client.get("/api/v1/namespaces/default")
        assert namespace is not None and namespace["metadata"]["name"] == "default"
        gets = [e for e in server.audit() if e["resource"] == "namespaces" and e["userAgent"].startswith("foresail")]
        assert len(gets) == 3, "two server errors, then the answer"
        await client.close()
        with pytest.raises(ApiError) as caught:  # never a bare "Session is closed" from aiohttp
            await client.get("/api/v1/namespaces/default")
        assert caught.value.status == 503 and "shutting down" in str(caught.value)
