"""The backtest benchmark's summary of a large group, and re-printing a saved report."""

from __future__ import annotations

import io
import json
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from bench.backtest import (
    by_switch_on,
    equal_slo,
    hours_at_slo,
    load_groups,
    main,
    plot_customers,
    print_forecast,
    run_all,
    run_trace,
    spread,
    summarise_group,
    switch_on_share,
    within,
)
from foresail.backtest.traces import Trace


def _series(slos: list[float], costs: list[float]) -> list[dict]:
    return [{"trace": f"s{i}", "slo": a, "cost_vs_oracle": c} for i, (a, c) in enumerate(zip(slos, costs, strict=True))]


def test_spread_counts_series_at_each_attainment() -> None:
    line = spread(_series([1.0, 0.985, 0.96, 0.5, 0.995], [1.1, 1.2, 1.3, 1.4, 3.0]))
    assert ">= 99 %: 2, >= 98 %: 3, >= 95 %: 4, >= 90 %: 4" in line
    assert "median 98.50%" in line and "cost median x1.30" in line


def test_switch_on_share_is_the_demand_in_steps_at_least_twice_the_one_before() -> None:
    # Steps 1 (0 -> 4), 3 (1 -> 2) and 5 (0 -> 3) rise to at least twice the step before: 9 of 14.
    trace = Trace("t", 600.0, np.array([0.0, 4.0, 1.0, 2.0, 0.0, 3.0, 3.0, 1.0]))
    assert switch_on_share(trace) == pytest.approx(9 / 14)
    assert switch_on_share(Trace("flat", 600.0, np.full(5, 2.0))) == 0.0


def test_series_are_grouped_by_switch_on_share() -> None:
    line = by_switch_on(_series([0.995, 0.97, 0.96], [1.1, 1.2, 1.8]), {"s0": 0.005, "s1": 0.2, "s2": 0.5})
    assert "0-1 %: 1 series, 1 at 99 %, cost x1.100" in line
    assert "10-100 %: 2 series, 0 at 99 %, cost x1.470" in line
    assert "1-3 %" not in line


def test_hours_at_slo_interpolates_between_the_settings_around_it() -> None:
    grid = [(1.0, 20.0), (0.9, 10.0), (0.95, 12.0)]  # (SLO attainment, replica-hours) per knob setting
    assert hours_at_slo(grid, 0.97) == pytest.approx(12.0 + 0.4 * 8.0)
    assert hours_at_slo(grid, 0.95) == pytest.approx(12.0)
    assert hours_at_slo(grid, 0.5) == pytest.approx(10.0)  # the cheapest setting already reaches it
    assert hours_at_slo(grid, 1.01) is None


def test_equal_slo_compares_each_series_at_foresails_attainment() -> None:
    series = {"a": {"foresail": [0.97, 12.0], "grid": {"hpa": [(0.9, 10.0), (0.95, 12.0), (1.0, 20.0)]}},
              "b": {"foresail": [1.0, 5.0], "grid": {"hpa": [(0.9, 1.0), (0.99, 2.0)]}}}
    line = equal_slo(series, "hpa")
    assert "reaches Foresail's SLO on 1 of 2 series" in line
    assert "costs less on 1" in line and "geo-mean x0.789" in line


def test_a_group_reports_the_oracles_own_attainment_which_single_requests_can_miss() -> None:
    # an hour of 1-s steps with a 20-s burst of 30 requests/s every 10 minutes: the oracle holds each minute's
    # fluid need, which a burst within the minute queues past the SLO wait as single requests
    rng = np.random.default_rng(0)
    trace = Trace("bursty", 1.0, rng.poisson(np.where(np.arange(3600) % 600 < 20, 30.0, 1.0)).astype(float))
    fluid, single = (run_trace((trace, 120.0, False, None, queue)) for queue in ("fluid", "requests"))
    assert summarise_group([fluid])["policies"]["oracle"]["min_slo"] == fluid["oracle"][0] == 1.0
    assert summarise_group([single])["policies"]["oracle"]["min_slo"] == single["oracle"][0] < 1.0


def test_a_request_limit_leaves_out_the_larger_series_and_says_which(capsys: pytest.CaptureFixture[str]) -> None:
    small, large = Trace("small", 60.0, np.full(10, 5.0)), Trace("large", 60.0, np.full(10, 50.0))
    groups = {"a": [small, large], "b": [large]}
    assert within(groups, None) is groups
    assert within(groups, 100) == {"a": [small]}
    assert "left out (more than 100 requests): large\n" in capsys.readouterr().out


