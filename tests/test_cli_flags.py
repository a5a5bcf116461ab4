"""The commands refuse a port they cannot listen on and a Prometheus URL they cannot query, in one line, before
they start work: not with a traceback, nor by running on without their metrics."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from foresail.cli import main
from foresail.demo.prometheus import PrometheusServer
from foresail_operator.config import OperatorConfig
from tests.helpers import KUBECONFIG


@pytest.mark.parametrize("command, message", [
    (["activator", "--host", "127.0.0.1", "--port"], "error: cannot serve on --host 127.0.0.1 --port {port}: "),
    (["operator", "--standalone", "--metrics-port"], "error: cannot serve /metrics on port {port}: "),
])
def test_a_port_in_use_is_one_line_and_a_failure(tmp_path: Path, command: list[str], message: str) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "foresail", *command, str(port), "--kubeconfig", str(kubeconfig)],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith(message.format(port=port)) and "in use" in last, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("url", ["prometheus:9090", "prometheus.monitoring.svc", "ftp://prometheus", "http://",
                                 "http://prometheus:99999"])
def test_a_prometheus_url_that_is_not_http_is_refused_naming_where_it_was_set(
        monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("FORESAIL_PROMETHEUS_URL", url)
    with pytest.raises(ValueError, match=f"^FORESAIL_PROMETHEUS_URL must be an http:// or https:// URL .*{url!r}"):
        OperatorConfig.from_env()
    monkeypatch.setenv("FORESAIL_PROMETHEUS_URL", "http://prometheus:9090")
    with pytest.raises(ValueError, match="^--prometheus-url must be an http:// or https:// URL"):
        OperatorConfig.from_env(prometheus_url=url)


def test_good_prometheus_urls_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    for url in ("http://127.0.0.1:9090", "https://prometheus.monitoring.svc:9090/prom", "http://[::1]:9090"):
        monkeypatch.setenv("FORESAIL_PROMETHEUS_URL", url)
        assert OperatorConfig.from_env().prometheus_url == url


def test_history_refuses_a_prometheus_url_without_a_scheme_before_querying(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "demand.csv"
    assert main(["history", "default/chat", "-o", str(out), "--prometheus", "prometheus:9090", "--no-progress"]) == 1
    assert capsys.readouterr().out == ("error: --prometheus must be an http:// or https:// URL such as "
                                       "http://prometheus:9090, not 'prometheus:9090'\n")
    assert not out.exists()


def test_the_metrics_port_flag_wins_over_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORESAIL_METRICS_PORT", "abc")  # README: a flag wins over its variable
    assert OperatorConfig.from_env(metrics_port=9100).metrics_port == 9100


@pytest.mark.parametrize("flags", [["--step", "1000000", "--span", "30d"], ["--window", "12d"],
                                   ["--step", "1", "--span", "10m", "--window", "2.5s"]])
def test_history_queries_a_wide_or_fractional_window_as_prometheus_reads_it(
        tmp_path: Path, capsys: pytest.CaptureFixture, flags: list[str]) -> None:
    """A window of a million seconds was written 1e+06s: a traceback from the source, a 400 from Prometheus."""
    with PrometheusServer(tmp_path / "prometheus") as prometheus:
        code = main(["history", "default/chat", "-o", str(tmp_path / "demand.csv"), "--prometheus", prometheus.url,
                     "--no-progress", *flags])
    assert code == 1 and capsys.readouterr().out.startswith("error: Prometheus has no demand for default/chat")
