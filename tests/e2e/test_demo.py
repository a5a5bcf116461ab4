"""`foresail demo` and its pod runner: the summary's figures, the plot's capacity, start-up failures, the
children's environment, SIGTERM and SIGHUP, and Pods deleted through the API or restarted."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

import psutil
import pytest
import requests

from foresail.cli import main
from foresail.demo.cli import capacity_line, summary
from foresail.demo.load import Outcome
from foresail.demo.podrunner import OWNER_LABEL, PodRunner, child_env, pod_env
from foresail.demo.prometheus import PrometheusServer
from foresail.kubetest.testing import start_apiserver
from tests.helpers import wait_for

needs_prometheus = pytest.mark.skipif(shutil.which("prometheus") is None,
                                      reason="needs Debian's prometheus (make install)")
PODS = "/api/v1/namespaces/default/pods"


def row(t: float, desired: int | None, ready: int, pods: int, capacity: float | None = None) -> dict[str, Any]:
    """One sample of the demo's timeline, as its Sampler writes it."""
    return {"t": t, "offered": 1.0, "demand": 1.0, "forecast": 1.0, "desired": desired, "recommended": desired,
            "ready": ready, "pods": pods, "capacity": capacity, "reason": ""}


def test_the_summary_counts_failures_the_pods_held_and_every_scale_event():
    """replica-seconds integrate the pods the runner holds (starting and draining ones too) over time;
    scale events count each change of the desired replicas, however many the operator's capped history keeps."""
    desired = [1, 3, 3, 5, 4, 2, 6, 1, 2, 8, 8, 3, 4, 5, 1]
    step = 2.0
    rows = [row(0.0, None, ready=0, pods=1)]  # before the operator wrote its status
    for i, d in enumerate(desired):  # each scale-up is ready one sample later, each scale-down drains one sample
        before = desired[i - 1] if i else d
        rows.append(row((i + 1) * step, d, ready=min(d, before), pods=max(d, before)))
    changes = sum(a != b for a, b in zip(desired, desired[1:], strict=False))
    held = sum(a["pods"] * (b["t"] - a["t"]) for a, b in zip(rows, rows[1:], strict=False))
    ready = sum(a["ready"] * (b["t"] - a["t"]) for a, b in zip(rows, rows[1:], strict=False))
    assert held > ready  # the pods still starting or draining are what the old figure left out
    history = [{"replicas": d} for d in desired[-10:]]  # the operator keeps the last 10 decisions
    outcomes = [Outcome(0.1, 0.2, True, "200"), Outcome(0.2, 0.3, True, "200"), Outcome(0.3, 0.0, False, "429"),
                Outcome(0.4, 0.0, False, "no replica"), Outcome(0.5, 0.0, False, "429")]
    text = "\n".join(summary(outcomes, rows, {"history": history, "coldStartSeconds": 7.0,
                                              "lastScaleReason": "scale down"}))
    assert "requests sent 5, answered 2 (40.0 %), failed 3 (2 x 429, 1 x no replica)" in text
    assert f"replica-seconds {held:.0f} " in text
    assert f"scale events: {changes} (last: scale down)" in text and changes > len(history)


def test_the_plot_uses_the_capacity_the_operator_learned_and_says_so():
    learned = [row(0.0, 1, 1, 1, None), row(1.0, 2, 1, 2, 1.0), row(2.0, 2, 2, 2, 3.85)]
    per_replica, label = capacity_line(learned, fallback=1.5)
    assert per_replica == [1.5, 1.0, 3.85]
    assert "status.capacity" in label and "3.85" in label
    per_replica, label = capacity_line([row(0.0, 1, 1, 1), row(1.0, 1, 1, 1)], fallback=1.5)
    assert per_replica == [1.5, 1.5] and "--capacity" in label and "1.5" in label


