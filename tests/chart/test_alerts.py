"""The chart's alerting rules (charts/foresail/rules/foresail.rules.yaml), checked and unit-tested by
promtool, Prometheus's own rule checker and evaluator: each alert fires on the series that should fire
it, after its `for`, with its labels and annotations, and stays quiet on a healthy deployment."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.helm import CHART

RULES = CHART / "rules" / "foresail.rules.yaml"
pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="needs Debian's prometheus (make install)")

# 30 minutes of series, one sample a minute: "chat" at its maximum of 10 replicas with 12 req/s on 1 req/s
# each, and its held requests timing out at the activator; "ok" within its 6 replicas and answered;
# "embed" counts tokens, 5,000 tok/s on 4 replicas of 1,000; the operator's reads and writes failing.
FAILING = {
    'foresail_metrics_errors_total{reason="PrometheusUnavailable"}': "0+1x30",
    'foresail_api_errors_total{status="403"}': "0+1x30",
    'foresail_demand_requests_per_second{namespace="team-a",llmdeployment="chat"}': "12x30",
    'foresail_capacity_requests_per_second{namespace="team-a",llmdeployment="chat"}': "1x30",
    'foresail_desired_replicas{namespace="team-a",llmdeployment="chat"}': "10x30",
    'foresail_demand_requests_per_second{namespace="team-a",llmdeployment="ok"}': "5x30",
    'foresail_capacity_requests_per_second{namespace="team-a",llmdeployment="ok"}': "1x30",
    'foresail_desired_replicas{namespace="team-a",llmdeployment="ok"}': "6x30",
    'foresail_demand_tokens_per_second{namespace="team-b",llmdeployment="embed"}': "5000x30",
    'foresail_capacity_tokens_per_second{namespace="team-b",llmdeployment="embed"}': "1000x30",
    'foresail_desired_replicas{namespace="team-b",llmdeployment="embed"}': "4x30",
    'foresail_activator_requests_total{namespace="team-a",llmdeployment="chat",outcome="timeout"}': "0+1x30",
    'foresail_activator_requests_total{namespace="team-a",llmdeployment="ok",outcome="forwarded"}': "0+60x30",
    # 90 minutes of forecast coverage: "chat"'s p90 covers 60 % of demand, "ok"'s 82 % (within 15 points)
    'foresail_forecast_coverage{namespace="team-a",llmdeployment="chat"}': "0.6x90",
    'foresail_forecast_quantile{namespace="team-a",llmdeployment="chat"}': "0.9x90",
    'foresail_forecast_coverage{namespace="team-a",llmdeployment="ok"}': "0.82x90",
    'foresail_forecast_quantile{namespace="team-a",llmdeployment="ok"}': "0.9x90",
}
# the same deployments, healthy: no failed reads or writes, demand within the replicas, nothing refused
HEALTHY = {series: ("0x30" if "errors" in series or "timeout" in series else values)
           for series, values in FAILING.items() if "chat" not in series and "embed" not in series}
ALERTS = ["ForesailMetricsUnavailable", "ForesailDemandAboveReplicas", "ForesailActivatorRequestsFailing",
          "ForesailKubernetesAPIErrors", "ForesailForecastCoverageLow"]


def rule(alert: str) -> dict[str, Any]:
    """The alert's rule in the rules file."""
    return next(r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if r.get("alert") == alert)


def filled_annotations(alert: str, **labels: str) -> dict[str, str]:
    """The alert's annotations from the rules file, with its {{ $labels.x }} filled in."""
    fill = lambda text: re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: labels[m.group(1)], text)  # noqa: E731
    return {k: fill(v) for k, v in rule(alert)["annotations"].items()}


def expect(alert: str, *label_sets: dict[str, str]) -> list[dict[str, Any]]:
    """promtool's exp_alerts: each firing alert's labels (with the rule's severity) and annotations."""
    return [{"exp_labels": {**labels, **rule(alert)["labels"]}, "exp_annotations": filled_annotations(alert, **labels)}
            for labels in label_sets]


def promtool_test(tmp_path: Path, series: dict[str, str], checks: list[dict[str, Any]]) -> subprocess.CompletedProcess:
    tests = {"rule_files": [str(RULES)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": [{"series": s, "values": v} for s, v in series.items()],
        "alert_rule_test": checks}]}
    path = tmp_path / "alerts-test.yaml"
    path.write_text(yaml.safe_dump(tests))
    return subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True, timeout=60)


def test_the_rules_file_is_valid() -> None:
    done = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "SUCCESS: 5 rules found" in done.stdout, done.stdout + done.stderr


def test_each_alert_fires_after_its_for_on_the_series_that_should_fire_it(tmp_path: Path) -> None:
    chat, embed = {"namespace": "team-a", "llmdeployment": "chat"}, {"namespace": "team-b", "llmdeployment": "embed"}
    checks: list[dict[str, Any]] = [
        # pending, not firing, before their `for` (10, 15 and 5 minutes after the rates start)
        {"eval_time": "9m", "alertname": "ForesailMetricsUnavailable", "exp_alerts": []},
        {"eval_time": "14m", "alertname": "ForesailDemandAboveReplicas", "exp_alerts": []},
        {"eval_time": "4m", "alertname": "ForesailActivatorRequestsFailing", "exp_alerts": []},
        {"eval_time": "12m", "alertname": "ForesailMetricsUnavailable",
         "exp_alerts": expect("ForesailMetricsUnavailable", {})},
        {"eval_time": "16m", "alertname": "ForesailDemandAboveReplicas",
         "exp_alerts": expect("ForesailDemandAboveReplicas", chat, embed)},  # not "ok"
        {"eval_time": "7m", "alertname": "ForesailActivatorRequestsFailing",
         "exp_alerts": expect("ForesailActivatorRequestsFailing", chat)},  # forwarded requests are not failures
        {"eval_time": "12m", "alertname": "ForesailKubernetesAPIErrors",
         "exp_alerts": expect("ForesailKubernetesAPIErrors", {"status": "403"})},
        {"eval_time": "59m", "alertname": "ForesailForecastCoverageLow", "exp_alerts": []},
        {"eval_time": "61m", "alertname": "ForesailForecastCoverageLow",
         "exp_alerts": expect("ForesailForecastCoverageLow", chat)},  # not "ok", 8 points short
    ]
    done = promtool_test(tmp_path, FAILING, checks)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_healthy_deployment_fires_nothing(tmp_path: Path) -> None:
    # at 30 min, and at 90 min for the coverage alert's hour
    checks: list[dict[str, Any]] = [
        {"eval_time": "90m" if a == "ForesailForecastCoverageLow" else "30m", "alertname": a, "exp_alerts": []}
        for a in ALERTS]
    done = promtool_test(tmp_path, HEALTHY, checks)
    assert done.returncode == 0, done.stdout + done.stderr
    # and the same checks fail on the failing series: the test can tell the two apart
    assert promtool_test(tmp_path, FAILING, checks).returncode != 0


def test_the_rules_use_only_metrics_foresail_exports() -> None:
    """A misspelt series would leave its alert silent for ever: each one is the operator's or the activator's."""
    from tests.chart.test_render import known_metrics

    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    assert [r["alert"] for r in rules] == ALERTS  # every alert is also in the tests above
    used = set(re.findall(r"\bforesail_[a-z_]+", " ".join(r["expr"] for r in rules)))
    assert len(used) == 10 and used <= known_metrics(), used - known_metrics()
