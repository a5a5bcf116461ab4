"""A Prometheus header value that requests cannot send (a line break, a character beyond ASCII) is refused where it
is given: at the operator's start (FORESAIL_PROMETHEUS_HEADERS) and before `foresail history` queries. It was
taken, and then every query failed with requests' error (the operator never read metrics)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from foresail_operator.config import OperatorConfig
from tests.operator.advisory import KEY
from tests.reliability.fake_prometheus import FakePrometheus

BAD = ["X-Scope-OrgID=t\u20acam", "X-Scope-OrgID=team\nX-Other: 1"]


@pytest.mark.parametrize("header", BAD, ids=["euro-sign", "line-break"])
def test_a_header_value_requests_cannot_send_is_refused_before_any_query(header: str, tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORESAIL_PROMETHEUS_HEADERS", header)
    with pytest.raises(ValueError, match="FORESAIL_PROMETHEUS_HEADERS: .* a header value is printable ASCII"):
        OperatorConfig.from_env()
    monkeypatch.delenv("FORESAIL_PROMETHEUS_HEADERS")
    fake = FakePrometheus([KEY]).start()
    try:
        done = subprocess.run([sys.executable, "-m", "foresail", "history", f"{KEY[0]}/{KEY[1]}", "--prometheus",
                               fake.url, "--header", header, "-o", str(tmp_path / "x.csv"), "--no-progress"],
                              capture_output=True, text=True, timeout=120)
    finally:
        fake.stop()
    assert done.returncode == 1 and "a header value is printable ASCII" in done.stdout, done.stdout + done.stderr
    assert fake.queries == []
