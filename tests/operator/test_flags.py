"""The operator and the activator refuse bad flags at start, with a message, instead of a traceback later or a
login retried every minute."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import kopf
import pytest

from foresail.checks import check_port
from foresail_operator.config import OperatorConfig
from foresail_operator.flags import check_upstream, use_kubeconfig
from foresail_operator.kube import SERVICE_ACCOUNT_TOKEN
from tests.helpers import KUBECONFIG


def test_ports_kubeconfigs_and_upstreams_are_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for port in (None, 0, 8080, 65535):
        check_port("--port", port)
    with pytest.raises(ValueError, match="--port must be a port from 0 to 65535, not 65536"):
        check_port("--port", 65536)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    info, token_file = use_kubeconfig(str(kubeconfig))
    assert info.server == "http://127.0.0.1:9" and token_file is None
    assert os.environ["KUBECONFIG"] == str(kubeconfig)
    for missing in (tmp_path / "nowhere", tmp_path):
        with pytest.raises(ValueError, match="is not a file this user can read"):
            use_kubeconfig(str(missing))
    check_upstream("http://{name}.{namespace}.svc:8000")
    with pytest.raises(ValueError, match="is not an http:// or https:// URL"):
        check_upstream("{name}:8000")
    for field in ("{nam}", "{0}", "{}", "{name.x}", "{name[x]}", "{namespace.upper}", "{name!r}", "{name:>9}"):
        with pytest.raises(ValueError) as refused:
            check_upstream(f"http://{field}.svc")
        assert str(refused.value).endswith(f"only {{name}} and {{namespace}} may be filled in, not {field}")
    with pytest.raises(ValueError, match=re.escape("may be filled in (expected '}' before end of string)")):
        check_upstream("http://{name")


def test_a_kubeconfig_given_wins_over_the_pods_service_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As kubectl: --kubeconfig or KUBECONFIG is used in a pod too (the service account was logged in with first,
    the file ignored); without one, the service account's token file is returned, to be read again as the kubelet
    rotates it. No pod runs here: kopf's service-account login is replaced by one that finds a token."""
    in_pod = kopf.ConnectionInfo(server="https://10.96.0.1:443", token="sa-token")
    monkeypatch.setattr(kopf, "login_with_service_account", lambda **_: in_pod)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    monkeypatch.delenv("KUBECONFIG", raising=False)
    info, token_file = use_kubeconfig(str(kubeconfig))
    assert info.server == "http://127.0.0.1:9" and token_file is None
    monkeypatch.delenv("KUBECONFIG")
    assert use_kubeconfig(None) == (in_pod, SERVICE_ACCOUNT_TOKEN)


BAD_KUBECONFIGS = {  # file text -> the problem said
    "garbage: [\n": "is not YAML: expected the node content, but found '<stream end>' (line 2)",
    "apiVersion: v1\nkind: Config\n": "is not a kubeconfig to log in with (LoginError: Current context is not set",
    KUBECONFIG.replace("context: x", "context: y"): "is not a kubeconfig to log in with (KeyError: 'y')",
    "- a list\n": "is not a kubeconfig to log in with (AttributeError",
}


@pytest.mark.parametrize("text, problem", BAD_KUBECONFIGS.items())
def test_a_kubeconfig_that_cannot_log_in_is_named_with_its_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    text: str, problem: str) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(text)
    monkeypatch.delenv("KUBECONFIG", raising=False)  # use_kubeconfig sets it: put back after the test
    with pytest.raises(ValueError) as flag:
        use_kubeconfig(str(kubeconfig))
    assert str(flag.value).startswith(f"--kubeconfig {kubeconfig} {problem}")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    with pytest.raises(ValueError) as variable:
        use_kubeconfig(None)
    assert str(variable.value).startswith(f"KUBECONFIG={kubeconfig} {problem}")


