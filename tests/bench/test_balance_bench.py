"""The load-balancing benchmark runs end to end on a small load: every request of the three ways of
spreading them is answered (a request the activator could not route to a pod fails the run)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.balance import main


def test_a_small_run_reports_the_three_ways(tmp_path: Path, capsys) -> None:
    trace = tmp_path / "lengths.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
        f"2023-11-16 18:15:{i:02d}.0,100,{n}\n" for i, n in enumerate([20, 40, 60, 200])))
    out = tmp_path / "balance.json"
    assert main(["--requests", "40", "--load", "0.5", "--token-ms", "0.5", "--trace", str(trace),
                 "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert [run["way"] for run in figures["runs"]] == ["random pod (Service, iptables)",
                                                      "round robin (Service, IPVS)", "activator, least in flight"]
    for run in figures["runs"]:
        assert 20 * 0.5 <= run["p50_ms"] <= run["p90_ms"] <= run["p99_ms"]  # no answer before its tokens
    assert figures["capacity_rps"] == 4 * 8 / (80 * 0.5e-3)
    assert "p99 / random" in capsys.readouterr().out
