"""The activator benchmark runs end to end on a small load and reports both paths."""

from __future__ import annotations

import json
from pathlib import Path

from bench.activator import main


def test_a_small_run_reports_both_paths(tmp_path: Path, capsys) -> None:
    out = tmp_path / "activator.json"
    assert main(["--requests", "40", "--concurrency", "1,4", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert [run["concurrency"] for run in figures["runs"]] == [1, 4]
    for run in figures["runs"]:
        assert run["direct_rps"] > 0 and run["activator_rps"] > 0
        assert 0 < run["direct_p50_ms"] <= run["direct_p99_ms"]
        assert 0 < run["activator_p50_ms"] <= run["activator_p99_ms"]
    assert 10 < figures["activator_rss_mib"] < 1000
    assert "via activator" in capsys.readouterr().out