def test_a_kubeconfig_variable_naming_no_file_and_no_credentials_at_all_are_errors(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("KUBECONFIG", str(missing))
    with pytest.raises(ValueError, match=re.escape(f"KUBECONFIG={missing}: cannot read {missing}: No such file")):
        use_kubeconfig(None)
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.kube/config
    with pytest.raises(ValueError, match="^no Kubernetes credentials: run in a pod with a service account"):
        use_kubeconfig(None)


@pytest.mark.parametrize("command", [["operator", "--standalone"], ["activator", "--host", "127.0.0.1", "--port", "0"]])
@pytest.mark.parametrize("text", [*list(BAD_KUBECONFIGS)[:2], None])  # malformed, no current context; None: no file
def test_the_commands_exit_at_once_on_a_kubeconfig_that_cannot_log_in(tmp_path: Path, command: list[str],
                                                                      text: str | None) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    if text is None:
        expected = f"error: KUBECONFIG={kubeconfig}: cannot read {kubeconfig}: No such file or directory\n"
    else:
        kubeconfig.write_text(text)
        command = [*command, "--kubeconfig", str(kubeconfig)]
        expected = f"error: --kubeconfig {kubeconfig} {BAD_KUBECONFIGS[text]}"
    done = subprocess.run([sys.executable, "-m", "foresail", *command], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "KUBECONFIG": str(kubeconfig)})
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.startswith(expected) and len(done.stderr.splitlines()) == 1, done.stderr