def test_a_saved_report_is_printed_again(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    per_trace = _series([0.999] * 9 + [0.9], [1.2] * 10)
    figures = {"setting": None, "min_slo": 0.9, "mean_slo": 0.99, "at_99_where_reachable": 9,
               "geomean_cost_vs_oracle": 1.2, "per_trace": per_trace}
    grid = [(0.98, 8.0), (1.0, 10.0)]
    group = {"traces": 10, "reachable_99": 10,
             "policies": {n: figures for n in ("foresail", "hpa", "kpa", "apa", "holt-winters", "static", "oracle")},
             "series": {"s0": {"foresail": [0.999, 6.0],
                               "grid": {n: grid for n in ("hpa", "kpa", "apa", "holt-winters", "static")}}}}
    report = {"cold_starts": {"300": {"customers": group}}, "switch_on_share": {"s9": 0.5},
              "timing_14_day": {"trace": "t", "steps": 20160, "seconds": 9.5, "per_policy_s": {"foresail": 9.0}}}
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps(report))
    assert main(["--report", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "-- customers: 10 traces, 99 % reachable on 10" in out
    assert ">= 99 %: 9, >= 98 %: 9, >= 95 %: 9, >= 90 %: 10" in out
    assert "foresail by switch-on share: 10-100 %: 1 series, 0 at 99 %" in out
    assert "kpa: reaches Foresail's SLO on 1 of 1 series; there Foresail costs less on 1" in out
    assert "20160 steps" in out and "Single requests" not in out
    saved.write_text(json.dumps({**report, "queue": "requests"}))
    assert main(["--report", str(saved)]) == 0
    assert "Single requests over 8 batching slots per replica" in capsys.readouterr().out
    saved.write_text(json.dumps({**report, "queue": "requests", "slots": 4, "slo_wait_s": 2.5}))
    assert main(["--report", str(saved)]) == 0
    assert "over 4 batching slots per replica (--queue requests): SLO attainment is the share of requests that " \
           "start within 2.5 s" in capsys.readouterr().out


def test_customer_series_without_demand_are_left_out(tmp_path: Path) -> None:
    # ServeGen's m-mid/chunk-97 reports zero in every window: the simulator cannot size a replica for it.
    rows = {1: "0,1.0,1.0,Gamma,1,1\n600,2.0,1.0,Gamma,1,1\n", 2: "0,0,0,,0,0\n600,0,0,,0,0\n",
            3: "0,0.5,1.0,Gamma,1,1\n600,0.5,1.0,Gamma,1,1\n"}
    (tmp_path / "servegen").mkdir()
    with tarfile.open(tmp_path / "servegen" / "servegen-clients.tar.gz", "w:gz") as tar:
        for chunk, text in rows.items():
            info = tarfile.TarInfo(f"data/language/m-mid/chunk-{chunk}-trace.csv")
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    assert [t.name for t in load_groups(tmp_path, 0)["servegen-customers"]] == ["m-mid/chunk-1", "m-mid/chunk-3"]
    assert [t.name for t in load_groups(tmp_path, 1)["servegen-customers"]] == ["m-mid/chunk-1"]


def test_the_customer_plot_is_drawn_and_needs_a_customer_group(tmp_path: Path) -> None:
    figures = {"setting": 0.5, "per_trace": _series([0.99, 0.9], [1.2, 3.0])}
    series = {f"s{i}": {"foresail": [0.95, 10.0], "grid": {n: [(0.9, 5.0), (1.0, 20.0)] for n in
                                                             ("hpa", "kpa", "apa", "holt-winters", "static")}}
              for i in range(2)}
    group = {"traces": 2, "policies": {n: figures for n in ("foresail", "hpa", "static")}, "series": series}
    report = {"cold_starts": {"120": {"servegen-customers": group}}, "switch_on_share": {"s0": 0.0, "s1": 0.2}}
    out = tmp_path / "customers.png"
    plot_customers(report, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no ServeGen customer group"):
        plot_customers({"cold_starts": {"120": {"azure": group}}}, out)


def _slow_square(x: int) -> int:
    time.sleep(0.05 * (3 - x))  # the first job ends last
    if x < 0:
        raise ValueError(f"bad job {x}")
    return x * x


def test_run_all_keeps_the_order_of_the_work_whatever_order_jobs_end_in(capsys: pytest.CaptureFixture) -> None:
    with ThreadPoolExecutor(3) as pool:
        assert run_all(pool, _slow_square, [0, 1, 2], "jobs") == [0, 1, 4]
    assert "jobs: 100%" in capsys.readouterr().err  # the bar reached the end


def test_run_all_raises_a_failed_jobs_error() -> None:
    with ThreadPoolExecutor(2) as pool, pytest.raises(ValueError, match="bad job -1"):
        run_all(pool, _slow_square, [1, -1], "jobs")


def test_the_forecast_ratio_pairs_each_series_wapes_and_leaves_out_a_series_with_either_unknown(capsys) -> None:
    nan = float("nan")
    scores = [(nan, 0.1), (0.2, nan), (0.3, 0.6)]  # only the third series has both WAPEs
    print_forecast([{"name": f"m-large/chunk-{i}", "scores": [{"h": 600, "foresail": f, "persistence": p,
                                                                "cov90": 0.9}]}
                    for i, (f, p) in enumerate(scores)])
    out = capsys.readouterr().out
    assert "n=  3  WAPE foresail  30.0% vs persistence  60.0% (median over series; ratio 0.50)" in out


@pytest.mark.parametrize("text", [None, "nope", '{"traces": {}}', "[1, 2]"],
                         ids=["missing", "not-json", "foresail-backtest-json", "a-list"])
def test_a_report_that_is_missing_or_not_one_is_an_error_not_a_traceback(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                                        text: str | None) -> None:
    saved = tmp_path / "report.json"
    if text is not None:
        saved.write_text(text)
    assert main(["--report", str(saved)]) == 2  # was FileNotFoundError, JSONDecodeError, KeyError, TypeError
    why = "No such file or directory" if text is None else "not a report of this benchmark (its --out file)"
    assert f"error: --report {saved}: {why}" in capsys.readouterr().out


def _small_traces(root: Path) -> Path:
    """A traces folder of one ServeGen customer (about 540,000 requests over 33 hours) and one service aggregate
    (about 360,000), and no Azure or Mooncake trace."""
    (root / "servegen").mkdir(parents=True)
    text = "".join(f"{600 * i},{1 + i % 7}.5,1.0,Gamma,0.1,0.2\n" for i in range(200)).encode()
    with tarfile.open(root / "servegen" / "servegen-clients.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("data/language/svc/chunk-1-trace.csv")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    (root / "servegen" / "servegen-x-10min.csv").write_text(
        "t_start_s,rate_rps\n" + "".join(f"{600 * i},{1 + i % 5}.0\n" for i in range(200)))
    return root


def test_a_request_limit_with_a_group_left_empty_still_writes_the_report(tmp_path: Path) -> None:
    """With --max-requests (or --queue requests, its 2-million default) the groups left empty were left out of
    the groups, and the forecasts, after every backtest had run, stopped on KeyError 'azure': no report."""
    out = tmp_path / "report.json"
    assert main(["--traces", str(_small_traces(tmp_path / "traces")), "--out", str(out), "--workers", "1",
                 "--cold-starts", "120,120.5", "--max-requests", "10000000"]) == 0
    report = json.loads(out.read_text())
    assert list(report["cold_starts"]) == ["120", "120.5"]  # 120.5 s was saved as "120", over the 120 s figures
    assert sorted(report["cold_starts"]["120"]) == ["servegen-aggregates", "servegen-customers"]
    assert sorted(f["name"] for f in report["forecast"]) == ["servegen-x", "svc/chunk-1"]


@pytest.mark.parametrize("limit, flags, why", [("450000", ["--plot", "p.png"], "no ServeGen customer series to --plot"),
                                               ("1000", [], "no series to run")])
def test_a_request_limit_that_leaves_nothing_to_run_or_plot_is_an_error_before_the_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], limit: str, flags: list[str], why: str) -> None:
    """Was a KeyError traceback (switch_on_share of the customers left out)."""
    out = tmp_path / "report.json"
    assert main(["--traces", str(_small_traces(tmp_path / "traces")), "--out", str(out), "--max-requests", limit,
                 *flags]) == 2
    assert capsys.readouterr().out.endswith(f"\nerror: {why}\n") and not out.exists()


def test_a_saved_report_without_customer_series_is_no_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "report.json"
    saved.write_text(json.dumps({"cold_starts": {"120": {}},
                                 "timing_14_day": {"trace": "t", "steps": 1, "seconds": 1.0, "per_policy_s": {}}}))
    assert main(["--report", str(saved), "--plot", str(tmp_path / "p.png")]) == 2  # was the ValueError's traceback
    assert capsys.readouterr().out.endswith(f"error: --plot {tmp_path / 'p.png'}: the report has no ServeGen "
                                            "customer group to plot\n")
