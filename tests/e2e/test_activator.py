"""Scale from zero through the activator, with every real part: API test server, operator process,
Prometheus, and a real inference process started by the pod runner after a cold-start delay.

The activator is the stack's (`foresail activator`, as the demo runs it): it finds the ready process
through the EndpointSlice the pod runner writes for the deployment's Service, as it finds a pod in a
cluster; the Service itself, a kube-proxy address that cannot exist here, is a port nothing listens on.
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import pytest
import requests

from foresail.demo.stack import LocalStack
from foresail_operator.activation import HELD_REQUESTS
from tests.helpers import condition, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus (make install)"),
]
COLD_START_S = 3.0


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[LocalStack]:
    workdir = tmp_path_factory.mktemp("activator")
    with LocalStack(workdir, cold_start_s=COLD_START_S, activator=True) as st:
        yield st
        print((workdir / "operator.log").read_text()[-6000:])


@pytest.fixture(scope="module")
def activator(stack: LocalStack) -> str:
    return stack.activator_url


def test_a_request_at_zero_wakes_the_deployment_and_is_answered(stack: LocalStack, activator: str):
    stack.apply({"apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "tiny"},
                 "spec": {"model": {"source": "builtin:tiny"}, "replicas": 0, "minReplicas": 1,
                          "autoscaling": {"intervalSeconds": 5, "scaleToZero": {"enabled": True}}}})
    deadline = time.monotonic() + 60
    while stack.deployment("tiny") is None and time.monotonic() < deadline:
        time.sleep(0.2)
    deployment = stack.deployment("tiny")
    assert deployment is not None, "no Deployment within 60 s"
    assert deployment["spec"]["replicas"] == 0 and stack.runner.ready_count("default", "tiny") == 0
    # no pod reports at zero: the operator reads the activator's count of arrivals (0) through Prometheus
    counted = wait_for(lambda: condition(stack.llmd("tiny"), "MetricsAvailable").get("reason") == "CountedAtActivator"
                       and stack.llmd("tiny"), timeout=60, what="the operator reading the activator's count")
    assert counted["status"]["forecast"]["demand"] == 0 and counted["status"]["replicas"] == 0
    started = time.monotonic()
    # greedy: sampled at temperature 1, the random-weight model now and then draws EOS first and answers an
    # empty message (CI saw it once)
    with ThreadPoolExecutor(4) as pool:  # four at once: one hold, one wake
        answers = list(pool.map(lambda i: requests.post(activator + "/v1/chat/completions", timeout=180, json={
            "model": "tiny", "messages": [{"role": "user", "content": f"Hello {i}"}], "max_tokens": 8,
            "temperature": 0}), range(4)))
    waited = time.monotonic() - started
    assert [rsp.status_code for rsp in answers] == [200] * 4, [rsp.text for rsp in answers]
    bodies = [rsp.json() for rsp in answers]
    assert all(body["choices"][0]["message"]["content"] and body["usage"]["completion_tokens"] == 8
               for body in bodies), bodies
    assert waited >= COLD_START_S  # they were held through the cold start, not answered by a running pod
    llmd = stack.llmd("tiny")
    history = llmd["status"]["history"]
    assert history[0]["reason"] == "a request is waiting at the activator: 0 -> 1", history
    assert 1 <= int(llmd["metadata"]["annotations"][HELD_REQUESTS]) <= 4
    print(f"4 requests answered after {waited:.1f} s at zero (cold start {COLD_START_S:.0f} s + model load)")

    # with a replica ready, requests go straight through; a streamed answer arrives as server-sent events
    started = time.monotonic()
    with requests.post(activator + "/v1/completions", stream=True, timeout=60, json={
            "model": "tiny", "prompt": "Once upon", "max_tokens": 8, "stream": True}) as streamed:
        assert streamed.status_code == 200 and streamed.headers["Content-Type"].startswith("text/event-stream")
        events = [line for line in streamed.iter_lines() if line.startswith(b"data: ")]
    assert len(events) >= 2 and events[-1] == b"data: [DONE]", events
    assert time.monotonic() - started < COLD_START_S
    metrics = requests.get(activator + "/metrics", timeout=5).text
    assert 'foresail_activator_requests_total{llmdeployment="tiny",namespace="default",outcome="held"} 4.0' in metrics
    assert 'foresail_activator_requests_total{llmdeployment="tiny",namespace="default",outcome="forwarded"} 1.0' \
        in metrics