def test_child_processes_get_a_minimal_environment_and_pods_their_specs_env(monkeypatch):
    monkeypatch.setenv("FORESAIL_API_KEY", "the user's key")
    monkeypatch.setenv("FORESAIL_NAMESPACES", "prod")
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    env = child_env({"FORESAIL_PROMETHEUS_URL": "http://127.0.0.1:9090"})
    assert "FORESAIL_API_KEY" not in env and "FORESAIL_NAMESPACES" not in env
    assert env["PATH"] == os.environ["PATH"] and env["PYTHONPATH"] == "/somewhere"
    assert env["FORESAIL_PROMETHEUS_URL"] == "http://127.0.0.1:9090"
    container = {"env": [{"name": "HOME", "value": "/tmp"}, {"name": "FORESAIL_API_KEY", "value": "the pod's"},
                         {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}]}
    env = pod_env(container)
    assert env["HOME"] == "/tmp" and env["FORESAIL_API_KEY"] == "the pod's" and "HF_TOKEN" not in env


def fake_prometheus(folder: Path, body: str) -> Path:
    """A folder holding a `prometheus` that runs ``body`` (a shell script), to put first in PATH."""
    folder.mkdir()
    script = folder / "prometheus"
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return folder


def test_a_prometheus_that_never_gets_ready_is_stopped(tmp_path, monkeypatch):
    bin_dir = fake_prometheus(tmp_path / "bin", "echo never ready; exec sleep 300")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    server = PrometheusServer(tmp_path / "prometheus")
    try:
        with pytest.raises(RuntimeError, match="did not become ready in 2 s"):
            server.start(timeout_s=2)
        assert server.proc is not None and server.proc.poll() is not None
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def test_a_start_up_failure_is_one_line_naming_a_log_that_is_kept(tmp_path, monkeypatch, capsys):
    bin_dir = fake_prometheus(tmp_path / "bin", "echo 'bind: address already in use'; exit 3")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "out"
    assert main(["demo", "--minutes", "1", "--out", str(out)]) == 2
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("error: Prometheus exited with 3; see "), last
    log = Path(last.rsplit("see ", 1)[1])
    assert log.is_relative_to(out) and "address already in use" in log.read_text()
    assert (out / "apiserver" / "apiserver.log").exists()


class StandInRunner:
    """The pod runner's counts: one pod, ready."""

    def ready_count(self, namespace: str, owner: str) -> int:
        return 1

    def running_count(self, namespace: str, owner: str) -> int:
        return 1


class StandInStack:
    """A local stack whose one replica is ready and whose operator wants one."""

    runner, activator_url = StandInRunner(), "http://127.0.0.1:9"

    def __init__(self, workdir: Path, **_: Any) -> None:
        (workdir / "operator.log").write_text("operator log\n")

    def __enter__(self) -> StandInStack:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def apply(self, doc: dict) -> None:
        pass

    def wait_ready(self, name: str, replicas: int, timeout_s: float) -> None:
        pass

    def llmd(self, name: str) -> dict:
        return {"status": {"desiredReplicas": 1, "forecast": {"demand": 0.0, "upper": 3.83e-11}}}

    def exited(self) -> str | None:
        return None


def stand_ins(monkeypatch: pytest.MonkeyPatch, replay: Callable[..., Awaitable[list[Outcome]]]) -> None:
    """`foresail demo` on StandInStack, replaying with ``replay``."""
    monkeypatch.setattr("foresail.demo.stack.LocalStack", StandInStack)
    monkeypatch.setattr("foresail.demo.load.replay", replay)
    monkeypatch.setattr("foresail.demo.prometheus.find_binary", lambda: "prometheus")


def test_a_run_in_which_no_request_is_answered_says_why_and_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """The stack and the replay are stand-ins: every request gets a 401."""

    async def replay(step_rates, step_s, endpoints, model, on_step):
        return [Outcome(i, 0.01, False, "401") for i in range(3)]

    stand_ins(monkeypatch, replay)
    out = tmp_path / "out"
    assert main(["demo", "--minutes", "1", "--out", str(out)]) == 1
    text = capsys.readouterr().out
    assert "answered 0 (0.0 %), failed 3 (3 x 401)" in text and "no request was answered" in text
    assert (out / "operator.log").read_text() == "operator log\n"


