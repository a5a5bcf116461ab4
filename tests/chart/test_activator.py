"""The optional activator of charts/foresail (`foresail activator`, off by default): what renders for
it, the rights it is bound to, its network policy, and the real activator run with the chart's
command line against the Kubernetes API test server (every call it makes must be granted).

The least-privilege checks of its pod are test_render.py's, through its "activator" value set; its
bad values are in test_render.py's BAD_VALUES."""

from __future__ import annotations

import http.server
import json
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from foresail.demo.prometheus import free_port
from foresail.kubetest.testing import start_apiserver
from tests.chart.helm import CHART, RELEASE, RELEASE_NS, allowed, crds, find, grants, helm, helm_binary, render
from tests.chart.test_rbac import api_calls, fetch
from tests.helpers import ROOT, Kube, logged_process, wait_for
from tests.operator.test_activator import Answer
from tests.operator.test_activator_balance import endpoint_slice

ACTIVATOR = f"{RELEASE}-foresail-activator"
OPERATOR = f"{RELEASE}-foresail"
ENABLED = {"activator": {"enabled": True}}
NAMESPACED = {**ENABLED, "watchNamespaces": ["team-a", "team-b"]}
# What the activator may do, and nothing more: read LLMDeployments, annotate one, list the EndpointSlices
# of their Services (the ready pods it balances requests over).
RIGHTS = {("list", "foresail.dev", "llmdeployments"), ("watch", "foresail.dev", "llmdeployments"),
          ("patch", "foresail.dev", "llmdeployments"), ("list", "discovery.k8s.io", "endpointslices"),
          ("watch", "discovery.k8s.io", "endpointslices")}


def is_activator(obj: dict) -> bool:
    return obj["metadata"]["labels"].get("app.kubernetes.io/component") == "activator" \
        or "activator" in obj["metadata"]["name"]


def deployment(objects: list[dict], name: str) -> dict:
    found = find(objects, "Deployment", name)
    assert len(found) == 1, f"expected one Deployment {name}, got {len(found)}"
    return found[0]


def container(objects: list[dict]) -> dict:
    [only] = deployment(objects, ACTIVATOR)["spec"]["template"]["spec"]["containers"]
    return only


