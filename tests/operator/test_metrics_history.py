"""`foresail history` against `FakePrometheus` (tests/reliability/fake_prometheus.py) answering a set range."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from foresail_operator.metrics import PrometheusSource
from tests.operator.advisory import KEY
from tests.reliability.fake_prometheus import FakePrometheus


def test_a_range_of_one_point_is_read() -> None:
    """The history is cut into windows of at most MAX_POINTS steps; where the span holds one step more than a
    multiple of them (``--span 10000m`` at 60 s) the last window is the newest step alone, which was left out."""
    now = float(round(time.time()))
    fake = FakePrometheus([KEY]).start()
    fake.body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {}, "values": [[now, "2.5"]]}]}}).encode()
    try:
        source = PrometheusSource(fake.url, timeout_s=2.0, window="2m")
        assert source.demand_history(KEY, "foresail", now, now, 60.0) == ([now], [2.5])
    finally:
        fake.stop()


def test_a_trace_that_cannot_be_written_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    """`foresail history` run as a user runs it, writing to a full disk (/dev/full): a clear error after the
    queries, where a traceback ended it."""
    now = float(round(time.time()))
    fake = FakePrometheus([KEY]).start()
    fake.body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {}, "values": [[now, "2.5"]]}]}}).encode()
    try:
        done = subprocess.run([sys.executable, "-m", "foresail", "history", f"{KEY[0]}/{KEY[1]}", "--prometheus",
                               fake.url, "--span", "1h", "-o", "/dev/full", "--no-progress"],
                              capture_output=True, text=True, timeout=120)
    finally:
        fake.stop()
    assert done.returncode == 1, done.stdout + done.stderr
    assert "error: cannot write --out /dev/full: No space left on device" in done.stdout, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
