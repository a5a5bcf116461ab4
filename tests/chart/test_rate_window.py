"""The operator's rate() window in the chart (operator.rateWindow, passed as FORESAIL_RATE_WINDOW) and the scrape
interval it must span twice: the plain-Prometheus scrape config's jobs scrape at monitoring.podMonitor.interval,
as the PodMonitors do, not at the user's global interval (Prometheus's default 1m would leave a 1m window one
sample, and no demand)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

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


@pytest.mark.parametrize("window, interval, refused", [
    ("2m", "2m", True), ("2m", "1m1s", True), ("3s", "1500ms", False), ("2s999ms", "1500ms", True),
    ("1h", "30m", False), ("1h", "30m1s", True), ("59m59s", "29m59s500ms", False), ("59m59s", "29m59s501ms", True),
    ("90s", "45s", False), ("1m30s", "46s", True)])
@pytest.mark.parametrize("monitor", ["podMonitor", "scrapeConfig"])
def test_a_rate_window_under_two_scrape_intervals_is_refused(tmp_path: Path, window: str, interval: str,
                                                             refused: bool, monitor: str) -> None:
    monitoring = {"podMonitor": {"interval": interval, "enabled": monitor == "podMonitor"},
                  "scrapeConfig": {"enabled": monitor == "scrapeConfig"}}
    done = helm("template", "fs", str(CHART), values={"operator": {"rateWindow": window}, "monitoring": monitoring},
                tmp=tmp_path, check=False)
    message = f"operator.rateWindow ({window}) must be at least twice monitoring.podMonitor.interval ({interval})"
    assert (done.returncode != 0 and message in done.stderr) if refused else done.returncode == 0, done.stderr


def test_the_interval_is_not_checked_where_the_chart_does_not_set_it(tmp_path: Path) -> None:
    """Without the PodMonitors and the scrape config your Prometheus's own interval applies (see the docs)."""
    env = env_of(render(tmp_path, {"monitoring": {"podMonitor": {"interval": "5m"}}}))
    assert env["FORESAIL_RATE_WINDOW"]["value"] == "2m"


@pytest.mark.parametrize("window, starts", [
    ("2s", True), ("1h", True), ("59m59s999ms", True), ("2m", True), ("1999ms", False), ("1s", False),
    ("0s", False), ("1h1ms", False), ("61m", False), ("2h", False), ("1d", False), ("1w", False), ("1y", False)])
def test_a_rate_window_the_operator_refuses_is_refused(tmp_path: Path, window: str, starts: bool,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The operator takes a window from 2s to 1h (config.RATE_WINDOWS_S) and stops at start on another: helm
    refuses one, rather than installing an operator that crash-loops; one it renders is one the operator takes."""
    from foresail_operator.config import OperatorConfig

    done = helm("template", "fs", str(CHART), values={"operator": {"rateWindow": window}}, tmp=tmp_path, check=False)
    if not starts:
        message = f"operator.rateWindow ({window}) must be from 2s to 1h"
        assert done.returncode != 0 and message in done.stderr, done.stderr
        return
    assert done.returncode == 0, done.stderr
    env = env_of([doc for doc in yaml.safe_load_all(done.stdout) if doc])
    for name in [n for n in os.environ if n.startswith("FORESAIL_")]:
        monkeypatch.delenv(name)
    for name, item in env.items():
        if "value" in item:
            monkeypatch.setenv(name, item["value"])
    assert OperatorConfig.from_env().rate_window == window


@pytest.mark.parametrize("interval, valid", [
    ("15s", True), ("1m30s", True), ("500ms", True), ("30m", True), ("30s30s", False), ("1s1m", False),
    ("1m1h", False), ("0s", False), ("0m0s", False)])
def test_the_scrape_interval_is_a_duration_prometheus_takes(tmp_path: Path, interval: str, valid: bool) -> None:
    """Prometheus parses each unit once, the largest first, and refuses the whole prometheus.yml otherwise; a zero
    interval would silently be its global one, which the rate window was not checked against."""
    values = {"operator": {"rateWindow": "1h"}, "monitoring": {"podMonitor": {"interval": interval},
                                                              "scrapeConfig": {"enabled": True}}}
    done = helm("template", "fs", str(CHART), values=values, tmp=tmp_path, check=False)
    if not valid:
        assert done.returncode != 0 and "monitoring.podMonitor.interval" in done.stderr, done.stderr
        return
    assert done.returncode == 0, done.stderr
    if shutil.which("promtool") is None:
        pytest.skip("needs Debian's prometheus (make install) to check the scrape config")
    jobs = scrape_configs([doc for doc in yaml.safe_load_all(done.stdout) if doc])
    for job in jobs:  # Debian's Prometheus has no Kubernetes discovery: the job's own settings are what is checked
        job.pop("kubernetes_sd_configs")
        job["static_configs"] = [{"targets": ["127.0.0.1:9"]}]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"scrape_configs": jobs}))
    checked = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
