"""Autoscaling turned on (`autoscaling.mode: off` -> `predictive`): until the decision loop's first decision, the
status written for the new generation says the loop has not decided yet (`Pending`), not `AutoscalingOff` kept from
before. The loop's first decision waits on its history's backfill, here on a Prometheus that takes connections and
never answers (a minute or more), during which the conditions said "autoscaling.mode is off".

The real operator process against the Kubernetes API test server."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

from tests.helpers import wait_for
from tests.operator.conftest import LLMD, Operator

LOOP_CONDITIONS = ("MetricsAvailable", "ForecastReady", "ScalingLimited")


def test_turning_autoscaling_on_leaves_no_autoscaling_off_condition(cluster, tmp_path: Path) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        op = Operator(cluster.kubeconfig, tmp_path / "operator.log", "--standalone", "--prometheus-url",
                      "http://127.0.0.1:%d" % silent.getsockname()[1]).start()
        path = LLMD.format(ns="default") + "/tiny"
        try:
            cluster.kube.create(LLMD.format(ns="default"), {
                "apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "tiny"},
                "spec": {"model": {"source": "builtin:tiny"}, "minReplicas": 1, "maxReplicas": 3,
                         "autoscaling": {"mode": "off"}}})

            def conditions(generation: int) -> dict[str, dict] | None:
                status = cluster.kube.get(path).get("status") or {}
                found = {c["type"]: c for c in status.get("conditions") or []}
                return found if status.get("observedGeneration") == generation and "MetricsAvailable" in found \
                    else None

            off = wait_for(lambda: conditions(1), timeout=60, what="the status of autoscaling off")
            assert {off[t]["reason"] for t in LOOP_CONDITIONS} == {"AutoscalingOff"}
            cluster.kube.merge(path, {"spec": {"autoscaling": {"mode": "predictive"}}})
            on = wait_for(lambda: conditions(2), timeout=60, what="the status of autoscaling on")
        finally:
            op.kill(signal.SIGKILL)
            print(op.text()[-3000:])
    assert {t: (on[t]["status"], on[t]["reason"]) for t in LOOP_CONDITIONS} == {
        t: ("Unknown", "Pending") for t in LOOP_CONDITIONS}, {t: on[t]["message"] for t in LOOP_CONDITIONS}
