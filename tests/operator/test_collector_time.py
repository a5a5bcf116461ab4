"""The collector's snapshot is dated when its queries are evaluated (metrics.py evaluates them all at the snapshot's
start), not when the last answer came: the growth of the requests in the system is divided by the time between
two snapshots, and a slow answer stretched it (a 4-s answer over a 15-s period read the growth 27 % low), and the
staleness check took slow figures for newer than they were. The collector runs as in the operator (`Collector`
over `PrometheusSource`, prometheus-api-client over HTTP)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import REGISTRY

from foresail_operator.collector import Collector
from foresail_operator.metrics import PrometheusSource
from tests.helpers import http_server

ANSWER_DELAY_S = 1.0


async def test_a_snapshot_is_dated_when_its_queries_are_evaluated_not_when_the_answers_came() -> None:
    evaluated: list[float] = []

    async def query(request: web.Request) -> web.Response:
        evaluated.append(float(request.query["time"]))
        await asyncio.sleep(ANSWER_DELAY_S)
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": []}})

    async with http_server("/api/v1/query", query) as url:
        collector = Collector(PrometheusSource(url, timeout_s=5.0), period_s=15.0)
        await collector.collect_once()
    assert collector.error is None and collector.taken_at is not None
    assert len(set(evaluated)) == 1 and len(evaluated) >= 10  # every query at the same time
    # the evaluation time is sent to the millisecond; each answer came a second after it
    assert abs(collector.taken_at - evaluated[0]) < ANSWER_DELAY_S / 4, collector.taken_at - evaluated[0]


async def test_a_collection_longer_than_the_default_period_is_measured_in_a_bucket_of_its_own() -> None:
    """One query answered after 10.5 s: the collection is observed in a finite bucket of
    foresail_metrics_collect_seconds, so that its quantiles tell a collection near or past the 15-s period (a
    Prometheus that does not answer holds one for about a minute) from one of 10 s; the last finite bucket was
    10 s."""
    slow_s = 10.5

    async def query(request: web.Request) -> web.Response:
        if request.query.get("query", "").endswith("(up)"):  # the scrape targets' query
            await asyncio.sleep(slow_s)
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": []}})

    def buckets() -> dict[float, float]:
        return {float(s.labels["le"]): s.value for m in REGISTRY.collect()
                if m.name == "foresail_metrics_collect_seconds" for s in m.samples if s.name.endswith("_bucket")}

    before = buckets()
    async with http_server("/api/v1/query", query) as url:
        collector = Collector(PrometheusSource(url, timeout_s=30.0), period_s=15.0)
        await collector.collect_once()
    assert collector.error is None
    grown = sorted(le for le, count in buckets().items() if count > before.get(le, 0.0))
    assert grown[0] != float("inf"), "observed in the +Inf bucket only"
    assert slow_s < grown[0] <= 2 * 15.0
