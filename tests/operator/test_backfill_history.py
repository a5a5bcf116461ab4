"""The decision loop's backfill of demand history from a real Prometheus (promtool-backfilled: an hourly job,
600 requests in minute 57 of every hour, scraped every 15 s): each point counts its whole forecast step, and a
backfill that fails because Prometheus is not up yet is tried again until it answers, keeping the demand the
decisions saw meanwhile."""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from foresail.demo.prometheus import PrometheusServer, free_port
from foresail_operator.autoscaler import BACKFILL_RETRY_S, Loop, _history_s, backfill, step
from foresail_operator.collector import Collector
from foresail_operator.metrics import PrometheusSource
from foresail_operator.spec import parse_spec
from tests.operator.advisory import BODY, KEY, THREE_READY
from tests.reliability.fake_prometheus import FakePrometheus

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None or shutil.which("prometheus") is None,
                                reason="needs Debian's prometheus (make install)")
SERIES = f'vllm:request_success_total{{namespace="{KEY[0]}",llmdeployment="{KEY[1]}"}}'
SPEC = parse_spec({"model": {"source": "builtin:tiny"}, "minReplicas": 1, "maxReplicas": 10,
                   "autoscaling": {"mode": "advisory", "slo": {"capacityPerReplica": 1}}})


@pytest.fixture(scope="module")
def hourly_job(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Prometheus data folder holding 5 hours of the job's counter, up to a second ago, and none of its requests
    in the hour under way (run in its minute 57, the tests counted part of a sixth hour's)."""
    folder = tmp_path_factory.mktemp("hourly")
    lines, count = ["# TYPE vllm:request_success counter"], 0.0
    now = int(time.time())
    for t in range(now // 3600 * 3600 - 5 * 3600, now, 15):
        count += 150.0 if (t % 3600) // 60 == 57 and t < now // 3600 * 3600 else 0.0
        lines.append(f"{SERIES} {count} {t}")
    (folder / "data.om").write_text("\n".join([*lines, "# EOF"]) + "\n")
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(folder / "data.om"),
                    str(folder / "tsdb")], check=True, capture_output=True, timeout=120)
    return folder


@pytest.mark.parametrize("step_s", [300, 900])
def test_each_backfilled_point_counts_its_whole_forecast_step(hourly_job: Path, step_s: int) -> None:
    """At a forecast step longer than the 2-minute rate window, each point still counts its whole step: the three
    past hours hold their 1,800 requests (a 2-minute window at each point's end saw none of them)."""
    hour = int(time.time()) // 3600 * 3600 - 3600
    with PrometheusServer(hourly_job) as prometheus:
        source = PrometheusSource(prometheus.url, window="2m")
        times, rates = source.demand_history(KEY, "vllm", hour - 3 * 3600 + step_s, hour, step_s)
    assert len(times) == 3 * 3600 // step_s
    assert sum(rates) * step_s == pytest.approx(1800.0, rel=0.02)
    assert max(rates) == pytest.approx(600.0 / step_s, rel=0.02)  # the job's minute, spread over its step


def test_a_backfill_that_fails_is_tried_again_and_keeps_what_the_decisions_saw(hourly_job: Path, caplog) -> None:
    """Prometheus is not up when the loop starts (both restart after an outage): the backfill fails and is tried
    again ``BACKFILL_RETRY_S`` later; meanwhile a decision reads 4.5 req/s. Once Prometheus answers, the history
    is loaded up to the step of that decision, whose demand stays as it was read, as does the time of the last
    demand seen (the history's is earlier)."""
    port, log = free_port(), logging.getLogger("test.backfill")
    loop = Loop(KEY, forecast_step_s=60.0)
    loop.configure(SPEC, None, {})
    collector = Collector(PrometheusSource(f"http://127.0.0.1:{port}", timeout_s=1.0), period_s=15.0)
    with caplog.at_level(logging.WARNING, logger="test.backfill"):
        asyncio.run(backfill(loop, collector, "foresail", log))
    assert "could not backfill history from Prometheus" in caplog.text and "trying again in 120 s" in caplog.text
    assert not loop.needs_backfill(SPEC) and loop.needs_backfill(SPEC, time.time() + BACKFILL_RETRY_S)

    live = FakePrometheus([KEY], values={"requests": "4.5", "running": "0", "waiting": "0"}).start()
    try:
        reading = Collector(PrometheusSource(live.url, timeout_s=2.0, window="10s"), period_s=1.0)
        asyncio.run(reading.collect_once())
        decided = time.time()
        asyncio.run(step(loop, None, reading, BODY, SPEC, THREE_READY, [], log))  # type: ignore[arg-type]
    finally:
        live.stop()
    assert loop.policy is not None

    with PrometheusServer(hourly_job, port=port):
        asyncio.run(backfill(loop, collector, "foresail", log))
    assert _history_s(loop.policy) >= 4 * 3600
    assert not loop.needs_backfill(SPEC, time.time() + 10 * BACKFILL_RETRY_S)  # done with
    history = loop.policy.forecaster.history_
    assert history is not None and history[~np.isnan(history)][-1] == pytest.approx(4.5)  # the decision's step
    assert loop.policy._last_demand_s is not None and loop.policy._last_demand_s >= decided


def test_a_first_backfill_ends_on_a_forecast_step(hourly_job: Path) -> None:
    """At start (no decision yet) the backfill ends where the current forecast step begins: its points are the
    forecaster's steps, each whole, so the 5 hours' 3,000 requests are all there and the step now under way is
    left to the decisions (before, the points ended at the second the backfill ran: each straddled two steps,
    the last one counted a part of a step as a whole one, and up to 60 of the 3,000 requests were lost)."""
    loop = Loop(KEY, forecast_step_s=60.0)
    loop.configure(SPEC, None, {})
    with PrometheusServer(hourly_job) as prometheus:
        collector = Collector(PrometheusSource(prometheus.url, window="2m"), period_s=15.0)
        started = time.time()
        asyncio.run(backfill(loop, collector, "foresail", logging.getLogger("test.backfill")))
    assert loop.policy is not None
    forecaster = loop.policy.forecaster
    assert forecaster.last_seen_ is not None and forecaster.last_seen_ < started // 60
    assert np.nansum(forecaster.history_) * 60 == pytest.approx(3000.0, rel=0.005)
