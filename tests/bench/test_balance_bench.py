"""The load-balancing benchmark runs end to end on a small load: every request of every way of spreading
them is answered (a request the activator could not route to a pod fails the run), and in the prefix
scenario the activator's prefix routing finds more of the prompts' blocks cached than random picks."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from bench.balance import main


def test_a_small_run_reports_every_way(tmp_path: Path, capsys) -> None:
    trace = tmp_path / "lengths.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
        f"2023-11-16 18:15:{i:02d}.0,100,{n}\n" for i, n in enumerate([20, 40, 60, 200])))
    mooncake = tmp_path / "conversations.jsonl.gz"
    with gzip.open(mooncake, "wt") as fh:  # 12 conversations of 4 turns, each turn extending the last
        for turn in range(4):
            for c in range(12):
                blocks = [0] + [1000 * c + b for b in range(1, 20 + 5 * turn)]  # longer than the routing key
                fh.write(json.dumps({"timestamp": 0, "input_length": 512 * len(blocks), "output_length": 10,
                                     "hash_ids": blocks}) + "\n")
    out = tmp_path / "balance.json"
    # about one request at a time: at low concurrency the bound on load (ceil(1.25 x the mean in flight))
    # sends a key elsewhere whenever its pod is busy, which would blur what is measured here
    assert main(["--requests", "40", "--load", "0.5", "--token-ms", "0.5", "--trace", str(trace),
                 "--mooncake", str(mooncake), "--prefix-load", "0.01", "--block-ms", "1", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert [run["way"] for run in figures["least_load"]] == [
        "random pod (Service, iptables)", "round robin (Service, IPVS)", "activator, least in flight",
        "2 activators at random, each least in flight"]
    for run in figures["least_load"]:
        assert 20 * 0.5 <= run["p50_ms"] <= run["p90_ms"] <= run["p99_ms"]  # no answer before its tokens
        assert run["capacity_rps"] == 4 * 8 / (80 * 0.5e-3)
    hits = {run["way"]: run["hit_rate"] for run in figures["prefix"]}
    assert list(hits) == ["random pod (Service, iptables)", "activator, least in flight", "activator, prefix"]
    # at best about 0.69; random pods find 0.26 (seeded picks). Prefix routing measured 0.58 to 0.67 over repeated
    # runs, idle and with both cores busy: a request that overlaps another on its key's pod is sent elsewhere,
    # so the figure moves with timing, and the bound leaves room for that
    assert hits["activator, prefix"] > 0.5 > hits["activator, least in flight"]
    assert hits["activator, prefix"] > hits["random pod (Service, iptables)"] + 0.2
    assert "cached blocks" in capsys.readouterr().out


def test_a_missing_or_unreadable_trace_is_an_error_that_names_it(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "missing.csv"
    assert main(["--trace", str(missing)]) == 2
    assert capsys.readouterr().out == f"error: {missing}: no such file\n"
    trace, mooncake = tmp_path / "lengths.csv", tmp_path / "conversations.jsonl.gz"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:00.0,100,20\n")
    mooncake.write_bytes(b"not gzip")
    assert main(["--trace", str(trace), "--mooncake", str(mooncake)]) == 2
    assert capsys.readouterr().out.startswith(f"error: {mooncake}: not a readable Mooncake trace")
    with gzip.open(mooncake, "wt") as fh:
        fh.write(json.dumps({"timestamp": 0}) + "\n")
    assert main(["--trace", str(trace), "--mooncake", str(mooncake)]) == 2
    assert capsys.readouterr().out == (f"error: {mooncake}: not a Mooncake trace (requests with hash_ids and "
                                       "output_length)\n")
    trace.write_text("TIMESTAMP,ContextTokens\n2023-11-16 18:15:00.0,100\n")
    assert main(["--trace", str(trace)]) == 2
    assert capsys.readouterr().out.startswith(f"error: {trace}: not an Azure trace with whole GeneratedTokens")
