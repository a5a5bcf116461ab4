"""The operator killed with SIGKILL mid-scale and mid-create, then restarted: it converges with no
duplicates and no orphans (every step of the reconciler is idempotent)."""

from __future__ import annotations

import signal
import time

import pytest

from tests.helpers import wait_for
from tests.reliability.support import (
    DEPLOYS,
    LLMDS,
    PODS,
    SERVICES,
    assert_no_orphans_or_duplicates,
    llmd_doc,
    owned,
    wait_converged,
)


@pytest.mark.parametrize("delay_s", [0.0, 0.4])
def test_sigkill_right_after_kubectl_scale(cluster, start_operator, delay_s):
    kube = cluster.kube
    op = start_operator()
    kube.create(LLMDS, llmd_doc("tiny", autoscaling={"mode": "off"}, replicas=2))
    wait_converged(kube, "tiny", 2)
    kube.merge(f"{LLMDS}/tiny/scale", {"spec": {"replicas": 5}})  # what `kubectl scale` sends
    time.sleep(delay_s)
    op.kill(signal.SIGKILL)
    assert not op.alive()
    op = start_operator()
    wait_converged(kube, "tiny", 5, timeout=30)
    assert len(owned(kube, PODS)) == 5
    assert_no_orphans_or_duplicates(kube)
    assert op.alive()


def test_sigkill_right_after_several_creates(cluster, start_operator):
    kube = cluster.kube
    op = start_operator()
    names = [f"m{i}" for i in range(4)]
    for name in names:
        kube.create(LLMDS, llmd_doc(name, autoscaling={"mode": "off"}, replicas=1))
    wait_for(lambda: owned(kube, DEPLOYS) or owned(kube, SERVICES), timeout=20, what="the first owned object")
    op.kill(signal.SIGKILL)
    op = start_operator()
    for name in names:
        wait_converged(kube, name, 1, timeout=30)
    assert_no_orphans_or_duplicates(kube)
    assert op.alive()


def test_deleted_while_the_operator_is_down_leaves_no_orphans(cluster, start_operator):
    kube = cluster.kube
    op = start_operator()
    for name in ("keep", "gone"):
        kube.create(LLMDS, llmd_doc(name, autoscaling={"mode": "off"}, replicas=2))
    for name in ("keep", "gone"):
        wait_converged(kube, name, 2)
    op.kill(signal.SIGKILL)
    kube.delete(f"{LLMDS}/gone")
    op = start_operator()
    wait_for(lambda: kube.get(f"{LLMDS}/gone") is None and kube.get(f"{DEPLOYS}/gone") is None
             and kube.get(f"{SERVICES}/gone") is None, timeout=30, what="gone and its owned objects deleted")
    wait_for(lambda: len(owned(kube, PODS)) == 2, timeout=20, what="only keep's 2 pods left")
    assert_no_orphans_or_duplicates(kube)
    wait_converged(kube, "keep", 2)
    assert op.alive()
