"""`python -m bench`: its usage, and a name that is no benchmark, without running any benchmark."""

from __future__ import annotations

import pytest

from bench.__main__ import SUITES, main


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_the_usage_and_every_benchmark(capsys: pytest.CaptureFixture[str], flag: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([flag])  # was "unknown benchmark(s): --help", exit status 2
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.startswith("usage: python -m bench [-h] [NAME ...]") and "python -m bench.NAME --help" in out
    assert all(name in out for name in SUITES)


def test_an_unknown_name_is_an_error_on_stderr_before_any_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["operator", "nosuch"])
    captured = capsys.readouterr()
    assert exit_info.value.code == 2 and captured.out == ""
    assert "error: unknown benchmark(s): nosuch; choose from operator, decision_loop" in captured.err
