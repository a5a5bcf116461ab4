"""What the handlers keep per LLMDeployment goes with it: an operator that sees many created and deleted
keeps nothing of the deleted ones."""

from __future__ import annotations

import asyncio

import kopf

from foresail_operator import handlers


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
