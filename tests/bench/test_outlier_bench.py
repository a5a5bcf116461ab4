"""The outlier benchmark replays the spike and measures the forecaster's median after one."""

from __future__ import annotations

from bench.outlier import arrivals, main, medians, replay


def test_the_spike_costs_replicas_and_bends_the_median(capsys) -> None:
    a = arrivals(4)
    clean, spiked = replay(a, 100.0)
    assert clean["slo"] == "100.00 %" and float(spiked["hours"]) > float(clean["hours"])
    assert spiked["after"] > 10 * clean["after"]  # burst memory holds the spike's peak
    rows = {r["outlier"]: [float(v) for v in r["median"].split(" / ")] for r in medians(a)}
    assert rows["x100, 30 min before"][2] < 0.8 * rows["none"][2]  # read as a burst that has ended
    assert main(["--days", "3", "--spike", "10"]) == 0 and "one minute x10" in capsys.readouterr().out
