"""Drive the operator's decision loop the way the operator does, in advisory mode (no API writes).

The metrics path is the operator's own: `PrometheusSource` (prometheus-api-client over HTTP) inside the
`Collector`, then `step`, against `FakePrometheus` (tests/reliability/fake_prometheus.py, checked against
a real Prometheus there).
"""

from __future__ import annotations

import logging
from typing import Any

from foresail.autoscaler.policy import Decision
from foresail_operator.autoscaler import Loop, step
from foresail_operator.collector import Collector
from foresail_operator.metrics import PrometheusSource
from foresail_operator.spec import LLMDeploymentSpec
from tests.reliability.fake_prometheus import FakePrometheus

KEY = ("default", "tiny")
BODY = {"metadata": {"name": "tiny", "namespace": "default"}, "status": {}}
THREE_READY = {"spec": {"replicas": 3}, "status": {"readyReplicas": 3}}


async def decisions(spec: LLMDeploymentSpec, deployment: dict[str, Any] = THREE_READY, n: int = 1,
                    values: dict[str, str] | None = None, series: bool = True, loop: Loop | None = None,
                    logger: logging.Logger | None = None, body: dict[str, Any] = BODY,
                    arrivals: str | None = None, held: str | None = None,
                    scraped: str | None = None) -> tuple[Loop, Decision]:
    """``n`` decisions for ``KEY`` against a FakePrometheus answering ``values`` per signal (no series at
    all with ``series=False``), ``arrivals`` req/s counted and ``held`` requests held at the activator, and
    ``scraped`` pods' scrape targets up (none when None); returns the loop and the last decision."""
    fake = FakePrometheus([KEY] if series else [], values=values,
                          arrivals={KEY: arrivals} if arrivals is not None else None,
                          held={KEY: held} if held is not None else None,
                          scraped={KEY: scraped} if scraped is not None else None).start()
    try:
        collector = Collector(PrometheusSource(fake.url, timeout_s=2.0, window="10s"), period_s=1.0)
        loop = loop or Loop(KEY, forecast_step_s=60.0)
        for _ in range(n):
            await collector.collect_once()
            decision = await step(loop, None, collector, body, spec, deployment, [],  # type: ignore[arg-type]
                                  logger or logging.getLogger("test"))
        return loop, decision
    finally:
        fake.stop()
