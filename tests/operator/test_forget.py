"""What the handlers keep per LLMDeployment goes with it: an operator that sees many created and deleted
keeps nothing of the deleted ones, not even where a decision loop or a timer was running when one was deleted (the
handlers in this process, against the Kubernetes API test server)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Iterator

import kopf
import pytest
from kopf._cogs.aiokits.aioenums import AsyncFlagWaiter, FlagSetter  # kopf's `stopped` of a daemon
from kopf._core.engines.posting import settings_var  # what kopf.info reads, set as a running operator sets it

from foresail_operator import handlers
from foresail_operator.collector import Collector
from foresail_operator.config import OperatorConfig
from foresail_operator.kube import KubeClient
from foresail_operator.reconciler import reconcile
from tests.helpers import Kube, KubeServer
from tests.operator.conftest import LLMD


async def test_a_deleted_llmdeployment_leaves_no_lock_or_failure_behind() -> None:
    kept = ("default", "other")
    memo = kopf.Memo(failures={("default", "gone"): ("ReconcileFailed", "cannot apply the spec: x"),
                               kept: ("InvalidSpec", "y")})
    handlers._locks.update({("default", "gone"): asyncio.Lock(), kept: asyncio.Lock()})
    try:
        await handlers.forget(name="gone", namespace="default", memo=memo)
        assert ("default", "gone") not in handlers._locks and kept in handlers._locks
        assert memo.failures == {kept: ("InvalidSpec", "y")}
    finally:
        handlers._locks.clear()


async def test_a_pod_event_after_the_owner_went_keeps_no_lock() -> None:
    """The terminating pods' events come after `forget`: their status refresh finds no owner and keeps nothing."""
    try:
        await handlers._refresh(kopf.Memo(loops={}, failures={}), ("default", "gone"), {}, {}, {})
        assert ("default", "gone") not in handlers._locks
    finally:
        handlers._locks.clear()


KEY = ("default", "tiny")
SERVICE = "/api/v1/namespaces/default/services/tiny"
OWNED_PATHS = (SERVICE, "/apis/apps/v1/namespaces/default/deployments/tiny",
               "/apis/policy/v1/namespaces/default/poddisruptionbudgets/tiny")


class DeletedWhileReading(KubeClient):
    """The operator's client; while a handler awaits its first request of a path containing `during`, the
    LLMDeployment is deleted as kopf goes about it (its finalizer holds the object: deletionTimestamp; the index
    shows that, the daemons and timers are told to stop, then `forget` runs), and the garbage collector deletes
    its Service."""

    def __init__(self, server: KubeServer, index: dict, stopper: FlagSetter, during: str) -> None:
        super().__init__(kopf.ConnectionInfo(server=server.url, insecure=True))
        self.kube, self.index, self.stopper, self.during = server.kube, index, stopper, during
        self.memo = kopf.Memo()

    async def request(self, method: str, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if self.during and self.during in path:
            self.during = ""
            self.kube.delete(LLMD.format(ns="default") + "/tiny")
            self.index[KEY] = [self.kube.read(LLMD.format(ns="default") + "/tiny")]
            self.stopper.set()
            await handlers.forget(name="tiny", namespace="default", memo=self.memo)
            self.kube.delete(SERVICE)
        return await super().request(method, path, *args, **kwargs)


@pytest.fixture
def unsimulated(unsimulated: KubeServer) -> Iterator[KubeServer]:
    """conftest's API test server with the CRDs, no pods; kopf's event posting off (no operator here)."""
    settings = kopf.OperatorSettings()
    settings.posting.enabled = False
    settings_var.set(settings)
    yield unsimulated
    handlers._locks.clear()
    handlers._reconciling.clear()
    handlers._vanished_checked.clear()


def create(kube: Kube, mode: str) -> dict:
    """An LLMDeployment that carries kopf's finalizer, as one with a daemon or timer does."""
    return kube.create(LLMD.format(ns="default"), {
        "apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment",
        "metadata": {"name": "tiny", "finalizers": ["kopf.zalando.org/KopfFinalizerMarker"]},
        "spec": {"model": {"source": "builtin:tiny"}, "replicas": 1, "autoscaling": {"mode": mode}}})


def kept(memo: kopf.Memo) -> list:
    return [d for d in (handlers._locks, handlers._reconciling, handlers._vanished_checked, memo.failures) if KEY in d]


@pytest.mark.parametrize("during", [SERVICE, "/version"], ids=["reading-back", "planning"])
async def test_a_resync_running_when_its_llmdeployment_is_deleted_keeps_nothing(unsimulated: KubeServer,
                                                                                during: str) -> None:
    """The resync timer plans (reading the server's version, the first time), reads the owned objects back
    (VANISHED_CHECK_S is due), finds the Service gone (the garbage collector's doing) and would reconcile: the
    LLMDeployment is deleted during either read."""
    kube, logger = unsimulated.kube, logging.getLogger("resync")
    body = create(kube, "off")
    index = {KEY: [body]}
    client = DeletedWhileReading(unsimulated, index, FlagSetter(), "")
    memo = client.memo = kopf.Memo(client=client, config=OperatorConfig(pre_stop="sleep"), loops={}, failures={},
                                   owned={"services": {}, "poddisruptionbudgets": {}})
    try:
        await reconcile(client, memo.config, body, logger)
        memo.owned["services"][KEY], deployment, memo.owned["poddisruptionbudgets"][KEY] = (
            kube.read(path) for path in OWNED_PATHS)
        handlers._vanished_checked[KEY] = time.monotonic() - handlers.VANISHED_CHECK_S
        memo.config, client.during = OperatorConfig(pre_stop="auto"), during  # "auto": the version is read
        await handlers.resync(name="tiny", namespace="default", logger=logger, memo=memo, llmdeployments=index,
                              owned_deployments={KEY: [deployment]}, owned_pods={})
    finally:
        await client.close()
    assert not client.during, f"no request of {during}"
    assert kept(memo) == []


async def test_a_decision_loop_running_when_its_llmdeployment_is_deleted_keeps_nothing(
        unsimulated: KubeServer) -> None:
    """The decision loop puts back the owned objects (none yet) before its decision; the LLMDeployment is deleted
    while it reads it."""
    index = {KEY: [create(unsimulated.kube, "predictive")]}
    stopper: FlagSetter = FlagSetter()
    client = DeletedWhileReading(unsimulated, index, stopper, "/llmdeployments/tiny")
    memo = client.memo = kopf.Memo(client=client, config=OperatorConfig(pre_stop="sleep"), loops={}, failures={},
                                   owned={"services": {}, "poddisruptionbudgets": {}}, collector=Collector(None))
    try:
        await asyncio.wait_for(handlers.autoscale(
            stopped=AsyncFlagWaiter(stopper), name="tiny", namespace="default", logger=logging.getLogger("loop"),
            memo=memo, llmdeployments=index, owned_deployments={}, owned_pods={}), timeout=30)
    finally:
        await client.close()
    assert not client.during, "the LLMDeployment was not read"
    assert kept(memo) == [] and memo.loops == {}
