"""The operator's rate() window in the chart (operator.rateWindow, passed as FORESAIL_RATE_WINDOW) and the scrape
interval it must span twice: the plain-Prometheus scrape config's jobs scrape at monitoring.podMonitor.interval,
as the PodMonitors do, not at the user's global interval (Prometheus's default 1m would leave a 1m window one
sample, and no demand)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chart.helm import CHART, find, helm, render
from tests.chart.test_render import env_of, scrape_configs


@pytest.mark.parametrize("values, window", [({}, "2m"), ({"operator": {"rateWindow": "5m"}}, "5m")])
def test_the_rate_window_reaches_the_operator(tmp_path: Path, values: dict, window: str) -> None:
    assert env_of(render(tmp_path, values))["FORESAIL_RATE_WINDOW"]["value"] == window


@pytest.mark.parametrize("interval", [None, "30s", "1m"])
def test_every_scrape_job_scrapes_at_the_pod_monitors_interval(tmp_path: Path, interval: str | None) -> None:
    monitoring = {"podMonitor": {"enabled": True, **({"interval": interval} if interval else {})},
                  "scrapeConfig": {"enabled": True}}
    objects = render(tmp_path, {"monitoring": monitoring, "activator": {"enabled": True}})
    jobs = scrape_configs(objects)
    monitors = [e for m in find(objects, "PodMonitor") for e in m["spec"]["podMetricsEndpoints"]]
    assert [j["job_name"] for j in jobs] == ["foresail-inference", "foresail-operator", "foresail-activator"]
    assert {j["scrape_interval"] for j in jobs} == {e["interval"] for e in monitors} == {interval or "15s"}


@pytest.mark.parametrize("window", ["2 minutes", "1m1h", "30s30s"])  # Prometheus takes each unit once, largest first
def test_a_rate_window_that_is_not_a_duration_is_refused(tmp_path: Path, window: str) -> None:
    done = helm("template", "fs", str(CHART), values={"operator": {"rateWindow": window}}, tmp=tmp_path,
                check=False)
    assert done.returncode != 0 and "operator.rateWindow: Does not match pattern" in done.stderr, done.stderr
