"""The scale-down benchmark's accounting on a hand-made fleet, and a small run of the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench.scale_down import Fleet, evaluate, fewest_in_flight, from_prometheus, hindsight, kubernetes_order, main

# pod 2, the last to become ready, holds two long requests; pod 1 one short one; pod 0 none
FLEET = Fleet(starts=np.array([0.0, 0.0, 0.0]), ends=np.array([100.0, 50.0, 10.0]), pod=np.array([2, 2, 1]), pods=3)
AT = np.array([5.0])


def test_kubernetes_removes_the_newest_and_foresail_the_idlest():
    assert kubernetes_order(FLEET, 5.0) == [2, 1, 0]
    assert fewest_in_flight(FLEET, 5.0) == [0, 1, 2]
    assert hindsight(FLEET, 5.0) == [0, 1, 2]
    assert from_prometheus(1e-6)(FLEET, 5.0) == [0, 1, 2]  # a scrape a microsecond old is the moment's count
    assert fewest_in_flight(FLEET, 60.0) == [1, 0, 2]  # all but one request over: ties keep Kubernetes' order


def test_held_requests_drains_and_cuts_are_counted_as_defined():
    # Kubernetes removes pods 2 and 1: 3 requests, the last ends 95 s later (cut at 20 s: 2 of them)
    assert evaluate(FLEET, kubernetes_order, 2, AT, drain_s=20.0) == {
        "held": 3.0, "drain_s": 20.0, "cut": 2, "all_idle": 0.0}
    assert evaluate(FLEET, kubernetes_order, 2, AT, drain_s=110.0)["drain_s"] == 95.0
    # Foresail removes pods 0 and 1: 1 request, over 5 s later
    assert evaluate(FLEET, fewest_in_flight, 2, AT, drain_s=20.0) == {
        "held": 1.0, "drain_s": 5.0, "cut": 0, "all_idle": 0.0}
    assert evaluate(FLEET, fewest_in_flight, 1, AT, drain_s=20.0)["all_idle"] == 1.0


def test_a_small_run_reports_every_way(tmp_path: Path, capsys) -> None:
    trace = tmp_path / "conv.csv"
    rng = np.random.default_rng(1)
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
        f"2023-11-16 18:{i // 60:02d}:{i % 60:02d}.0,100,{n}\n" for i, n in enumerate(rng.integers(50, 800, 1200))))
    out = tmp_path / "scale-down.json"
    assert main(["--trace", str(trace), "--every", "30", "--warmup", "60", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    for routing in ("random pod (Service)", "least in flight (activator)"):
        runs = {run["way"]: run for run in figures[routing]}
        assert list(runs) == ["Kubernetes' order (newest ready)", "Foresail (the pods' /metrics)",
                              "counts from Prometheus (15-s scrape)", "hindsight (first to finish)"]
        assert runs["Foresail (the pods' /metrics)"]["held"] <= runs["Kubernetes' order (newest ready)"]["held"]
        assert runs["hindsight (first to finish)"]["drain_s"] <= min(r["drain_s"] for r in runs.values())
    assert figures["scale_downs"] == 38
    assert "requests held" in capsys.readouterr().out


def test_a_missing_or_unreadable_trace_is_an_error_that_names_it(tmp_path: Path, capsys) -> None:
    assert main(["--trace", str(tmp_path / "missing.csv")]) == 2
    assert capsys.readouterr().out == f"error: {tmp_path / 'missing.csv'}: no such file\n"
    trace = tmp_path / "other.csv"
    trace.write_text("time_s,arrivals\n0,1\n")
    assert main(["--trace", str(trace)]) == 2
    assert capsys.readouterr().out.startswith(f"error: {trace}: not an Azure trace with TIMESTAMP and GeneratedTokens")
