"""A Prometheus that answers slowly or throttles keeps the metrics fresh where it answers within the collect
period: the snapshot's queries run a few at a time, not one after another, and a 429's Retry-After (Mimir's,
Thanos's query frontend's) is not slept three times per query. The collector runs as in the operator
(`Collector` over `PrometheusSource`, prometheus-api-client over HTTP)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiohttp import web

from foresail_operator.collector import Collector
from foresail_operator.metrics import PrometheusSource
from tests.helpers import http_server
from tests.operator.advisory import KEY
from tests.reliability.fake_prometheus import FakePrometheus

RETRY_AFTER_S = 3


async def test_a_throttled_query_is_tried_again_without_sleeping_its_retry_after() -> None:
    """Each query is throttled once (429, Retry-After 3 s) and then answered: the collection takes well under
    one Retry-After, where it used to sleep one per query (about a minute in all)."""
    seen: list[str] = []

    async def query(request: web.Request) -> web.Response:
        promql = request.query.get("query", "")
        seen.append(promql)
        if seen.count(promql) == 1:
            return web.json_response({"status": "error", "errorType": "too_many_requests", "error": "slow down"},
                                     status=429, headers={"Retry-After": str(RETRY_AFTER_S)})
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": []}})

    async with http_server("/api/v1/query", query) as url:
        collector = Collector(PrometheusSource(url, timeout_s=2.0), period_s=15.0)
        started = time.monotonic()
        await collector.collect_once()
        took = time.monotonic() - started
    assert collector.error is None and collector.taken_at is not None
    assert len(seen) == 2 * len(set(seen)) > 10  # every query throttled once, then answered
    assert took < RETRY_AFTER_S, f"one collection took {took:.1f} s"


async def lookups_while_slow(delay_s: float, period_s: float, count: int) -> tuple[list[str], Collector]:
    """``count`` lookups 0.1 s apart while every answer of a fake Prometheus takes ``delay_s`` and the collector
    reads every ``period_s`` ("fresh", or the reason there is no reading), and the collector, stopped once its last
    collection ended (no query left in flight)."""
    fake = FakePrometheus([KEY], delay_s=delay_s).start()
    fake.mode = "slow"
    collector = Collector(PrometheusSource(fake.url, timeout_s=5.0), period_s=period_s)
    task = asyncio.create_task(collector.run(logging.getLogger("test.slow")))
    try:
        deadline = time.monotonic() + 10
        while collector.taken_at is None and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        states = []
        for _ in range(count):
            signals, error = collector.lookup(KEY, replicas=3)
            states.append("fresh" if signals is not None else str(error).split(":")[0])
            await asyncio.sleep(0.1)
        last = collector.taken_at
        while collector.taken_at == last and time.monotonic() < deadline + 10:
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        fake.stop()
    return states, collector


async def test_a_slow_prometheus_that_answers_in_time_never_reads_as_stale() -> None:
    """Every answer takes 0.1 s and the collector reads every 0.5 s: one after another, the 20-odd queries took
    over 2 s, so the last read was older than the 1.5-s staleness limit for part of each cycle (MetricsStale, every
    replica held); run a few at a time, the reads stay fresh."""
    states, _ = await lookups_while_slow(0.1, 0.5, 30)
    assert states == ["fresh"] * 30, {s: states.count(s) for s in set(states)}


async def test_a_collection_longer_than_two_periods_that_answers_never_reads_as_stale() -> None:
    """Every answer takes 0.7 s and the collector reads every 0.4 s: one collection takes over two periods, so the
    last read was older than three periods (1.2 s) for part of each cycle (MetricsStale, every replica held, the
    condition flapping) although every read succeeded. The next read is due a period and a collection after the
    last: only a read later than that is stale."""
    states, collector = await lookups_while_slow(0.7, 0.4, 40)
    assert collector.error is None and collector.read_s > 2 * collector.period_s
    assert states == ["fresh"] * 40, {s: states.count(s) for s in set(states)}