def test_the_first_minutes_line_shows_the_replicas_already_ready(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The first progress line comes as the replay starts, before the sampler's first tick a second later: it
    showed "desired None ready None" with one replica ready. The forecast has two decimals, as the demand has (the
    operator's first, before any load, showed as 3.83e-11)."""

    async def replay(step_rates, step_s, endpoints, model, on_step):
        on_step(0, step_rates[0])
        return [Outcome(0.0, 0.01, True, "200")]

    stand_ins(monkeypatch, replay)
    assert main(["demo", "--minutes", "1", "--out", str(tmp_path / "out")]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if "minute   0" in x]
    assert "desired 1 ready 1" in line and "forecast p90  0.00 |" in line, line
    assert json.loads((tmp_path / "out" / "timeline.json").read_text())[0]["t"] == 0.0


def test_a_peak_rate_planning_too_many_requests_is_refused(tmp_path, capsys):
    assert main(["demo", "--peak-rps", "1e6", "--out", str(tmp_path / "out")]) == 2
    assert "more than the 100,000 the demo sends at most" in capsys.readouterr().out
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@needs_prometheus
@dataclass
class RunningDemo:
    """A `foresail demo` process, its output lines (a thread reads on) and its children once the replay started."""

    proc: subprocess.Popen
    lines: list[str]
    children: list[psutil.Process]
    reader: threading.Thread

    def wait(self, timeout: float) -> int:
        """The exit status, once all the output is read."""
        status = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return status


@contextlib.contextmanager
def demo_in_replay(args: list[str], env: dict[str, str] | None = None) -> Iterator[RunningDemo]:
    """`foresail demo ARGS`, once its replay started (its first minute's line); it and every child killed after."""
    proc = subprocess.Popen([sys.executable, "-m", "foresail", "demo", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    stream = proc.stdout
    assert stream is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(stream.readline, "")), daemon=True)
    reader.start()
    demo = RunningDemo(proc, lines, [], reader)
    try:
        wait_for(lambda: any("minute   0" in line for line in lines) or proc.poll() is not None, timeout=120,
                 what="the replay started")
        assert proc.poll() is None, "".join(lines)
        demo.children.extend(psutil.Process(proc.pid).children(recursive=True))
        yield demo
    finally:
        if proc.poll() is None:
            proc.kill()
        for child in demo.children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_everything_the_demo_started(tmp_path: Path, sig: signal.Signals) -> None:
    """As Ctrl-C does: every child stopped, the temp folder removed, the logs kept. The user's FORESAIL_*
    variables reach none of the children the demo starts (a namespace filter the operator would obey, an API
    key the pods would ask for)."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "FORESAIL_NAMESPACES": "prod", "FORESAIL_API_KEY": "the user's key"}
    out = tmp_path / "out"
    with demo_in_replay(["--minutes", "2", "--cold-start", "0", "--out", str(out)], env) as demo:
        lines, children = demo.lines, demo.children
        servers = [p for p in children if "serve" in p.cmdline()]
        assert servers and len(children) >= 5  # API server, Prometheus, operator, activator, a pod
        # the operator, the activator and the pods (the API server is started by foresail.kubetest.testing)
        started = [p for p in children if "foresail" in p.cmdline() and "apiserver" not in p.cmdline()]
        assert len(started) >= 3 and all("FORESAIL_API_KEY" not in p.environ() for p in started)
        assert all(p.environ()["HOME"] == "/tmp" for p in servers)  # the pod spec's env
        demo.proc.send_signal(sig)
        assert demo.wait(timeout=90) == 128 + sig
        left = [p.cmdline() for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert left == [], "".join(lines)
        assert list(temp.iterdir()) == []
        assert (out / "operator.log").exists() and list((out / "pods").glob("*.log"))


@pytest.mark.slow
def test_a_pod_deleted_through_the_api_is_stopped_and_replaced_and_restarts_are_counted(tmp_path: Path) -> None:
    """As a kubelet: a killed process is restarted in place, with restartCount and lastState.terminated; a Pod
    deleted through the API gets its preStop and SIGTERM, then the object goes, and (as the ReplicaSet
    controller) the runner creates a replacement."""
    with start_apiserver(tmp_path / "api", simulate_pods=False) as api:
        http = requests.Session()
        labels = {"app.kubernetes.io/managed-by": "foresail", OWNER_LABEL: "tiny"}
        container = {"name": "server", "image": "local", "command": ["foresail", "serve", "--model", "builtin:tiny"],
                     "lifecycle": {"preStop": {"exec": {"command": ["sleep", "1"]}}}}
        dep: dict[str, Any] = {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "tiny", "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [container], "terminationGracePeriodSeconds": 30}}}}
        http.post(api.url + "/apis/apps/v1/namespaces/default/deployments", json=dep, timeout=10).raise_for_status()
        runner = PodRunner(api.url, tmp_path / "pods", cold_start_s=0.0, poll_s=0.2).start()
        try:
            wait_for(lambda: runner.ready_count("default", "tiny") == 1, timeout=90, what="the pod ready")
            (pod,) = runner.pods.values()
            assert pod.proc is not None
            pod.proc.kill()

            def restarted() -> dict | None:
                status = http.get(f"{api.url}{PODS}/{pod.name}", timeout=10).json()["status"]
                return status if status["containerStatuses"][0]["restartCount"] else None

            (cs,) = wait_for(restarted, timeout=10, what="the restart counted")["containerStatuses"]
            assert cs["restartCount"] == 1
            assert {k: cs["lastState"]["terminated"][k] for k in ("exitCode", "reason")} == {
                "exitCode": 128 + signal.SIGKILL, "reason": "Error"}
            wait_for(lambda: runner.ready_count("default", "tiny") == 1, timeout=90, what="the pod ready again")
            process = pod.proc
            assert process is not None
            http.delete(f"{api.url}{PODS}/{pod.name}", params={"gracePeriodSeconds": 5}, timeout=10
                        ).raise_for_status()
            wait_for(lambda: process.poll() is not None, timeout=15, what="the process stopped")
            wait_for(lambda: http.get(f"{api.url}{PODS}/{pod.name}", timeout=10).status_code == 404, timeout=10,
                     what="the Pod object removed")
            wait_for(lambda: runner.ready_count("default", "tiny") == 1, timeout=90, what="a replacement ready")
            (replacement,) = http.get(api.url + PODS, timeout=10).json()["items"]
            assert replacement["metadata"]["name"] != pod.name
        finally:
            runner.stop()


@pytest.mark.slow
@needs_prometheus
def test_an_operator_that_dies_during_the_replay_ends_the_demo_naming_its_log(tmp_path: Path) -> None:
    """The replay went on to a summary of a run nobody scaled ("scale events: 0"), exit status 0; now the demo
    stops at the next minute, says which process exited and where its log is kept, and leaves nothing running."""
    out = tmp_path / "out"
    with demo_in_replay(["--minutes", "4", "--step", "3", "--cold-start", "0", "--out", str(out)]) as demo:
        (operator,) = [p for p in demo.children if "operator" in p.cmdline()]
        operator.kill()
        assert demo.wait(timeout=90) == 2
        assert "Summary" not in "".join(demo.lines)
        assert demo.lines[-1].strip() == (f"error: during the replay, the operator exited with -{signal.SIGKILL:d}; "
                                          f"see {out / 'operator.log'}"), "".join(demo.lines)
        assert (out / "operator.log").exists()
        left = [p.cmdline() for p in demo.children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert left == [], left


def test_a_run_that_sends_no_request_says_so_not_that_none_was_answered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """`--minutes 1 --peak-rps 0.2` plans one request at 5 s a minute, and its Poisson arrivals send none: the demo
    blamed "the failures above and the pods' logs", and there were neither."""
    from foresail.demo.load import replay as real_replay

    sent: list[list[Outcome]] = []

    async def replay(step_rates, step_s, endpoints, model, on_step):  # the real arrivals, without the stack
        sent.append(await real_replay(step_rates, step_s, endpoints, model, on_step=on_step))
        return sent[-1]

    stand_ins(monkeypatch, replay)
    assert main(["demo", "--minutes", "1", "--peak-rps", "0.2", "--step", "5", "--out", str(tmp_path / "out")]) == 1
    text = capsys.readouterr().out
    assert sent == [[]] and "requests sent 0" in text, text
    assert "no request was sent: raise --peak-rps, --step or --minutes" in text and "failures above" not in text
