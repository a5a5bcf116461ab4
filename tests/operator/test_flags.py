"""The operator and the activator refuse bad flags at start, with a message, instead of a traceback later or a
login retried every minute."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from foresail.checks import check_port
from foresail_operator.config import OperatorConfig
from foresail_operator.flags import check_upstream, use_kubeconfig


def test_ports_kubeconfigs_and_upstreams_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for port in (None, 0, 8080, 65535):
        check_port("--port", port)
    with pytest.raises(ValueError, match="--port must be a port from 0 to 65535, not 65536"):
        check_port("--port", 65536)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    monkeypatch.delenv("KUBECONFIG", raising=False)
    use_kubeconfig(str(kubeconfig))
    assert os.environ["KUBECONFIG"] == str(kubeconfig)
    for missing in (tmp_path / "nowhere", tmp_path):
        with pytest.raises(ValueError, match="is not a file this user can read"):
            use_kubeconfig(str(missing))
    check_upstream("http://{name}.{namespace}.svc:8000")
    for bad, message in (("{name}:8000", "not an http:// or https:// URL"), ("http://{nam}", "KeyError"),
                         ("http://{0}", "IndexError"), ("http://{name", "ValueError")):
        with pytest.raises(ValueError, match=message):
            check_upstream(bad)


@pytest.mark.parametrize("args, message", [
    (["activator", "--port", "70000"], "--port must be a port from 0 to 65535, not 70000"),
    (["activator", "--hold-timeout", "-1"], "error: --hold-timeout must be seconds >= 0, not -1\n"),
    (["activator", "--max-held", "0"], "error: --max-held must be at least 1, not 0\n"),
    (["activator", "--prefix-load-factor", "0.9"], "--prefix-load-factor must be at least 1 (the mean load), not 0.9"),
    (["activator", "--upstream", "http://{nam}.svc"], "only {name} and {namespace} may be filled in"),
    (["activator", "--kubeconfig", "/nonexistent/kubeconfig"], "is not a file this user can read"),
    (["operator", "--standalone", "--health-port", "70000"], "--health-port must be a port from 0 to 65535"),
    (["operator", "--standalone", "--health-port", "8080", "--metrics-port", "8080"],
     "--health-port and the metrics port must differ (both 8080)"),
    (["operator", "--standalone", "--kubeconfig", "/nonexistent/kubeconfig"], "is not a file this user can read"),
])
def test_the_commands_exit_at_once_on_bad_flags(args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "foresail", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("name, value, message", [
    ("FORESAIL_COLLECT_PERIOD", "x", "FORESAIL_COLLECT_PERIOD must be a number of seconds > 0, not 'x'"),
    ("FORESAIL_FORECAST_STEP", "0", "FORESAIL_FORECAST_STEP must be a number of seconds > 0, not '0'"),
    ("FORESAIL_METRICS_PORT", "1.5", "FORESAIL_METRICS_PORT must be a whole number"),
    ("FORESAIL_RATE_WINDOW", "1min", "FORESAIL_RATE_WINDOW must be a Prometheus duration"),
    ("FORESAIL_PRE_STOP", "none", "FORESAIL_PRE_STOP must be one of auto, sleep, exec, not 'none'"),
])
def test_bad_environment_variables_are_named(monkeypatch: pytest.MonkeyPatch, name: str, value: str,
                                             message: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        OperatorConfig.from_env()


def test_good_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("FORESAIL_COLLECT_PERIOD", "7.5"), ("FORESAIL_METRICS_PORT", "9100"),
                        ("FORESAIL_RATE_WINDOW", "1h30m"), ("FORESAIL_PRE_STOP", "exec")):
        monkeypatch.setenv(name, value)
    config = OperatorConfig.from_env()
    assert (config.collect_period_s, config.metrics_port, config.rate_window, config.pre_stop) == (
        7.5, 9100, "1h30m", "exec")


def test_an_environment_default_that_is_not_a_number_is_a_usage_error_of_its_command_only() -> None:
    env = {**os.environ, "FORESAIL_ACTIVATOR_PORT": "abc"}
    other = subprocess.run([sys.executable, "-m", "foresail", "backtest", "--help"], capture_output=True, text=True,
                           timeout=60, env=env)
    assert other.returncode == 0, other.stderr
    own = subprocess.run([sys.executable, "-m", "foresail", "activator"], capture_output=True, text=True, timeout=60,
                         env=env)
    assert own.returncode == 2 and "argument --port: invalid int value: 'abc'" in own.stderr, own.stderr
