"""The activator benchmark runs end to end on a small load and reports both paths, its API requests and
the wake of held requests."""

from __future__ import annotations

import json
from pathlib import Path

from bench.activator import main


def test_a_small_run_reports_both_paths_the_api_requests_and_the_wakes(tmp_path: Path, capsys) -> None:
    out = tmp_path / "activator.json"
    assert main(["--requests", "40", "--concurrency", "1,4", "--wakes", "3", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert [run["concurrency"] for run in figures["runs"]] == [1, 4]
    for run in figures["runs"]:
        assert run["direct_rps"] > 0 and run["activator_rps"] > 0
        assert 0 < run["direct_p50_ms"] <= run["direct_p99_ms"]
        assert 0 < run["activator_p50_ms"] <= run["activator_p99_ms"]
    assert 10 < figures["activator_rss_mib"] < 1000
    assert figures["api_requests"] >= 0 and figures["load_seconds"] > 0
    wake = figures["wake"]
    assert 0 < wake["direct_p50_ms"] and 0 < wake["p50_ms"] <= wake["max_ms"]
    printed = capsys.readouterr().out
    assert "via activator" in printed and "over 3 wakes" in printed
