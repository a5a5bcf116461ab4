"""`foresail demo` says what is wrong with its flags, before or as the local stack starts, without a traceback."""

import os
import subprocess
import sys
import time

import pytest

from foresail.cli import main


@pytest.mark.parametrize("flags, message", [
    (["--minutes", "0"], "--minutes must be at least 1"),
    (["--step", "0"], "must be positive numbers"),
    (["--peak-rps", "-1"], "must be positive numbers"),
    (["--capacity", "inf"], "must be positive numbers"),
    (["--cold-start", "-1"], "--cold-start must be a number of seconds >= 0"),
    (["--max-replicas", "0"], "--max-replicas must be at least 1"),
])
def test_bad_flags_are_refused_before_anything_starts(tmp_path, capsys, flags, message):
    assert main(["demo", "--out", str(tmp_path / "out"), *flags]) == 2
    assert message in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


def test_a_trace_without_requests_and_an_unmakeable_out_folder_are_errors(tmp_path, capsys):
    quiet = tmp_path / "quiet.csv"
    quiet.write_text("time_s,arrivals\n0,0\n60,0\n120,0\n")
    assert main(["demo", "--trace", str(quiet), "--out", str(tmp_path / "out")]) == 2
    assert "has no requests in its first 45 minutes" in capsys.readouterr().out
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["demo", "--out", str(blocker / "out")]) == 2
    assert "cannot make --out" in capsys.readouterr().out


def test_flags_the_crd_schema_refuses_get_the_api_servers_message(tmp_path, capsys):
    assert main(["demo", "--max-replicas", "5000", "--out", str(tmp_path / "out")]) == 2
    out = capsys.readouterr().out
    assert "the API server rejects" in out and "spec.maxReplicas" in out and "less than or equal to 1000" in out


def test_missing_crds_are_one_line_before_anything_starts(tmp_path, capsys, monkeypatch):
    from foresail.demo import stack

    monkeypatch.setattr(stack, "CRDS", tmp_path / "no-crds")
    started = time.monotonic()
    assert main(["demo", "--minutes", "1", "--out", str(tmp_path / "out")]) == 2
    out = capsys.readouterr().out
    assert f"error: cannot find the CRD llmdeployment.yaml in {tmp_path / 'no-crds'}: reinstall foresail\n" in out, out
    assert time.monotonic() - started < 10 and not (tmp_path / "out" / "apiserver").exists()


def test_piped_progress_comes_as_it_happens(tmp_path):
    """Piped (`| tee`, block-buffered), "Starting ..." comes as the stack starts, not with the last lines."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    command = [sys.executable, "-m", "foresail", "demo", "--max-replicas", "5000", "--out", str(tmp_path / "out")]
    demo = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        first = [demo.stdout.readline(), demo.stdout.readline()]
        # the logs are copied to --out as the demo ends: without the flush, the lines came after that
        copied = (tmp_path / "out" / "apiserver").exists()
        rest, _ = demo.communicate(timeout=120)
    finally:
        demo.kill()
    assert first[1].startswith("Starting the Kubernetes API test server") and not copied, first
    assert demo.returncode == 2 and "the API server rejects" in rest, rest
