"""The rate() window the operator reads the pods' counters over, against a real Prometheus whose series were
scraped every minute (Prometheus's default scrape interval, and the prometheus-community chart's), backfilled
with promtool: the default window spans two scrapes and reads the demand; a window of one scrape reads none,
and the reason says which setting to change."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from foresail.demo.prometheus import PrometheusServer
from foresail_operator.collector import Collector
from foresail_operator.config import OperatorConfig
from foresail_operator.metrics import PrometheusSource

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None or shutil.which("prometheus") is None,
                                reason="needs Debian's prometheus (make install)")
KEY = ("team-a", "chat")
LABELS = f'{{namespace="{KEY[0]}",llmdeployment="{KEY[1]}"}}'


@pytest.fixture(scope="module")
def scraped_every_minute(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Prometheus data folder: a pod completing 4 req/s, with 2 requests running, scraped every 60 s for two
    hours up to a second ago."""
    folder = tmp_path_factory.mktemp("minute")
    now = int(time.time())
    counter, running = ["# TYPE vllm:request_success counter"], ["# TYPE vllm:num_requests_running gauge"]
    for i, t in enumerate(range(now - 2 * 3600 + 59, now, 60)):
        counter.append(f"vllm:request_success_total{LABELS} {240.0 * i} {t}")
        running.append(f"vllm:num_requests_running{LABELS} 2 {t}")
    (folder / "data.om").write_text("\n".join([*counter, *running, "# EOF"]) + "\n")
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(folder / "data.om"),
                    str(folder / "tsdb")], check=True, capture_output=True, timeout=120)
    return folder


def lookup(prometheus: PrometheusServer, window: str) -> tuple[float | None, str | None]:
    """The requests/s the collector reads for ``KEY`` through ``window``, and why none where it reads none."""
    collector = Collector(PrometheusSource(prometheus.url, window=window), period_s=15.0)
    asyncio.run(collector.collect_once())
    signals, error = collector.lookup(KEY, replicas=3)
    return (signals.requests if signals is not None else None), error


def test_the_default_window_reads_demand_at_a_one_minute_scrape(scraped_every_minute: Path, monkeypatch) -> None:
    monkeypatch.delenv("FORESAIL_RATE_WINDOW", raising=False)
    window = OperatorConfig.from_env().rate_window
    assert window == OperatorConfig().rate_window
    with PrometheusServer(scraped_every_minute) as prometheus:
        requests, error = lookup(prometheus, window)
    assert error is None and requests == pytest.approx(4.0)


def test_a_window_of_one_scrape_names_the_setting_to_change(scraped_every_minute: Path) -> None:
    with PrometheusServer(scraped_every_minute) as prometheus:
        requests, error = lookup(prometheus, "1m")
    assert requests is None and error is not None and error.startswith("NoData"), error
    assert "no rate of its request counter over 1m" in error
    assert "FORESAIL_RATE_WINDOW (chart: operator.rateWindow) must span at least two scrape intervals" in error
