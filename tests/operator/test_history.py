"""`foresail history`: an LLMDeployment's demand read back from a real Prometheus into a trace that
`foresail backtest` replays; the CLI run as a user runs it, in its own process."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Counter

from foresail.backtest.traces import load_generic
from foresail.demo.prometheus import PrometheusServer, free_port
from foresail_operator.activation import ARRIVALS_METRIC
from foresail_operator.history_cli import span_seconds, windows
from foresail_operator.metrics import PrometheusSource
from tests.helpers import wait_for
from tests.operator.exporters import counting, serve


def foresail(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "foresail", *args], capture_output=True, text=True, timeout=120)


def test_windows_cover_the_span_once_within_the_point_limit():
    parts = list(windows(0.0, 99.0, 1.0, max_points=30))
    points = [t for lo, hi in parts for t in np.arange(lo, hi + 1.0, 1.0)]
    assert points == list(np.arange(0.0, 100.0, 1.0))
    assert max(round(hi - lo) + 1 for lo, hi in parts) == 30
    assert list(windows(0.0, 0.0, 60.0)) == [(0.0, 0.0)]


@pytest.mark.parametrize("flags, message", [(["--step", "1.5"], "--step must be a whole number of seconds"),
                                            (["--step", "inf"], "--step must be a whole number of seconds"),
                                            (["--step", "0"], "--step must be a whole number of seconds"),
                                            (["--window", "2 minutes"], "--window must be a positive duration"),
                                            (["--timeout", "0"], "--timeout must be a number of seconds above 0"),
                                            (["--timeout", "nan"], "--timeout must be a number of seconds above 0")])
def test_a_step_that_is_not_whole_seconds_and_a_bad_window_are_refused(tmp_path: Path, flags: list[str], message: str):
    """Prometheus steps in whole seconds: 1.5 was queried at 1 s and counted at 1.5 (a third too many requests);
    inf asked for nothing and said there was no demand."""
    bad = foresail("history", "a/b", "--prometheus", "http://127.0.0.1:9", "-o", str(tmp_path / "x.csv"), *flags)
    assert bad.returncode == 1 and message in bad.stdout, bad.stdout + bad.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs Debian's prometheus (make install)")
def test_rows_longer_than_the_rate_window_count_their_whole_step(tmp_path: Path):
    """600 requests in minutes 20 to 30 of every hour, backfilled with promtool: at --step 3600 each row holds
    its hour's 600, where the default 2-minute window at the row's end saw none of them (0 in all)."""
    hour = int(time.time() // 3600) * 3600
    lines, count = ["# TYPE vllm:request_success counter"], 0.0
    for t in range(hour - 5 * 3600, int(time.time()) - 60, 15):
        count += 15.0 if 20 <= (t % 3600) // 60 < 30 else 0.0
        lines.append(f'vllm:request_success_total{{namespace="team-a",llmdeployment="chat"}} {count} {t}')
    (tmp_path / "data.om").write_text("\n".join([*lines, "# EOF"]) + "\n")
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(tmp_path / "data.om"),
                    str(tmp_path / "tsdb")], check=True, capture_output=True, timeout=120)
    out = tmp_path / "hours.csv"
    with PrometheusServer(tmp_path) as prometheus:
        done = foresail("history", "team-a/chat", "--prometheus", prometheus.url, "--span", "3h", "--step", "3600",
                        "--runtime", "vllm", "-o", str(out), "--no-progress")
    assert done.returncode == 0, done.stdout + done.stderr
    trace = load_generic(out)
    assert len(trace.arrivals) == 4 and trace.arrivals == pytest.approx(600.0, rel=0.02)


def test_a_prometheus_that_never_answers_fails_after_one_timeout_naming_it(tmp_path: Path):
    """A server that takes the connection and says nothing: each query was sent four times, 60 s each, about 4
    minutes without a word; now one wait of --timeout, and the error names the server, what timed out and the
    flag."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        silent.settimeout(60)  # bounded, should the command hang
        held: list[socket.socket] = []

        def accept() -> None:
            with contextlib.suppress(OSError):
                while True:
                    held.append(silent.accept()[0])

        threading.Thread(target=accept, daemon=True).start()
        port = silent.getsockname()[1]
        done = foresail("history", "a/b", "--prometheus", f"http://127.0.0.1:{port}", "--timeout", "1",
                        "-o", str(tmp_path / "x.csv"), "--no-progress")
        connections = len(held)
        for conn in held:
            conn.close()
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"port={port}): Read timed out. (read timeout=1.0)" in done.stdout, done.stdout
    assert "no answer in time" in done.stdout and "(--timeout 1 s; raise it for a slow Prometheus)" in done.stdout
    assert connections == 1  # the query was not sent again
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs Debian's prometheus (make install)")
def test_a_window_of_one_scrape_is_named_where_it_reads_no_demand(tmp_path: Path):
    """A counter scraped every minute, backfilled with promtool: a 1-minute --window holds one scrape, so rate()
    reads nothing, and the error said to check the names and --runtime only."""
    now = int(time.time())
    lines = ["# TYPE vllm:request_success counter"]
    lines += [f'vllm:request_success_total{{namespace="team-a",llmdeployment="chat"}} {240.0 * i} {t}'
              for i, t in enumerate(range(now - 2 * 3600 + 59, now, 60))]
    (tmp_path / "data.om").write_text("\n".join([*lines, "# EOF"]) + "\n")
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(tmp_path / "data.om"),
                    str(tmp_path / "tsdb")], check=True, capture_output=True, timeout=120)
    with PrometheusServer(tmp_path) as prometheus:
        done = foresail("history", "team-a/chat", "--prometheus", prometheus.url, "--span", "1h", "--window", "1m",
                        "-o", str(tmp_path / "x.csv"), "--no-progress")
    assert done.returncode == 1 and "no demand for team-a/chat" in done.stdout, done.stdout + done.stderr
    assert "and that --window, 60s, spans two scrape intervals" in done.stdout


