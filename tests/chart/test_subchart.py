"""The chart as a dependency of another (an umbrella chart, an Argo CD app of charts): Helm passes every subchart
the parent's `global` values, which values.schema.json must accept (it refuses unknown keys)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.chart.helm import CHART, RELEASE_NS, find, helm


@pytest.mark.parametrize("globals_", [None, {"imageRegistry": "registry.internal"}])
def test_the_chart_renders_as_a_subchart(tmp_path: Path, globals_: dict | None) -> None:
    parent = tmp_path / "platform"
    shutil.copytree(CHART, parent / "charts" / "foresail")
    version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    (parent / "Chart.yaml").write_text(yaml.safe_dump({"apiVersion": "v2", "name": "platform", "version": "0.1.0",
                                                       "dependencies": [{"name": "foresail", "version": version}]}))
    values = {"foresail": {"prometheus": {"url": "http://prometheus.monitoring.svc:9090"}}}
    if globals_:
        values["global"] = globals_
    (parent / "values.yaml").write_text(yaml.safe_dump(values))
    out = helm("template", "platform", str(parent), "--namespace", RELEASE_NS, tmp=tmp_path).stdout
    objects = [doc for doc in yaml.safe_load_all(out) if doc]
    (operator,) = find(objects, "Deployment")
    env = {e["name"]: e.get("value") for e in operator["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FORESAIL_PROMETHEUS_URL"] == "http://prometheus.monitoring.svc:9090"
