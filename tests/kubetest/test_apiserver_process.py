"""The ``foresail dev apiserver`` process and the ``start_apiserver`` helper."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import kubernetes
import yaml

from foresail.kubetest.testing import ApiServerProcess, start_apiserver


def test_helper_starts_and_stops_a_separate_process(tmp_path: Path) -> None:
    with start_apiserver(tmp_path, simulate_pods=False) as server:
        assert server.url.startswith("http://127.0.0.1:")
        config = yaml.safe_load(server.kubeconfig.read_text())
        assert config["current-context"] == "kubetest"
        assert config["clusters"][0]["cluster"]["server"] == server.url
        version = kubernetes.client.VersionApi(server.api_client()).get_code()
        assert version.git_version.startswith("v1.32")
        process = server.process
    assert process.returncode == 0, "SIGTERM ends it cleanly"
    assert "listening on " + server.url in server.log.read_text()


def test_cli_prints_the_chosen_port_and_stops_on_sigterm(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "made" / "kc"  # its folder is made
    process = subprocess.Popen(
        [sys.executable, "-m", "foresail", "dev", "apiserver", "--port", "0",
         "--kubeconfig", str(kubeconfig)], stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert line.startswith("kubetest apiserver listening on http://127.0.0.1:")
        url = line.split()[-1]
        assert yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"] == url
    finally:
        process.terminate()
        started = time.monotonic()
        assert process.wait(10) == 0 and time.monotonic() - started < 5


def test_cli_refuses_bad_flags_before_it_listens(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    (tmp_path / "folder").mkdir()
    for flags, message in ((["--port", "70000"], "--port must be a port from 0 to 65535"),
                           (["--kubeconfig", str(tmp_path / "folder")], "folder is a folder, not a file"),
                           (["--kubeconfig", str(tmp_path / "file" / "kc")],
                            f"{tmp_path / 'file'} is not a folder and cannot be made"),
                           (["--ready-delay", "-1"], "--ready-delay must be seconds >= 0"),
                           (["--event-log-size", "0"], "--event-log-size must be at least 1"),
                           (["--unpullable-images", "(unclosed"], "--unpullable-images is not a regular expression")):
        done = subprocess.run([sys.executable, "-m", "foresail", "dev", "apiserver", *flags], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 2 and message in done.stderr and "listening" not in done.stdout, done.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == ["file", "folder"], "no folder.partial is left"


def test_yaml_bodies_are_accepted(server: ApiServerProcess, namespace: str) -> None:
    body = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\ndata:\n  a: b\n"
    request = urllib.request.Request(f"{server.url}/api/v1/namespaces/{namespace}/configmaps",
                                     data=body, method="POST",
                                     headers={"Content-Type": "application/yaml"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 201
    core = kubernetes.client.CoreV1Api(server.api_client())
    assert core.read_namespaced_config_map("from-yaml", namespace).data == {"a": "b"}


def test_an_interrupt_while_waiting_for_it_leaves_no_server_running(tmp_path: Path, monkeypatch) -> None:
    """Ctrl-C (or a SIGTERM turned into an exception) while ``start_apiserver`` waits for the server to answer
    stops the server it started (it was left running, with the demo's folders)."""
    started: list[subprocess.Popen] = []
    popen = subprocess.Popen

    def recording_popen(*args, **kwargs) -> subprocess.Popen:
        started.append(popen(*args, **kwargs))
        return started[-1]

    def interrupted(_: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    monkeypatch.setattr(time, "sleep", interrupted)
    try:
        start_apiserver(tmp_path, simulate_pods=False)
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the interrupt did not reach the caller")
    monkeypatch.undo()
    try:
        assert len(started) == 1 and started[0].poll() is not None, "the server it started is stopped"
    finally:
        for process in started:
            process.kill()
            process.wait()