def test_spans_read_as_durations_and_nonsense_is_refused():
    assert [span_seconds(s) for s in ("14d", "12h", "30m", "45s", "1.5h")] == [14 * 86400, 43200, 1800, 45, 5400]
    for bad in ("7", "week", "-1d", "0h", ""):
        with pytest.raises(ValueError, match="--span"):
            span_seconds(bad)


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus (make install)")
def test_the_history_of_a_deployment_replays_in_the_backtester(tmp_path: Path):
    """A vLLM-named pod completes 4 req/s of 100 prompt and 25 generated tokens each: the trace holds 4
    requests, 400 and 100 tokens per 1-s step, and the backtester replays it as the command says, in requests.
    A deployment only the activator counts (3 req/s) has no token columns: they were all 0, the unit the
    backtester replays by default where a trace has tokens (a crash). A deployment Prometheus has never seen,
    and a Prometheus that is not there, are clear errors."""
    registry, door = CollectorRegistry(), CollectorRegistry()
    arrivals = Counter(ARRIVALS_METRIC.removesuffix("_total"), "arrivals", ["namespace", "llmdeployment"],
                       registry=door)
    counters = [(Counter("vllm:request_success", "requests", registry=registry), 4.0),
                (Counter("vllm:prompt_tokens", "prompt tokens", registry=registry), 400.0),
                (Counter("vllm:generation_tokens", "generated tokens", registry=registry), 100.0),
                (arrivals.labels("team-b", "idle"), 3.0)]
    server, activator = serve(registry), serve(door)
    try:
        with counting(counters), PrometheusServer(tmp_path) as prometheus:
            prometheus.write_targets([(f"127.0.0.1:{server.server_address[1]}",
                                       {"namespace": "team-a", "llmdeployment": "chat"})])
            prometheus.scrape_activator(f"127.0.0.1:{activator.server_address[1]}")
            source = PrometheusSource(prometheus.url, window="5s")
            wait_for(lambda: len(source.rate_history(("team-a", "chat"), "vllm", "requests", time.time() - 60,
                                                     time.time(), 1.0)) >= 15, timeout=60, what="15 s of history")
            out = tmp_path / "chat.csv"
            done = foresail("history", "team-a/chat", "--prometheus", prometheus.url, "--span", "60s", "--step", "1",
                            "--window", "5s", "-o", str(out), "--no-progress")
            assert done.returncode == 0, done.stdout + done.stderr
            assert "wrote" in done.stdout and "--capacity REQ_PER_S --unit requests" in done.stdout
            trace = load_generic(out)
            assert trace.step_s == 1.0 and abs(trace.start_s - time.time()) < 120  # Unix seconds
            settled = trace.arrivals[-10:]
            assert np.median(settled) == pytest.approx(4.0, rel=0.2)
            assert trace.tokens is not None and np.median(trace.tokens[-10:]) == pytest.approx(500.0, rel=0.2)
            header = out.read_text().splitlines()[0]
            assert header == "time_s,arrivals,input_tokens,output_tokens"
            replay = foresail("backtest", "--trace", str(out), "--interval", "1", "--cold-start", "5",
                              "--capacity", "2", "--unit", "requests", "--no-progress")
            assert replay.returncode == 0, replay.stdout + replay.stderr
            assert "foresail" in replay.stdout and "oracle" in replay.stdout

            idle = tmp_path / "idle.csv"
            done = foresail("history", "team-b/idle", "--prometheus", prometheus.url, "--span", "60s", "--step", "1",
                            "--window", "5s", "-o", str(idle), "--no-progress")
            assert done.returncode == 0 and "--unit" not in done.stdout, done.stdout + done.stderr
            assert idle.read_text().splitlines()[0] == "time_s,arrivals"
            assert np.median(load_generic(idle).arrivals[-10:]) == pytest.approx(3.0, rel=0.2)
            replay = foresail("backtest", "--trace", str(idle), "--interval", "1", "--cold-start", "5",
                              "--capacity", "2", "--no-progress")
            assert replay.returncode == 0 and "oracle" in replay.stdout, replay.stdout + replay.stderr

            unknown = foresail("history", "team-a/nobody", "--prometheus", prometheus.url, "--span", "60s",
                               "--step", "1", "--window", "5s", "-o", str(tmp_path / "none.csv"))
            assert unknown.returncode == 1 and "no demand for team-a/nobody" in unknown.stdout
            assert not (tmp_path / "none.csv").exists()
    finally:
        for exporter in (server, activator):
            exporter.shutdown()
            exporter.server_close()
    gone = foresail("history", "team-a/chat", "--prometheus", f"http://127.0.0.1:{free_port()}", "-o",
                    str(tmp_path / "x.csv"))
    assert gone.returncode == 1 and gone.stdout.startswith("error: Prometheus") and "Traceback" not in gone.stderr
    assert "Connection refused" in gone.stdout and "timeout" not in gone.stdout  # refused, not timed out
    for args, message in ((["chat"], "NAMESPACE/NAME"), (["a/b", "--span", "week"], "--span"),
                          (["a/b", "--header", "X-Scope-OrgID"], "is not a header as Name=value")):
        bad = foresail("history", *args, "--prometheus", "http://127.0.0.1:9", "-o", str(tmp_path / "x.csv"))
        assert bad.returncode == 1 and message in bad.stdout
    for out, message in ((tmp_path / "no-such-folder" / "x.csv", "is not a folder this user can write to"),
                         (tmp_path, "is a folder, not a file")):  # said before any query, not after hours of them
        bad = foresail("history", "a/b", "--prometheus", "http://127.0.0.1:9", "-o", str(out))
        assert bad.returncode == 1 and message in bad.stdout, bad.stdout + bad.stderr