@pytest.mark.parametrize("args, message", [
    (["activator", "--port", "70000"], "--port must be a port from 0 to 65535, not 70000"),
    (["activator", "--hold-timeout", "-1"], "error: --hold-timeout must be seconds >= 0, not -1\n"),
    (["activator", "--max-held", "0"], "error: --max-held must be at least 1, not 0\n"),
    (["activator", "--prefix-load-factor", "0.9"], "--prefix-load-factor must be at least 1 (the mean load), not 0.9"),
    (["activator", "--upstream", "http://{nam}.svc"], "only {name} and {namespace} may be filled in"),
    (["activator", "--upstream", "http://{name.x}.svc"], "only {name} and {namespace} may be filled in, not {name.x}"),
    (["activator", "--kubeconfig", "/nonexistent/kubeconfig"], "is not a file this user can read"),
    (["operator", "--standalone", "--health-port", "70000"], "--health-port must be a port from 0 to 65535"),
    (["operator", "--standalone", "--health-port", "8080", "--metrics-port", "8080"],
     "the health port and the metrics port must differ (both 8080)"),
    (["operator", "--standalone", "--kubeconfig", "/nonexistent/kubeconfig"], "is not a file this user can read"),
])
def test_the_commands_exit_at_once_on_bad_flags(args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "foresail", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("name, value, message", [
    ("FORESAIL_COLLECT_PERIOD", "x", "FORESAIL_COLLECT_PERIOD must be a number of seconds from 1 to 600, not 'x'"),
    ("FORESAIL_FORECAST_STEP", "0", "FORESAIL_FORECAST_STEP must be a number of seconds from 1 to 3600, not '0'"),
    # absurd periods: Prometheus read continually with every read stale at once, or read once and kept for days;
    # a forecaster with billions of steps between two decisions, or a "day" of 1,440 days
    ("FORESAIL_COLLECT_PERIOD", "1e-9", "FORESAIL_COLLECT_PERIOD must be a number of seconds from 1 to 600"),
    ("FORESAIL_COLLECT_PERIOD", "86400", "FORESAIL_COLLECT_PERIOD must be a number of seconds from 1 to 600"),
    ("FORESAIL_COLLECT_PERIOD", "nan", "FORESAIL_COLLECT_PERIOD must be a number of seconds from 1 to 600"),
    ("FORESAIL_FORECAST_STEP", "1e-9", "FORESAIL_FORECAST_STEP must be a number of seconds from 1 to 3600"),
    ("FORESAIL_FORECAST_STEP", "86400", "FORESAIL_FORECAST_STEP must be a number of seconds from 1 to 3600"),
    ("FORESAIL_METRICS_PORT", "1.5", "FORESAIL_METRICS_PORT must be a whole number"),
    ("FORESAIL_RATE_WINDOW", "1min", "FORESAIL_RATE_WINDOW must be a Prometheus duration from 2s to 3600s"),
    # each of these Prometheus refuses in a query (400): a zero, a unit twice, units out of order
    ("FORESAIL_RATE_WINDOW", "0m", "FORESAIL_RATE_WINDOW must be a Prometheus duration from 2s to 3600s"),
    ("FORESAIL_RATE_WINDOW", "30s30s", "FORESAIL_RATE_WINDOW must be a Prometheus duration from 2s to 3600s"),
    ("FORESAIL_RATE_WINDOW", "1m1h", "FORESAIL_RATE_WINDOW must be a Prometheus duration from 2s to 3600s"),
    # Prometheus takes these, but no scrape puts two samples in a millisecond, and a year's rate is no demand
    ("FORESAIL_RATE_WINDOW", "1ms", "FORESAIL_RATE_WINDOW must be a Prometheus duration from 2s to 3600s"),
    ("FORESAIL_RATE_WINDOW", "1y", "FORESAIL_RATE_WINDOW must be a Prometheus duration from 2s to 3600s"),
    ("FORESAIL_PRE_STOP", "none", "FORESAIL_PRE_STOP must be one of auto, sleep, exec, not 'none'"),
    ("FORESAIL_PEERING", "", r"FORESAIL_PEERING \(--peering\) must name the peering object, not ''"),
])
def test_bad_environment_variables_are_named(monkeypatch: pytest.MonkeyPatch, name: str, value: str,
                                             message: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        OperatorConfig.from_env()


def test_good_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("FORESAIL_COLLECT_PERIOD", "7.5"), ("FORESAIL_METRICS_PORT", "9100"),
                        ("FORESAIL_RATE_WINDOW", "1h"), ("FORESAIL_PRE_STOP", "exec")):
        monkeypatch.setenv(name, value)
    config = OperatorConfig.from_env()
    assert (config.collect_period_s, config.metrics_port, config.rate_window, config.pre_stop) == (
        7.5, 9100, "1h", "exec")
    for name, value in (("FORESAIL_COLLECT_PERIOD", "1"), ("FORESAIL_FORECAST_STEP", "3600"),
                        ("FORESAIL_RATE_WINDOW", "2s")):  # the ends of the ranges
        monkeypatch.setenv(name, value)
    config = OperatorConfig.from_env()
    assert (config.collect_period_s, config.forecast_step_s, config.rate_window) == (1.0, 3600.0, "2s")


@pytest.mark.parametrize("name, value, args, message", [
    ("FORESAIL_COLLECT_PERIOD", "1e-9", [],
     "error: FORESAIL_COLLECT_PERIOD must be a number of seconds from 1 to 600, not '1e-9'\n"),
    ("FORESAIL_HEALTH_PORT", "abc", [], "error: FORESAIL_HEALTH_PORT must be a port from 0 to 65535, not 'abc'\n"),
    ("FORESAIL_HEALTH_PORT", "70000", [], "error: FORESAIL_HEALTH_PORT must be a port from 0 to 65535, not 70000\n"),
    ("FORESAIL_METRICS_PORT", "70000", [], "error: FORESAIL_METRICS_PORT must be a port from 0 to 65535, not 70000\n"),
    ("FORESAIL_HEALTH_PORT", "abc", ["--health-port", "70000"], "error: --health-port must be a port from 0 to 65535"),
    ("FORESAIL_HEALTH_PORT", "8080", ["--metrics-port", "8080"],
     "error: the health port and the metrics port must differ (both 8080)\n"),
])
def test_the_operators_settings_in_the_environment_are_named_by_their_variable(name: str, value: str,
                                                                              args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "foresail", "operator", "--standalone", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, name: value})
    assert done.returncode == 1 and done.stderr.startswith(message) and "Traceback" not in done.stderr, done.stderr


def test_an_environment_default_that_is_not_a_number_is_a_usage_error_of_its_command_only() -> None:
    env = {**os.environ, "FORESAIL_ACTIVATOR_PORT": "abc"}
    other = subprocess.run([sys.executable, "-m", "foresail", "backtest", "--help"], capture_output=True, text=True,
                           timeout=60, env=env)
    assert other.returncode == 0, other.stderr
    own = subprocess.run([sys.executable, "-m", "foresail", "activator"], capture_output=True, text=True, timeout=60,
                         env=env)
    assert own.returncode == 2 and "argument --port: invalid int value: 'abc'" in own.stderr, own.stderr