def command_line(objects: list[dict]) -> list[str]:
    return container(objects)["command"] + container(objects)["args"]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def flat(rules: list[tuple[str | None, dict]]) -> set[tuple[str | None, str, str, str]]:
    """(where, verb, group, resource) for every right the rules grant."""
    return {(scope, verb, group, resource) for scope, rule in rules for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


@pytest.mark.parametrize("values", [
    {},
    {"watchNamespaces": ["team-a"], "networkPolicy": {"enabled": True},
     "monitoring": {"podMonitor": {"enabled": True}, "scrapeConfig": {"enabled": True}},
     "activator": {"enabled": False, "port": 9000}},
], ids=["defaults", "everything-else-on"])
def test_no_activator_unless_enabled(tmp_path: Path, values: dict):
    objects = render(tmp_path, values)
    assert not [f"{o['kind']} {o['metadata']['name']}" for o in objects if is_activator(o)]
    assert [d["metadata"]["name"] for d in find(objects, "Deployment")] == [OPERATOR]
    assert not find(objects, "Service")


def test_the_activator_runs_foresail_activator_with_the_values(tmp_path: Path):
    values: dict[str, Any] = {
        "activator": {"enabled": True, "replicaCount": 3, "port": 18081, "holdTimeoutSeconds": 120,
                      "responseTimeoutSeconds": 90, "routing": "service", "prefixLoadFactor": 2, "maxHeld": 50,
                      "maxHeldMiB": 32, "maxBodyMiB": 8,
                      "service": {"type": "NodePort", "port": 8080},
                      "resources": {"requests": {"cpu": "200m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}},
        "image": {"repository": "registry.example.com/foresail", "tag": "1.2.3", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}]}
    objects = render(tmp_path, values)
    activator, operator = deployment(objects, ACTIVATOR), deployment(objects, OPERATOR)
    assert activator["metadata"]["namespace"] == RELEASE_NS
    assert activator["spec"]["replicas"] == 3
    pod = activator["spec"]["template"]["spec"]
    main = container(objects)
    # The operator's image, running the other command.
    assert main["image"] == operator["spec"]["template"]["spec"]["containers"][0]["image"] \
        == "registry.example.com/foresail:1.2.3"
    assert main["imagePullPolicy"] == "Always" and pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert command_line(objects) == ["foresail", "activator", "--port", "18081", "--hold-timeout", "120",
                                     "--response-timeout", "90", "--routing", "service", "--prefix-load-factor", "2",
                                     "--max-held", "50", "--max-held-mib", "32", "--max-body-mib", "8"]
    assert main["ports"] == [{"name": "http", "containerPort": 18081, "protocol": "TCP"}]
    assert main["resources"] == values["activator"]["resources"]
    for probe in ("livenessProbe", "readinessProbe"):
        assert main[probe]["httpGet"] == {"path": "/healthz", "port": "http"}, probe
    assert pod["terminationGracePeriodSeconds"] == 155  # the preStop sleep, then what it holds is answered

    service = find(objects, "Service", ACTIVATOR)[0]
    assert service["metadata"]["namespace"] == RELEASE_NS and service["spec"]["type"] == "NodePort"
    assert service["spec"]["ports"] == [{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}]
    # The Service reaches the activator pods only; neither Deployment adopts the other's pods.
    activator_pods = activator["spec"]["template"]["metadata"]["labels"]
    operator_pods = operator["spec"]["template"]["metadata"]["labels"]
    assert selects(service["spec"]["selector"], activator_pods)
    assert not selects(service["spec"]["selector"], operator_pods)
    assert selects(activator["spec"]["selector"]["matchLabels"], activator_pods)
    assert not selects(activator["spec"]["selector"]["matchLabels"], operator_pods)
    assert not selects(operator["spec"]["selector"]["matchLabels"], activator_pods)

    # Its own account, which mounts no token unless the pod asks (it does: it calls the API).
    assert pod["serviceAccountName"] == ACTIVATOR
    assert find(objects, "ServiceAccount", ACTIVATOR)[0]["automountServiceAccountToken"] is False
    assert pod["automountServiceAccountToken"] is True


@pytest.mark.parametrize("namespaces", [[], ["team-a"], ["team-a", "team-b"]])
def test_the_activator_serves_the_watched_namespaces(tmp_path: Path, namespaces: list[str]):
    args = command_line(render(tmp_path, {**ENABLED, "watchNamespaces": namespaces}))
    assert args[:18] == ["foresail", "activator", "--port", "8080", "--hold-timeout", "600", "--response-timeout",
                         "600", "--routing", "pods", "--prefix-load-factor", "1.25", "--max-held", "1000",
                         "--max-held-mib", "256", "--max-body-mib", "64"]
    assert args[18:] == [a for ns in namespaces for a in ("--namespace", ns)]


def test_the_command_line_is_one_the_activator_parses(tmp_path: Path):
    """A renamed flag of `foresail activator` must not leave the chart passing a dead one."""
    import argparse

    from foresail_operator import activator_cli

    parser = argparse.ArgumentParser(exit_on_error=False)
    activator_cli.add_arguments(parser)
    args = command_line(render(tmp_path, {"activator": {"enabled": True, "port": 9001, "holdTimeoutSeconds": 30,
                                                        "responseTimeoutSeconds": 0, "prefixLoadFactor": 1.5,
                                                        "maxHeld": 7, "maxHeldMiB": 9, "maxBodyMiB": 3},
                                          "watchNamespaces": ["team-a", "team-b"]}))
    assert args[:2] == ["foresail", "activator"]
    parsed = parser.parse_args(args[2:])
    assert (parsed.port, parsed.hold_timeout, parsed.routing, parsed.prefix_load_factor, parsed.namespace) == (
        9001, 30, "pods", 1.5, ["team-a", "team-b"])
    assert (parsed.max_held, parsed.max_held_mib, parsed.max_body_mib, parsed.response_timeout) == (7, 9, 3, 0)


def test_a_million_from_a_values_file_reaches_the_activator_as_a_whole_number(tmp_path: Path):
    """A values file's numbers are floats to helm, which prints 1000000 as 1e+06: the activator's int flags
    would refuse it and the pod crash-loop."""
    import argparse

    from foresail_operator import activator_cli

    parser = argparse.ArgumentParser(exit_on_error=False)
    activator_cli.add_arguments(parser)
    args = command_line(render(tmp_path, {"activator": {"enabled": True, "maxHeld": 1_000_000,
                                                        "maxHeldMiB": 2_000_000, "maxBodyMiB": 1_500_000}}))
    parsed = parser.parse_args(args[2:])
    assert (parsed.max_held, parsed.max_held_mib, parsed.max_body_mib) == (1_000_000, 2_000_000, 1_500_000)


@pytest.mark.parametrize("release, override, refused", [
    ("2nd-try", "", True), ("ml.serving", "", True), ("2nd-try", "second-try", False), ("ok-one", "", False)])
def test_a_release_name_that_cannot_name_the_activator_service_is_refused_before_install(
        tmp_path: Path, release: str, override: str, refused: bool):
    """Helm takes release names with a leading digit or a dot, which a Service name may not have: the API server
    would refuse the activator's Service halfway through `helm install`, leaving a failed release behind."""
    values = {"activator": {"enabled": True}, "fullnameOverride": override}
    done = helm("template", release, str(CHART), values=values, tmp=tmp_path, check=False)
    if refused:
        assert done.returncode != 0 and "set fullnameOverride" in done.stderr, done.stderr
    else:
        assert done.returncode == 0, done.stderr
        [service] = find([d for d in yaml.safe_load_all(done.stdout) if d], "Service")
        assert service["metadata"]["name"] == f"{override or release + '-foresail'}-activator"


@pytest.mark.parametrize("routing", ["pods", "prefix", "service"])
@pytest.mark.parametrize("values", [ENABLED, NAMESPACED], ids=["all-namespaces", "namespaced"])
def test_the_activator_may_watch_and_annotate_llmdeployments_watch_endpointslices_and_nothing_else(
        tmp_path: Path, values: dict, routing: str):
    """The EndpointSlices only where it routes to the pods."""
    values = {**values, "activator": {"enabled": True, "routing": routing}}
    objects = render(tmp_path, values)
    namespaces = values.get("watchNamespaces", [])
    granted = flat(grants(objects, RELEASE_NS, ACTIVATOR))
    where = namespaces or [None]
    rights = RIGHTS if routing != "service" else {r for r in RIGHTS if r[2] != "endpointslices"}
    assert granted == {(scope, *right) for scope in where for right in rights}
    if namespaces:  # confined to the watched namespaces: no cluster-wide right at all
        assert sorted(r["metadata"]["namespace"] for r in find(objects, "Role") if is_activator(r)) == namespaces
        assert not [r for r in find(objects, "ClusterRole") + find(objects, "ClusterRoleBinding") if is_activator(r)]
        assert not allowed(grants(objects, RELEASE_NS, ACTIVATOR), "get", "foresail.dev", "llmdeployments", "other")
    # The operator's rights are the same with or without the activator, and not shared with it.
    without = render(tmp_path, {**values, "activator": {"enabled": False}})
    assert flat(grants(objects, RELEASE_NS, OPERATOR)) == flat(grants(without, RELEASE_NS, OPERATOR))
    assert not [b for b in find(objects, "RoleBinding") + find(objects, "ClusterRoleBinding")
                if b["roleRef"]["name"] == ACTIVATOR and any(s["name"] == OPERATOR for s in b["subjects"])]


def test_rbac_and_service_account_create_are_honoured(tmp_path: Path):
    objects = render(tmp_path, {**NAMESPACED, "rbac": {"create": False}, "serviceAccount": {"create": False}})
    assert not [o for o in objects if is_activator(o) and o["kind"] in
                ("ServiceAccount", "Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding")]
    assert deployment(objects, ACTIVATOR)["spec"]["template"]["spec"]["serviceAccountName"] == "default"
    # A named account of one's own: both pods run as it.
    named = render(tmp_path, {**ENABLED, "serviceAccount": {"create": False, "name": "mine"},
                              "rbac": {"create": False}})
    assert {d["spec"]["template"]["spec"]["serviceAccountName"] for d in find(named, "Deployment")} == {"mine"}
    # Accounts created, RBAC brought: the activator's account exists, bound to nothing by the chart.
    accounts = render(tmp_path, {**ENABLED, "rbac": {"create": False}})
    assert find(accounts, "ServiceAccount", ACTIVATOR) and not grants(accounts, RELEASE_NS, ACTIVATOR)


def test_network_policy_lets_clients_in_and_the_activator_reach_dns_api_and_inference_pods(tmp_path: Path):
    from tests.chart.test_render import DNS_ON_OPENSHIFT

    values = {**ENABLED, "watchNamespaces": ["team-a"], "networkPolicy": {"enabled": True}}
    objects = render(tmp_path, values)
    policies = {p["metadata"]["name"]: p for p in find(objects, "NetworkPolicy")}
    assert set(policies) == {OPERATOR, ACTIVATOR}
    assert policies[OPERATOR] == find(render(tmp_path, {**values, "activator": {"enabled": False}}),
                                      "NetworkPolicy", OPERATOR)[0]  # unchanged
    policy = policies[ACTIVATOR]["spec"]
    pods = deployment(objects, ACTIVATOR)["spec"]["template"]["metadata"]["labels"]
    assert selects(policy["podSelector"]["matchLabels"], pods)
    assert not selects(policies[OPERATOR]["spec"]["podSelector"]["matchLabels"], pods)
    assert not selects(policy["podSelector"]["matchLabels"],
                       deployment(objects, OPERATOR)["spec"]["template"]["metadata"]["labels"])
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    # In: the activator's port (named in the pod), from any pod of any namespace.
    assert policy["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}], "from": [{"namespaceSelector": {}}]}]
    # Out: DNS and the API (egressPorts) anywhere, the inference pods' port only to them.
    anywhere = sorted((p["port"], p["protocol"])
                      for rule in policy["egress"] if "to" not in rule for p in rule["ports"])
    assert anywhere == [(53, "TCP"), (53, "UDP"), (443, "TCP"), (6443, "TCP"), (9090, "TCP")]
    [inference] = [rule for rule in policy["egress"] if "to" in rule and rule != DNS_ON_OPENSHIFT]
    assert inference["ports"] == [{"port": 8000, "protocol": "TCP"}]
    assert inference["to"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/managed-by": "foresail"}},
                                "namespaceSelector": {"matchExpressions": [
                                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a"]}]}}]
    # The inference pods the operator plans carry the label the rule selects, and listen on 8000.
    from foresail_operator import plan
    from foresail_operator.runtimes import RUNTIMES
    from foresail_operator.spec import parse_spec
    template = plan.pod_template("chat", parse_spec({"model": {"source": "builtin:tiny"}}), RUNTIMES["vllm"])
    assert selects(inference["to"][0]["podSelector"]["matchLabels"], template["metadata"]["labels"])
    assert {p["containerPort"] for c in template["spec"]["containers"] for p in c.get("ports", [])} == {8000}

    # Every namespace served: any namespace; a Service reachable from outside: anyone may call it.
    wide = find(render(tmp_path, {**ENABLED, "networkPolicy": {"enabled": True},
                                  "activator": {"enabled": True, "service": {"type": "LoadBalancer", "port": 80}}}),
                "NetworkPolicy", ACTIVATOR)[0]["spec"]
    assert [rule for rule in wide["egress"] if "to" in rule and rule != DNS_ON_OPENSHIFT][0]["to"][0][
        "namespaceSelector"] == {}
    assert wide["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]


def test_the_activator_pod_monitor_scrapes_its_port(tmp_path: Path):
    objects = render(tmp_path, {**ENABLED, "monitoring": {"podMonitor": {"enabled": True, "labels": {"release": "kps"},
                                                                         "interval": "30s"}}})
    monitor = find(objects, "PodMonitor", ACTIVATOR)[0]
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert selects(monitor["spec"]["selector"]["matchLabels"],
                   deployment(objects, ACTIVATOR)["spec"]["template"]["metadata"]["labels"])
    # Its metrics carry the LLMDeployment's namespace as a label: honorLabels keeps it.
    assert monitor["spec"]["podMetricsEndpoints"] == [{"port": "http", "path": "/metrics", "interval": "30s",
                                                       "honorLabels": True}]
    # The operator's PodMonitors do not pick the activator pods up a second time.
    pods = deployment(objects, ACTIVATOR)["spec"]["template"]["metadata"]["labels"]
    for other in find(objects, "PodMonitor"):
        if other["metadata"]["name"] != ACTIVATOR:
            assert not selects(other["spec"]["selector"]["matchLabels"], pods), other["metadata"]["name"]


def post(url: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.mark.parametrize("mode", ["all-namespaces", "namespaced"])
def test_the_chart_grants_every_call_the_activator_makes_and_no_more(tmp_path: Path, mode: str):
    """The real activator, run with the chart's command line, holds a request for an LLMDeployment
    with no ready replica (it reads and annotates it), and times out after holdTimeoutSeconds; once a
    replica is ready, it sends the next request to the pod its Service's EndpointSlice lists."""
    port = free_port()
    values: dict[str, Any] = {"activator": {"enabled": True, "port": port, "holdTimeoutSeconds": 1}}
    if mode == "namespaced":
        values["watchNamespaces"] = ["team-a"]
    objects = render(tmp_path, values)
    rules = grants(objects, RELEASE_NS, ACTIVATOR)
    command = command_line(objects)
    assert command[:2] == ["foresail", "activator"]

    with start_apiserver(tmp_path / "api", simulate_pods=False) as server:
        kube = Kube(server.url)
        for crd in crds():
            kube.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        wait_for(lambda: kube.get("/apis/foresail.dev/v1alpha1"), what="CRD discovery")
        kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
        tiny = yaml.safe_load((ROOT / "examples" / "minimal.yaml").read_text())
        llmd = "/apis/foresail.dev/v1alpha1/namespaces/team-a/llmdeployments"
        kube.create(llmd, tiny)
        name = tiny["metadata"]["name"]
        server.clear_audit()

        with logged_process([sys.executable, "-m", "foresail", *command[1:], "--kubeconfig", str(server.kubeconfig)],
                            tmp_path / "activator.log", cwd=ROOT):
            # The probes the chart declares answer on the port it declares.
            wait_for(lambda: fetch(f"http://127.0.0.1:{port}/healthz") is not None, timeout=30, what="/healthz")
            status, body = post(f"http://127.0.0.1:{port}/v1/completions", {"model": name, "prompt": "hi"})
            assert status == 503, body  # held, then given up after holdTimeoutSeconds: no replica comes
            annotations = kube.read(f"{llmd}/{name}")["metadata"].get("annotations") or {}
            assert "activator.foresail.dev/requested-at" in annotations  # it asked the operator for a replica
            assert b"foresail_activator_" in (fetch(f"http://127.0.0.1:{port}/metrics") or b"")
            pod = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
            threading.Thread(target=pod.serve_forever, daemon=True).start()
            kube.create("/apis/discovery.k8s.io/v1/namespaces/team-a/endpointslices", endpoint_slice(
                name, pod.server_address[1]))
            kube.merge(f"{llmd}/{name}/status", {"status": {"readyReplicas": 1}})
            try:
                status, body = post(f"http://127.0.0.1:{port}/v1/completions", {"model": name, "prompt": "hi"})
            finally:
                pod.shutdown()
            assert status == 200, body
        calls = api_calls(server)

    assert {v for v, *_ in calls} == {"list", "watch", "patch"}, calls
    assert ("watch", "discovery.k8s.io", "endpointslices", "team-a" if mode == "namespaced" else "") in calls
    denied = sorted(c for c in calls if not allowed(rules, *c))
    assert not denied, f"the activator made calls the chart does not grant (verb, group, resource, namespace): {denied}"
    assert {(v, g, r) for _, v, g, r in flat(rules)} <= {(v, g, r) for v, g, r, _ in calls}, "granted but never used"


def test_a_stopping_activator_takes_new_connections_until_the_endpoints_have_dropped_it(tmp_path: Path):
    """Told to stop (a rollout, a drain), the pod leaves the EndpointSlices and kube-proxy's rules a moment later: the
    connections sent to it meanwhile are answered. The kubelet's part is the API test server's (its preStop sleep,
    then SIGTERM); the activator, the real one with the chart's command line, had no preStop and refused them."""
    from foresail.kubetest.controllers import termination_times

    port, hold = free_port(), 1
    objects = render(tmp_path, {"activator": {"enabled": True, "port": port, "holdTimeoutSeconds": hold}})
    pod = deployment(objects, ACTIVATOR)["spec"]["template"]["spec"]
    pre_stop, grace = termination_times(pod)
    assert pre_stop + hold + 30 <= grace  # the sleep, then what it holds answered (its shutdown timeout)
    with start_apiserver(tmp_path / "api", simulate_pods=False) as server:
        kube = Kube(server.url)
        for crd in crds():
            kube.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        wait_for(lambda: kube.get("/apis/foresail.dev/v1alpha1"), what="CRD discovery")
        with logged_process([sys.executable, "-m", "foresail", *command_line(objects)[1:], "--kubeconfig",
                             str(server.kubeconfig)], tmp_path / "activator.log", cwd=ROOT) as activator:
            wait_for(lambda: fetch(f"http://127.0.0.1:{port}/v1/models") is not None, timeout=30, what="/v1/models")
            stop = threading.Timer(pre_stop, activator.send_signal, (signal.SIGTERM,))  # the kubelet, at the deletion
            stop.start()
            try:
                time.sleep(1.0)  # a connection kube-proxy still sends to the pod, a second after its deletion
                answer = fetch(f"http://127.0.0.1:{port}/v1/models")
            finally:
                stop.join()
            assert answer is not None and json.loads(answer)["object"] == "list"
            activator.wait(pre_stop + hold + 30)  # then it stops within its grace period


def test_helm_install_with_the_activator(tmp_path: Path):
    """The API test server accepts every activator object; NOTES say where to send requests."""
    with start_apiserver(tmp_path / "api", simulate_pods=False) as server:
        kube = Kube(server.url)
        for name in (RELEASE_NS, "team-a"):
            kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        (tmp_path / "values.yaml").write_text(yaml.safe_dump({
            "watchNamespaces": ["team-a"], "networkPolicy": {"enabled": True},
            "activator": {"enabled": True, "holdTimeoutSeconds": 300, "service": {"type": "ClusterIP", "port": 8081}}}))
        env = dict(server.env(), HELM_CACHE_HOME=str(tmp_path / "c"), HELM_CONFIG_HOME=str(tmp_path / "g"),
                   HELM_DATA_HOME=str(tmp_path / "d"))

        def run(*args: str) -> str:
            done = subprocess.run([helm_binary(), *args], capture_output=True, text=True, env=env, timeout=60)
            assert done.returncode == 0, f"helm {' '.join(args)}: {done.stderr}"
            return done.stdout

        notes = run("install", RELEASE, str(CHART), "-n", RELEASE_NS, "--disable-openapi-validation",
                    "-f", str(tmp_path / "values.yaml"))
        assert f"http://{ACTIVATOR}.{RELEASE_NS}.svc:8081/v1/" in notes
        assert "held, up to 300s" in notes
        paths = [f"/apis/apps/v1/namespaces/{RELEASE_NS}/deployments/{ACTIVATOR}",
                 f"/api/v1/namespaces/{RELEASE_NS}/services/{ACTIVATOR}",
                 f"/api/v1/namespaces/{RELEASE_NS}/serviceaccounts/{ACTIVATOR}",
                 f"/apis/networking.k8s.io/v1/namespaces/{RELEASE_NS}/networkpolicies/{ACTIVATOR}",
                 f"/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/roles/{ACTIVATOR}",
                 f"/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/rolebindings/{ACTIVATOR}"]
        for path in paths:
            assert kube.get(path), path
        run("uninstall", RELEASE, "-n", RELEASE_NS)
        for path in paths:
            assert kube.get(path) is None, path


def test_the_plain_prometheus_scrape_config_has_a_job_for_the_activator_only_when_it_runs(tmp_path: Path):
    from tests.chart.test_render import discovered, relabel, scrape_configs

    scrape = {"monitoring": {"scrapeConfig": {"enabled": True}}}
    assert [j["job_name"] for j in scrape_configs(render(tmp_path, scrape))] == \
        ["foresail-inference", "foresail-operator"]
    objects = render(tmp_path, {**ENABLED, **scrape})
    jobs = {j["job_name"]: j for j in scrape_configs(objects)}
    assert jobs["foresail-activator"]["honor_labels"] is True  # its series carry the LLMDeployment's namespace
    activator_pod = deployment(objects, ACTIVATOR)["spec"]["template"]
    operator_pod = deployment(objects, OPERATOR)["spec"]["template"]
    target = discovered(activator_pod, RELEASE_NS, "http")
    kept = {name for name, job in jobs.items() if relabel(target, job["relabel_configs"]) is not None}
    assert kept == {"foresail-activator"}  # scraped once, by its own job
    assert relabel(discovered(operator_pod, RELEASE_NS, "metrics"), jobs["foresail-activator"]["relabel_configs"]) \
        is None
