"""Every benchmark that reads the traces: a missing or unreadable archive is an error that names it (exit 2, not
a traceback), and the default traces folder is shared/traces beside the repository from any working directory."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from foresail.backtest.traces import TraceError

BESIDE = Path(__file__).resolve().parents[3] / "shared" / "traces"  # tests/bench/ -> the repository's parent
ARCHIVE_READERS = ["backtest", "one_day", "policy_trials", "predictability", "scale_to_zero", "schedules",
                   "train_prior"]


@pytest.mark.parametrize("name", ARCHIVE_READERS)
def test_a_missing_archive_is_an_error_that_names_it(name: str, tmp_path: Path, capsys) -> None:
    assert importlib.import_module(f"bench.{name}").main(["--traces", str(tmp_path)]) == 2
    assert capsys.readouterr().out == f"error: {tmp_path / 'servegen' / 'servegen-clients.tar.gz'}: no such file\n"


@pytest.mark.parametrize("name", ARCHIVE_READERS)
def test_an_unreadable_archive_is_an_error_that_says_why(name: str, tmp_path: Path, capsys) -> None:
    archive = tmp_path / "servegen" / "servegen-clients.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(b"not a gzip file")
    assert importlib.import_module(f"bench.{name}").main(["--traces", str(tmp_path)]) == 2
    assert capsys.readouterr().out.startswith(f"error: {archive}: cannot read the archive")


@pytest.mark.parametrize("name, reader, path", [
    ("backtest", "bench.backtest.iter_servegen_clients", "servegen/servegen-clients.tar.gz"),
    ("one_day", "bench.one_day.iter_servegen_clients", "servegen/servegen-clients.tar.gz"),
    ("policy_trials", "bench.backtest.iter_servegen_clients", "servegen/servegen-clients.tar.gz"),
    ("predictability", "bench.predictability.iter_servegen_clients", "servegen/servegen-clients.tar.gz"),
    ("scale_to_zero", "bench.scale_to_zero.iter_servegen_clients", "servegen/servegen-clients.tar.gz"),
    ("schedules", "bench.schedules.iter_servegen_clients", "servegen/servegen-clients.tar.gz"),
    ("train_prior", "bench.train_prior.iter_servegen_clients", "servegen/servegen-clients.tar.gz"),
    ("forecaster", "bench.forecaster.load_trace", "servegen/servegen-m-large-10min.csv"),
])
def test_the_default_traces_are_beside_the_repository_from_any_directory(name: str, reader: str, path: str,
                                                                          tmp_path: Path, monkeypatch, capsys) -> None:
    def unread(where: Path, *_: object) -> None:
        raise TraceError(f"{where}: not read here")

    monkeypatch.setattr(reader, unread)
    monkeypatch.chdir(tmp_path)
    assert importlib.import_module(f"bench.{name}").main([]) == 2
    assert capsys.readouterr().out == f"error: {BESIDE / path}: not read here\n"
