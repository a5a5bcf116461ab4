"""Each benchmark refuses an output file it could not write, or no worker processes, before it runs, not with a
traceback after."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

OUTPUTS = [("activator", "--json"), ("backtest", "--out"), ("backtest", "--plot"), ("balance", "--json"),
           ("decision_loop", "--json"), ("forecaster", "--json"), ("inference", "--json"), ("operator", "--json"),
           ("prefix_cache", "--json"), ("prefix_routing", "--json"), ("scale_down", "--json"), ("schedules", "--out")]


@pytest.mark.parametrize("name, flag", OUTPUTS, ids=[f"{n}{f}" for n, f in OUTPUTS])
def test_an_output_in_a_missing_folder_is_refused_before_the_run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 name: str, flag: str) -> None:
    missing = tmp_path / "no-such-folder" / ("out.png" if flag == "--plot" else "out.json")
    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(f"bench.{name}").main([flag, str(missing)])
    assert exit_info.value.code == 2
    assert f"argument {flag}: {missing}: {missing.parent} is not a folder this user can write to" \
        in capsys.readouterr().err


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
