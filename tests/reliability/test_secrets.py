"""No secret reaches a log line, an Event or a status: the hub token, the Prometheus token, the API key.

The operator runs with --verbose, a Prometheus token and an unreachable Prometheus (so its error
paths log), and an LLMDeployment whose token Secret first lacks the key (Degraded) and then gets
it (recovery). The inference server gets authorised and unauthorised requests.
"""

from __future__ import annotations

import base64
import json

import requests

from tests.helpers import wait_for
from tests.inference.conftest import start_server, stop_server
from tests.reliability.support import DEPLOYS, LLMDS, SECRETS, condition, events_for, llmd_doc

HUB_TOKEN = "hf_SECRETvalue7Q2xZ9kPq"
PROM_TOKEN = "prom-SECRET-4f8e1d2c9b"
API_KEY = "sk-SECRET-api-5d1e8a3f"
WRONG_KEY = "sk-SECRET-wrong-0c7b2e91"


def forms(secret: str) -> list[str]:
    """The secret and its base64 form (as a Secret's data holds it)."""
    return [secret, base64.b64encode(secret.encode()).decode()]


def leaks(text: str, *secrets: str) -> list[str]:
    return [form for secret in secrets for form in forms(secret) if form in text]


def test_tokens_never_reach_the_operator_log_events_or_status(cluster, start_operator, monkeypatch):
    kube = cluster.kube
    monkeypatch.setenv("FORESAIL_PROMETHEUS_TOKEN", PROM_TOKEN)
    monkeypatch.setenv("FORESAIL_COLLECT_PERIOD", "1")
    op = start_operator("--verbose", "--prometheus-url", "http://127.0.0.1:9/prometheus")
    kube.create(SECRETS, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hub-token"},
                          "data": {"wrong-key": base64.b64encode(HUB_TOKEN.encode()).decode()}})
    kube.create(LLMDS, llmd_doc("tiny", model={"source": "org/model", "tokenSecretRef": {"name": "hub-token"}},
                                autoscaling={"intervalSeconds": 5}))
    degraded = wait_for(lambda: (c := condition(kube.get(f"{LLMDS}/tiny"), "Degraded")).get("reason")
                        == "SecretKeyNotFound" and c, timeout=20, what="Degraded SecretKeyNotFound")
    assert "hub-token" in degraded["message"]
    wait_for(lambda: any(e["type"] == "Warning" and "hub-token" in e["message"] for e in events_for(kube, "tiny")),
             timeout=10, what="a Warning event naming the Secret")
    kube.merge(f"{SECRETS}/hub-token", {"stringData": {"token": HUB_TOKEN}})
    wait_for(lambda: condition(kube.get(f"{LLMDS}/tiny"), "Degraded").get("status") == "False", timeout=30,
             what="recovery once the key exists")
    wait_for(lambda: "Prometheus" in op.text(), timeout=10, what="the operator logging the Prometheus failure")
    assert op.alive()

    log = op.text()
    events = json.dumps(kube.get("/api/v1/events")) + json.dumps(kube.get("/apis/events.k8s.io/v1/events"))
    llmd = json.dumps(kube.get(f"{LLMDS}/tiny"))
    deployment = json.dumps(kube.get(f"{DEPLOYS}/tiny"))
    assert "hub-token" in events and "secretKeyRef" in deployment  # the paths that could leak were exercised
    assert leaks(log, HUB_TOKEN, PROM_TOKEN) == [], "a token is in the operator log"
    assert leaks(events, HUB_TOKEN, PROM_TOKEN) == [], "a token is in an Event"
    assert leaks(llmd, HUB_TOKEN, PROM_TOKEN) == [], "a token is in the LLMDeployment"
    assert leaks(deployment, HUB_TOKEN, PROM_TOKEN) == [], "the token is inlined in the Deployment"


def test_api_keys_never_reach_the_inference_server_output():
    server = start_server("--api-key", API_KEY, "--log-level", "DEBUG")
    try:
        good = {"Authorization": f"Bearer {API_KEY}"}
        body = {"model": "builtin:tiny", "prompt": "hello", "max_tokens": 4}
        assert requests.get(f"{server.url}/v1/models", headers=good, timeout=30).status_code == 200
        assert requests.post(f"{server.url}/v1/completions", json=body, headers=good, timeout=60).status_code == 200
        for headers in ({"Authorization": f"Bearer {WRONG_KEY}"}, {"Authorization": WRONG_KEY},
                        {"Authorization": f"Basic {base64.b64encode(f'u:{WRONG_KEY}'.encode()).decode()}"},
                        {"X-Api-Key": WRONG_KEY}, {}):
            rsp = requests.post(f"{server.url}/v1/completions", json=body, headers=headers, timeout=30)
            assert rsp.status_code == 401, (headers, rsp.status_code)
            assert not leaks(rsp.text, API_KEY, WRONG_KEY), "a key is echoed in the error"
        rsp = requests.post(f"{server.url}/v1/completions?api_key={WRONG_KEY}", json=body, timeout=30)
        assert rsp.status_code == 401 and not leaks(rsp.text, API_KEY, WRONG_KEY)
    finally:
        stop_server(server)
    output = server.log()
    server.log_path.unlink(missing_ok=True)
    assert "listening on" in output and "DEBUG" in output, "the server's output was not captured"
    assert leaks(output, API_KEY, WRONG_KEY) == [], "a key is in the inference server's output"
