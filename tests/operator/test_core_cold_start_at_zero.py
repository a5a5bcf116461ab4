"""The measured cold start holds at zero replicas: with forecast.horizon auto, the horizon (the cold start plus an
interval) is how far ahead a deployment at zero is woken, and a change of it rebuilds the forecaster."""

from __future__ import annotations

import logging

import kopf

from foresail_operator import handlers
from foresail_operator.autoscaler import Loop, step
from foresail_operator.collector import Collector
from foresail_operator.metrics import PrometheusSource
from foresail_operator.spec import parse_spec
from foresail_operator.status import PodSummary, measured_cold_start
from tests.operator.advisory import BODY, KEY, THREE_READY
from tests.reliability.fake_prometheus import FakePrometheus

SPEC = parse_spec({"model": {"source": "builtin:tiny"}, "minReplicas": 1, "maxReplicas": 10,
                   "autoscaling": {"mode": "advisory", "intervalSeconds": 5, "slo": {"capacityPerReplica": 1},
                                   "scaleToZero": {"enabled": True}}})
AT_ZERO = {"spec": {"replicas": 0}, "status": {}}
POD = PodSummary("tiny-1", created=1000.0, ready_since=1400.0, problem=None)  # ready 400 s after its creation


async def test_the_last_measured_cold_start_holds_at_zero_replicas_and_after_a_restart() -> None:
    fake = FakePrometheus([]).start()
    try:
        collector = Collector(PrometheusSource(fake.url, timeout_s=2.0, window="10s"), period_s=1.0)
        await collector.collect_once()
        loop = Loop(KEY, forecast_step_s=60.0)
        horizons, forecasters = [], []
        for deployment, pods in ((THREE_READY, [POD]), (AT_ZERO, []), (THREE_READY, [POD])):
            await step(loop, None, collector, BODY, SPEC, deployment, pods,  # type: ignore[arg-type]
                       logging.getLogger("test"))
            horizons.append(loop.view["fields"]["forecast"]["horizonSeconds"])
            forecasters.append(loop.policy.forecaster if loop.policy is not None else None)
        assert horizons == [405, 405, 405]  # not the 120 s assumed until measured, plus the interval
        assert forecasters[0] is forecasters[1] is forecasters[2]  # never rebuilt
        # an operator started again while the deployment is at zero: the status tells the last one measured
        restarted = Loop(KEY, forecast_step_s=60.0)
        body = {**BODY, "status": {"coldStartSeconds": 400.0}}
        await step(restarted, None, collector, body, SPEC, AT_ZERO, [],  # type: ignore[arg-type]
                   logging.getLogger("test"))
        assert restarted.view["fields"]["forecast"]["horizonSeconds"] == 405
    finally:
        fake.stop()


def test_a_pod_first_seen_ready_after_a_restart_measures_no_cold_start() -> None:
    """An operator started again lists a pod whose container restarted two days after the pod was created: the
    Ready condition tells that readiness, not its first; its age is no cold start (days of forecast horizon)."""
    pod = kopf.Body({"metadata": {"name": "x-1", "uid": "u-restarted", "namespace": "default",
                                  "creationTimestamp": "2026-12-01T00:00:00Z"},
                     "status": {"conditions": [{"type": "Ready", "status": "True",
                                                "lastTransitionTime": "2026-12-03T00:02:00Z"}],
                                "containerStatuses": [{"name": "server", "ready": True, "restartCount": 1}]}})
    try:
        seen = handlers.owned_pods(namespace="default", labels={handlers.OWNER_LABEL: "x"}, body=pod)
        assert measured_cold_start([seen[("default", "x")]]) is None
        # a pod created two minutes before it became ready, no container restarted: that is its cold start
        fresh = {"metadata": {**pod["metadata"], "creationTimestamp": "2026-12-03T00:00:00Z"},
                 "status": {**pod["status"], "containerStatuses": [{"name": "server", "restartCount": 0}]}}
        assert measured_cold_start([PodSummary.of(fresh)]) == 120
    finally:
        handlers._first_ready.pop("u-restarted", None)
        handlers._unready.discard("u-restarted")
