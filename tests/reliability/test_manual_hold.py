"""`kubectl scale` on an autoscaled LLMDeployment is held as a floor for the scale-down stabilisation window,
also when the status write that records it is throttled: the decision loop keeps the hold itself, not only in the
status copy it reads (which kopf refreshes after the handler)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.reliability.fake_prometheus import FakePrometheus
from tests.reliability.support import DEPLOYS, LLMDS, condition, llmd_doc


def test_a_manual_scale_is_held_while_its_status_write_is_throttled(cluster, start_operator, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    kube = cluster.kube
    fake = FakePrometheus([("default", "tiny")], values={"requests": "0.5", "running": "0", "waiting": "0"}).start()
    try:
        monkeypatch.setenv("FORESAIL_PROMETHEUS_URL", fake.url)  # the operator process inherits the environment
        monkeypatch.setenv("FORESAIL_COLLECT_PERIOD", "1")
        op = start_operator()
        kube.create(LLMDS, llmd_doc("tiny", maxReplicas=6, autoscaling={
            "mode": "reactive", "intervalSeconds": 5, "slo": {"capacityPerReplica": 1}}))  # 0.5 req/s: 1 replica
        wait_for(lambda: condition(kube.get(f"{LLMDS}/tiny"), "MetricsAvailable").get("status") == "True",
                 timeout=60, what="metrics read")
        cluster.faults(method="PATCH", path=r"/llmdeployments/tiny/status$", status=429, count=1, retry_after=5)
        kube.merge(f"{LLMDS}/tiny/scale", {"spec": {"replicas": 4}})  # what `kubectl scale` sends
        wait_for(lambda: kube.read(f"{DEPLOYS}/tiny")["spec"]["replicas"] == 4, timeout=20, what="4 replicas")
        seen = set()
        deadline = time.monotonic() + 15  # three decisions
        while time.monotonic() < deadline:
            seen.add(kube.read(f"{DEPLOYS}/tiny")["spec"]["replicas"])
            time.sleep(0.25)
        assert seen == {4}, f"the manual 4 replicas were scaled away: {seen}"
        assert op.alive()
    finally:
        fake.stop()
