"""A planned field missing from an owned object is put back when someone removed it, but not written again and again
where the API server itself leaves it out (one older than Kubernetes 1.27 does not know a budget's
unhealthyPodEvictionPolicy): the operator learns that from the server's answer to its own write, and learns it again
after a restart with one write, without a `Restored` Event. The reconciler in this process against the Kubernetes API
test server, behind a proxy on 127.0.0.1 that drops that field from the budgets written through it, as such a server
does."""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any, AsyncIterator

import aiohttp
import kopf
import pytest
from aiohttp import web
from kopf._core.engines.posting import settings_var  # what kopf.info reads, set as a running operator sets it

from foresail_operator import reconciler
from foresail_operator.config import OperatorConfig
from foresail_operator.kube import KubeClient
from tests.helpers import KubeServer, http_server
from tests.operator.conftest import LLMD

DROPPED = "unhealthyPodEvictionPolicy"
BUDGET = "/apis/policy/v1/namespaces/default/poddisruptionbudgets/tiny"
DEPLOYMENT = "/apis/apps/v1/namespaces/default/deployments/tiny"


def _without_field(body: Any) -> Any:
    """A budget's create or patch body as a server that does not know DROPPED keeps it."""
    if isinstance(body, list):  # a JSON patch
        return [op for op in body if not op.get("path", "").endswith(f"/{DROPPED}")]
    (body.get("spec") or {}).pop(DROPPED, None)
    return body


@contextlib.asynccontextmanager
async def older_server(upstream: str) -> AsyncIterator[str]:
    """A proxy to ``upstream`` that drops DROPPED from the budgets written through it; yields its URL."""
    async with aiohttp.ClientSession() as session:
        async def forward(request: web.Request) -> web.Response:
            data = await request.read()
            if data and request.method in ("POST", "PUT", "PATCH") and "/poddisruptionbudgets" in request.path:
                data = json.dumps(_without_field(json.loads(data))).encode()
            headers = {"Content-Type": request.headers.get("Content-Type", "application/json")}
            async with session.request(request.method, upstream + request.path_qs, data=data or None,
                                       headers=headers) as rsp:
                return web.Response(status=rsp.status, body=await rsp.read(), content_type="application/json")

        async with http_server("/{tail:.*}", forward, method="*") as url:
            yield url


async def test_a_field_the_server_leaves_out_is_not_written_again_and_one_removed_is_put_back(
        unsimulated: KubeServer, caplog: pytest.LogCaptureFixture) -> None:
    kube = unsimulated.kube
    kube.create(LLMD.format(ns="default"), {
        "apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "tiny"},
        "spec": {"model": {"source": "builtin:tiny"}, "replicas": 1, "autoscaling": {"mode": "off"}}})
    body = kube.read(LLMD.format(ns="default") + "/tiny")
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False  # no event queue outside an operator
    settings_var.set(settings)
    config = OperatorConfig(pre_stop="sleep")
    logger = logging.getLogger("reconcile")
    caplog.set_level(logging.INFO, logger="reconcile")

    def budget_writes() -> int:
        return sum(1 for e in unsimulated.audit(clear=True)
                   if e["resource"] == "poddisruptionbudgets" and e["verb"] in ("create", "patch", "update"))

    async with older_server(unsimulated.url) as url:
        client = KubeClient(kopf.ConnectionInfo(server=url, insecure=True))
        try:
            live = lambda: tuple(kube.get(p) for p in (  # noqa: E731
                "/api/v1/namespaces/default/services/tiny", DEPLOYMENT, BUDGET))
            await reconciler.reconcile(client, config, body, logger)
            assert DROPPED not in kube.read(BUDGET)["spec"] and budget_writes() == 1  # created without it
            assert not await reconciler.out_of_plan(client, config, body, live())
            await reconciler.reconcile(client, config, body, logger)
            assert budget_writes() == 0

            reconciler._left_out.clear()  # as after a restart: learned again with one write
            assert await reconciler.out_of_plan(client, config, body, live())
            await reconciler.reconcile(client, config, body, logger)
            await reconciler.reconcile(client, config, body, logger)
            assert budget_writes() == 1
            assert not await reconciler.out_of_plan(client, config, body, live())
            assert not [r for r in caplog.records if r.getMessage().startswith("restored")]

            removed = [{"op": "remove", "path": "/spec/template/spec/containers/0/lifecycle/preStop"}]
            kube.call("PATCH", DEPLOYMENT, removed, "application/json-patch+json")
            assert await reconciler.out_of_plan(client, config, body, live())
            await reconciler.reconcile(client, config, body, logger)
            container = kube.read(DEPLOYMENT)["spec"]["template"]["spec"]["containers"][0]
            assert container["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
            assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("restored")] == [
                "restored Deployment tiny: spec.template.spec.containers[0].lifecycle.preStop was changed outside "
                "Foresail"]
            assert not await reconciler.out_of_plan(client, config, body, live()) and budget_writes() == 0
        finally:
            await client.close()
            reconciler.forget("default", "tiny")
