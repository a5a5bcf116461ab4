"""Each benchmark refuses an output file it could not write, or no worker processes, before it runs, not with a
traceback after."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

OUTPUTS = [("activator", "--json"), ("backtest", "--out"), ("backtest", "--plot"), ("balance", "--json"),
           ("decision_loop", "--json"), ("forecaster", "--json"), ("inference", "--json"), ("operator", "--json"),
           ("prefix_cache", "--json"), ("prefix_routing", "--json"), ("scale_down", "--json"), ("schedules", "--out"),
           ("train_prior", "--out")]


@pytest.mark.parametrize("name, flag", OUTPUTS, ids=[f"{n}{f}" for n, f in OUTPUTS])
def test_an_output_in_a_missing_folder_is_refused_before_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 name: str, flag: str) -> None:
    missing = tmp_path / "no-such-folder" / ("out.png" if flag == "--plot" else "out.json")
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(f"bench.{name}").main([flag, str(missing)])
    assert exit_info.value.code == 2
    assert f"argument {flag}: {missing}: {missing.parent} is not a folder this user can write to" \
        in capsys.readouterr().err


def test_the_backtest_s_default_output_is_checked_before_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A default given as a Path was never checked: bench.backtest ran its traces, then failed writing its report
    (IsADirectoryError), and the report was lost."""
    from bench.backtest import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "bench-backtest.json").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["--traces", str(tmp_path / "no-traces")])
    assert exit_info.value.code == 2
    assert "argument --out: bench-backtest.json is a folder, not a file" in capsys.readouterr().err


def test_the_prior_s_default_output_is_checked_before_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """bench.train_prior read every trace, then wrote where --out (default: the shipped prior) said, unchecked."""
    import bench.train_prior

    missing = tmp_path / "no-such-folder" / "prior.json"
    monkeypatch.setattr(bench.train_prior, "PRIOR_PATH", missing)
    with pytest.raises(SystemExit) as exit_info:
        bench.train_prior.main(["--traces", str(tmp_path / "no-traces")])
    assert exit_info.value.code == 2
    assert f"argument --out: {missing}: {missing.parent} is not a folder" in capsys.readouterr().err


def test_the_forecaster_benchmark_checks_its_json_before_the_trace(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """Its run took minutes and then failed writing the figures (FileNotFoundError), which were lost."""
    from bench.forecaster import main

    short = tmp_path / "short.csv"
    short.write_text("time_s,arrivals\n0,1\n60,2\n")
    with pytest.raises(SystemExit):
        main(["--trace", str(short), "--json", str(tmp_path / "missing" / "f.json")])
    assert "argument --json:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--trace", str(short), "--json", str(tmp_path)])
    assert f"argument --json: {tmp_path} is a folder, not a file" in capsys.readouterr().err
    assert main(["--trace", str(short), "--json", str(tmp_path / "f.json")]) == 2  # a writable one: the trace's error
    assert "the benchmark needs more than 3 days" in capsys.readouterr().out


def test_a_plot_name_matplotlib_cannot_write_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.backtest import main

    with pytest.raises(SystemExit):
        main(["--plot", str(tmp_path / "p.txt")])
    assert "argument --plot: " in capsys.readouterr().err


@pytest.mark.parametrize("name", ["backtest", "one_day", "schedules"])
@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_no_worker_processes_is_refused_before_the_run(capsys: pytest.CaptureFixture[str], name: str,
                                                       value: str) -> None:
    """--workers 0 was a ValueError traceback from the process pool once the traces were loaded."""
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(f"bench.{name}").main(["--workers", value])
    assert exit_info.value.code == 2
    assert f"argument --workers: a number of processes, at least 1, not '{value}'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["backtest", "one_day", "policy_trials", "schedules"])
@pytest.mark.parametrize("value", ["two", "nan", "-5", "120,,300", "inf"])
def test_cold_starts_that_are_no_seconds_are_refused_before_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                    name: str, value: str) -> None:
    """Were a ValueError traceback once the traces were loaded, or (a negative one) a run at 0 s named -5 s."""
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(f"bench.{name}").main(["--traces", str(tmp_path), "--cold-starts", value])
    assert exit_info.value.code == 2
    assert f"argument --cold-starts: seconds, comma-separated, each a number >= 0, not '{value}'" \
        in capsys.readouterr().err


@pytest.mark.parametrize("value", ["two", "nan", "-5", "inf"])
def test_scale_to_zero_refuses_a_cold_start_that_is_no_seconds(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              value: str) -> None:
    """Was a traceback deep in the simulation (nan), or a run at a negative cold start."""
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module("bench.scale_to_zero").main(["--traces", str(tmp_path), "--cold-start", value])
    assert exit_info.value.code == 2
    assert f"argument --cold-start: seconds, a number >= 0, not '{value}'" in capsys.readouterr().err


def test_a_cold_start_given_twice_runs_once() -> None:
    from bench.table import cold_starts

    assert cold_starts("300,120,300") == (300.0, 120.0)
    assert cold_starts("0") == (0.0,)


def test_the_backtest_s_default_output_is_not_needed_to_print_a_saved_report(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.backtest import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "bench-backtest.json").mkdir()
    assert main(["--report", str(tmp_path / "saved.json")]) == 2  # no such report, and nothing refused before
    assert capsys.readouterr().out.startswith(f"error: --report {tmp_path / 'saved.json'}: No such file")
