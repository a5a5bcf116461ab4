"""Render charts/foresail with several value sets: lint, security defaults, values, schema, monitoring."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from foresail.demo.prometheus import PrometheusServer
from tests.chart.helm import CHART, RELEASE_NS, find, helm, render, the
from tests.helpers import ROOT

NAMESPACED: dict[str, Any] = {"watchNamespaces": ["team-a", "team-b"]}
EVERYTHING: dict[str, Any] = {
    "watchNamespaces": ["team-a"],
    "prometheus": {"url": "https://prometheus.monitoring.svc:9090/prom",
                   "bearerTokenSecret": {"name": "prom-token", "key": "bearer"},
                   "bearerTokenFile": "/var/run/secrets/kubernetes.io/serviceaccount/token",
                   "caConfigMap": {"name": "prometheus-ca", "key": "service-ca.crt"},
                   "headers": {"X-Scope-OrgID": "team-a", "X-Extra": "1"}},
    "runtimeImages": {"vllm": "registry.example.com/vllm/vllm-openai:v0.11.0",
                      "foresail": "registry.local:5000/my--team/foresail:1"},
    "operator": {"peering": "fs-ha", "healthPort": 18080, "metricsPort": 19090,
                 "collectPeriodSeconds": 5, "forecastStepSeconds": 30, "preStop": "exec"},
    "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
    "nodeSelector": {"node-role.kubernetes.io/control-plane": ""},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ops", "effect": "NoSchedule"},
                    {"operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}},
    "priorityClassName": "system-cluster-critical",
    "podAnnotations": {"example.com/team": "ml"},
    "imagePullSecrets": [{"name": "regcred"}],
    "serviceAccount": {"name": "foresail-op", "annotations": {"example.com/role": "x"}},
    "monitoring": {"podMonitor": {"enabled": True, "labels": {"release": "kps"}, "interval": "30s"},
                   "scrapeConfig": {"enabled": True}, "dashboard": {"enabled": True},
                   "prometheusRule": {"enabled": True, "labels": {"release": "kps"}}},
    "networkPolicy": {"enabled": True, "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]},
}
VALUE_SETS: dict[str, dict[str, Any]] = {"defaults": {}, "namespaced": NAMESPACED, "everything": EVERYTHING,
              "minimal": {"replicaCount": 1, "rbac": {"create": False}, "serviceAccount": {"create": False},
                          "monitoring": {"dashboard": {"enabled": False}}},
              # The optional activator (tests/chart/test_activator.py), with what shapes its objects.
              "activator": {"activator": {"enabled": True}, "watchNamespaces": ["team-a"],
                            "networkPolicy": {"enabled": True}, "monitoring": {"podMonitor": {"enabled": True}}},
              # OpenShift's restricted-v2 SCC: the pods run as the user and group it assigns
              "openshift": {"podSecurityContext": {"runAsUser": None, "runAsGroup": None},
                            "activator": {"enabled": True,
                                          "podSecurityContext": {"runAsUser": None, "runAsGroup": None}}}}


def pod_templates(objects: list[dict]) -> list[dict]:
    return [o["spec"]["template"] for o in objects if o["kind"] in ("Deployment", "DaemonSet", "StatefulSet", "Job")]


def env_of(objects: list[dict]) -> dict[str, dict]:
    container = the(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e for e in container["env"]}


def test_chart_crds_are_the_top_level_crds():
    for name in ("llmdeployment.yaml", "kopf-peering.yaml"):
        assert (CHART / "crds" / name).read_bytes() == (ROOT / "crds" / name).read_bytes(), \
            f"charts/foresail/crds/{name} differs from crds/{name}: copy it over"


@pytest.mark.parametrize("name", VALUE_SETS)
def test_lint_and_render_each_value_set(tmp_path: Path, name: str):
    values = VALUE_SETS[name]
    lint = helm("lint", str(CHART), "--strict", "--namespace", RELEASE_NS, values=values, tmp=tmp_path)
    assert "0 chart(s) failed" in lint.stdout
    objects = render(tmp_path, values)
    assert find(objects, "Deployment", "fs-foresail")[0]["spec"]["replicas"] == values.get("replicaCount", 2)
    for obj in objects:  # everything namespaced lands in the release namespace or a watched one
        namespace = obj["metadata"].get("namespace")
        assert namespace in (None, RELEASE_NS, *values.get("watchNamespaces", ())), obj["metadata"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "foresail"


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_pod_runs_with_least_privilege(tmp_path: Path, name: str):
    objects = render(tmp_path, VALUE_SETS[name])
    templates = pod_templates(objects)
    assert templates
    for template in templates:
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in spec.get("initContainers", []) + spec["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
            assert "privileged" not in context
        # The operator and the activator talk to the API, so their pods (and only theirs) opt in to the token.
        assert spec["automountServiceAccountToken"] is True
        assert not spec.get("hostNetwork") and not spec.get("hostPID")
    for account in find(objects, "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False


def test_the_pods_security_context_comes_from_the_values(tmp_path: Path):
    """By default the operator and the activator pods run as user and group 10001; OpenShift's value set leaves
    both out (its SCC assigns them) and keeps the rest; a field added (fsGroup) goes on as given."""
    def contexts(values: dict[str, Any]) -> dict[str, dict]:
        objects = render(tmp_path, values)
        return {d["metadata"]["name"]: d["spec"]["template"]["spec"]["securityContext"]
                for d in find(objects, "Deployment")}

    default = {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
               "seccompProfile": {"type": "RuntimeDefault"}}
    assert contexts({"activator": {"enabled": True}}) == {"fs-foresail": default, "fs-foresail-activator": default}
    assigned = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
    assert contexts(VALUE_SETS["openshift"]) == {"fs-foresail": assigned, "fs-foresail-activator": assigned}
    grouped = contexts({"podSecurityContext": {"fsGroup": 2000}, "activator": {"enabled": True}})
    assert grouped == {"fs-foresail": {**default, "fsGroup": 2000}, "fs-foresail-activator": default}


def test_defaults_watch_every_namespace_with_two_replicas(tmp_path: Path):
    objects = render(tmp_path)
    env = env_of(objects)
    assert env["FORESAIL_NAMESPACES"]["value"] == ""
    assert not {"FORESAIL_PROMETHEUS_URL", "FORESAIL_PROMETHEUS_TOKEN", "FORESAIL_PROMETHEUS_TOKEN_FILE",
                "FORESAIL_PROMETHEUS_CA_FILE", "FORESAIL_PROMETHEUS_HEADERS"} & set(env)
    assert not [n for n in env if n.startswith("FORESAIL_IMAGE_")]
    assert the(objects, "ClusterKopfPeering")["metadata"]["name"] == "foresail"
    assert not find(objects, "KopfPeering") and not find(objects, "Role") and not find(objects, "NetworkPolicy")
    assert not find(objects, "PodMonitor")
    deployment = the(objects, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == "ghcr.io/foresail-dev/foresail-operator:0.1.0"
    anti = deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    assert anti["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]["topologyKey"] \
        == "kubernetes.io/hostname"


@pytest.mark.parametrize("replicas, activator_replicas", [(2, 2), (1, 3), (1, 1)])
def test_a_drain_evicts_one_replica_at_a_time_where_there_are_several(tmp_path: Path, replicas: int,
                                                                      activator_replicas: int):
    """A PodDisruptionBudget of one unavailable replica for the operator and for the activator, each
    selecting exactly its Deployment's pods; none for a single replica (it would block the drain). A replica that
    is not ready may always be evicted: by default, with both crash-looping, a drain waited on them for ever."""
    objects = render(tmp_path, {"replicaCount": replicas,
                                "activator": {"enabled": True, "replicaCount": activator_replicas}})
    budgets = {b["metadata"]["name"]: b for b in find(objects, "PodDisruptionBudget")}
    for deployment in find(objects, "Deployment"):
        budget = budgets.pop(deployment["metadata"]["name"], None)
        if deployment["spec"]["replicas"] == 1:
            assert budget is None
            continue
        assert budget is not None, f"no PodDisruptionBudget for {deployment['metadata']['name']}"
        assert budget["spec"] == {"maxUnavailable": 1, "selector": deployment["spec"]["selector"],
                                  "unhealthyPodEvictionPolicy": "AlwaysAllow"}
        assert budget["metadata"]["namespace"] == RELEASE_NS
    assert not budgets, budgets  # none without its Deployment


def test_a_digest_pins_the_image_of_the_operator_and_the_activator(tmp_path: Path):
    """image.digest, where set, names the image instead of the tag, in both Deployments."""
    repository, digest = "registry.local:5000/my--team/foresail", "sha256:" + "0123456789abcdef" * 4
    for digest_value, expected in (("", f"{repository}:1.2.3"), (digest, f"{repository}@{digest}")):
        objects = render(tmp_path, {"image": {"repository": repository, "tag": "1.2.3", "digest": digest_value},
                                    "activator": {"enabled": True}})
        images = [d["spec"]["template"]["spec"]["containers"][0]["image"] for d in find(objects, "Deployment")]
        assert images == [expected, expected]


def test_values_reach_the_operator(tmp_path: Path):
    objects = render(tmp_path, EVERYTHING)
    env = env_of(objects)
    assert env["FORESAIL_NAMESPACES"]["value"] == "team-a"
    assert env["FORESAIL_PROMETHEUS_URL"]["value"] == "https://prometheus.monitoring.svc:9090/prom"
    assert env["FORESAIL_PROMETHEUS_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "prom-token", "key": "bearer"}}
    assert env["FORESAIL_PROMETHEUS_TOKEN_FILE"]["value"] == "/var/run/secrets/kubernetes.io/serviceaccount/token"
    assert env["FORESAIL_PROMETHEUS_HEADERS"]["value"] == "X-Extra=1,X-Scope-OrgID=team-a"
    ca_file = Path(env["FORESAIL_PROMETHEUS_CA_FILE"]["value"])
    assert env["FORESAIL_IMAGE_VLLM"]["value"] == "registry.example.com/vllm/vllm-openai:v0.11.0"
    assert env["FORESAIL_IMAGE_FORESAIL"]["value"] == "registry.local:5000/my--team/foresail:1"
    assert "FORESAIL_IMAGE_TGI" not in env
    assert (env["FORESAIL_PEERING"]["value"], env["FORESAIL_HEALTH_PORT"]["value"],
            env["FORESAIL_METRICS_PORT"]["value"]) == ("fs-ha", "18080", "19090")
    assert (env["FORESAIL_COLLECT_PERIOD"]["value"], env["FORESAIL_FORECAST_STEP"]["value"]) == ("5", "30")
    assert env["FORESAIL_PRE_STOP"]["value"] == "exec"
    pod = the(objects, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"health": 18080, "metrics": 19090}
    assert container["resources"] == EVERYTHING["resources"]
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName", "imagePullSecrets"):
        assert pod[key] == EVERYTHING[key], key
    # the CA's ConfigMap is mounted where FORESAIL_PROMETHEUS_CA_FILE points
    mount = next(m for m in container["volumeMounts"] if m["name"] == "prometheus-ca")
    assert (Path(mount["mountPath"]) / ca_file.name, ca_file.name) == (ca_file, "service-ca.crt")
    assert {"name": "prometheus-ca", "configMap": {"name": "prometheus-ca"}} in pod["volumes"]
    assert the(objects, "Deployment")["spec"]["template"]["metadata"]["annotations"] == EVERYTHING["podAnnotations"]
    assert pod["serviceAccountName"] == "foresail-op" == the(objects, "ServiceAccount")["metadata"]["name"]
    peering = the(objects, "KopfPeering")
    assert (peering["metadata"]["name"], peering["metadata"]["namespace"]) == ("fs-ha", "team-a")
    assert not find(objects, "ClusterKopfPeering")


def test_every_environment_variable_is_one_the_operator_reads(tmp_path: Path):
    """A renamed FORESAIL_* variable in the operator must not leave the chart setting a dead one (POD_ID: kopf's)."""
    import kopf

    source = "".join(p.read_text() for p in (ROOT / "operator" / "foresail_operator").glob("*.py"))
    source += (Path(kopf.__file__).parent / "_core" / "engines" / "peering.py").read_text()
    for name in env_of(render(tmp_path, EVERYTHING)):
        literal = name if not name.startswith("FORESAIL_IMAGE_") else "FORESAIL_IMAGE_"
        assert literal in source, f"the chart sets {name}, which the operator never reads"


def test_namespaced_mode_confines_namespaced_rights_to_roles(tmp_path: Path):
    objects = render(tmp_path, NAMESPACED)
    roles = find(objects, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    assert sorted(b["metadata"]["namespace"] for b in find(objects, "RoleBinding")) == ["team-a", "team-b"]
    assert sorted(p["metadata"]["namespace"] for p in find(objects, "KopfPeering")) == ["team-a", "team-b"]
    for cluster_role in find(objects, "ClusterRole"):
        resources = {r for rule in cluster_role["rules"] for r in rule["resources"]}
        assert resources <= {"customresourcedefinitions", "namespaces", "nodes"}, resources


def test_bring_your_own_rbac_and_service_account(tmp_path: Path):
    objects = render(tmp_path, VALUE_SETS["minimal"])
    assert not [o for o in objects if o["kind"] in ("ServiceAccount", "Role", "ClusterRole", "RoleBinding",
                                                     "ClusterRoleBinding", "ConfigMap")]
    assert the(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "default"


BAD_VALUES = [
    ({"replicaCount": -1}, "replicaCount: Must be greater than or equal to 1"),
    ({"replicaCount": "two"}, "replicaCount: Invalid type. Expected: integer, given: string"),
    ({"replicas": 2}, "Additional property replicas is not allowed"),
    ({"prometheus": {"url": "prometheus:9090"}}, "prometheus.url: Does not match pattern"),
    ({"prometheus": {"url": "ftp://prometheus"}}, "prometheus.url: Does not match pattern"),
    ({"prometheus": {"url": "", "bearerTokenFile": "token"}}, "prometheus.bearerTokenFile: Does not match pattern"),
    ({"prometheus": {"url": "", "headers": {"X-Scope-OrgID": "a,b"}}},
     "prometheus.headers.X-Scope-OrgID: Does not match pattern"),
    # a line break would make every query fail (requests refuses the header), not add a header
    ({"prometheus": {"url": "", "headers": {"X-Scope-OrgID": "team-a\nX-Other: 1"}}},
     "prometheus.headers.X-Scope-OrgID: Does not match pattern"),
    # Kubernetes' data keys: the API server would refuse the Deployment halfway through `helm install`
    ({"prometheus": {"url": "", "bearerTokenSecret": {"name": "prom", "key": "my token"}}},
     "prometheus.bearerTokenSecret.key: Does not match pattern"),
    ({"prometheus": {"url": "", "bearerTokenSecret": {"name": "prom", "key": "..token"}}},
     "prometheus.bearerTokenSecret.key: Does not match pattern"),
    ({"prometheus": {"url": "", "caConfigMap": {"name": "ca", "key": ".."}}},
     "prometheus.caConfigMap.key: Does not match pattern"),
    ({"image": {"pullPolicy": "Sometimes"}}, "image.pullPolicy: image.pullPolicy must be one of the following"),
    # image references a kubelet can parse (InvalidImageName otherwise); a digest goes in image.digest
    ({"image": {"tag": "sha256:" + "0" * 64}}, "image.tag: Does not match pattern"),
    ({"image": {"digest": "0" * 64}}, "image.digest: Does not match pattern"),
    ({"image": {"repository": "ghcr.io/foresail-dev/foresail:0.1.0"}}, "image.repository: Does not match pattern"),
    ({"image": {"repository": "GHCR.io/Foresail/Operator"}}, "image.repository: Does not match pattern"),
    ({"image": {"repository": "my_registry.io/foresail"}}, "image.repository: Does not match pattern"),
    ({"runtimeImages": {"vllm": "vllm/vllm-openai:v1:v2"}}, "runtimeImages.vllm: Does not match pattern"),
    # names Kubernetes refuses: the objects', the ServiceAccount's (the activator's Service needs a DNS-1035 label)
    ({"fullnameOverride": "Foresail_Op"}, "fullnameOverride: Does not match pattern"),
    ({"fullnameOverride": "1foresail"}, "fullnameOverride: Does not match pattern"),
    ({"nameOverride": "Foresail"}, "nameOverride: Does not match pattern"),
    ({"serviceAccount": {"name": "Foresail SA"}}, "serviceAccount.name: Does not match pattern"),
    ({"watchNamespaces": ["Team_A"]}, "watchNamespaces.0: Does not match pattern"),
    ({"watchNamespaces": "team-a"}, "watchNamespaces: Invalid type. Expected: array, given: string"),
    ({"operator": {"metricsPort": 70000}}, "operator.metricsPort: Must be less than or equal to 65535"),
    ({"operator": {"preStop": "none"}}, "operator.preStop: operator.preStop must be one of the following"),
    ({"operator": {"healthPort": 9090}}, "operator.healthPort and operator.metricsPort are both 9090"),
    ({"runtimeImages": {"llamacpp": "x:1"}}, "Additional property llamacpp is not allowed"),
    ({"monitoring": {"podMonitor": {"interval": "often"}}}, "monitoring.podMonitor.interval: Does not match pattern"),
    ({"nodeSelector": {"gpu": True}}, "nodeSelector.gpu: Invalid type. Expected: string, given: boolean"),
    ({"nodeSelector": {"pool": "gpu nodes"}}, "nodeSelector.pool: Does not match pattern"),
    ({"nodeSelector": {"gpu pool": "a"}}, 'nodeSelector: Property name of "gpu pool" does not match'),
    ({"resources": {"requests": {"cpu": "lots"}}}, "resources.requests.cpu: Does not match pattern"),
    ({"resources": {"requests": {"memroy": "1Gi"}}}, 'resources.requests: Property name of "memroy" does not match'),
    ({"activator": {"resources": {"limits": {"memory": -1}}}},
     "activator.resources.limits.memory: Must be greater than or equal to 0"),
    # a request above its limit (helm keeps the default limit beside a raised request): the API server refuses the
    # Deployment halfway through the install
    ({"resources": {"requests": {"memory": "1Gi"}}},
     "resources.requests.memory (1Gi) is above resources.limits.memory (512Mi)"),
    ({"resources": {"requests": {"memory": 6e8}}}, "resources.requests.memory (6e+08) is above"),
    ({"activator": {"enabled": True, "resources": {"limits": {"cpu": "0.5e-1"}}}},
     "activator.resources.requests.cpu (100m) is above activator.resources.limits.cpu (0.5e-1)"),
    # Kubernetes' toleration rules: no key only with operator Exists, Exists without a value,
    # tolerationSeconds only with effect NoExecute
    ({"tolerations": [{"effect": "NoSchedule"}]}, "tolerations.0: operator is required"),
    ({"tolerations": [{"key": "a", "operator": "Exists", "value": "b"}]}, 'tolerations.0.value does not match: ""'),
    ({"tolerations": [{"key": "a", "tolerationSeconds": 60}]}, "tolerations.0: effect is required"),
    ({"tolerations": [{"key": "a", "operator": "In"}]}, "tolerations.0.operator must be one of the following"),
    ({"tolerations": [{"key": "a", "efect": "NoSchedule"}]}, "tolerations.0: Additional property efect is not allowed"),
    ({"activator": {"holdTimeoutSeconds": 0}}, "activator.holdTimeoutSeconds: Must be greater than or equal to 1"),
    ({"activator": {"responseTimeoutSeconds": -1}},
     "activator.responseTimeoutSeconds: Must be greater than or equal to 0"),
    ({"activator": {"routing": "random"}}, "activator.routing: activator.routing must be one of the following"),
    ({"activator": {"prefixLoadFactor": 0.8}}, "activator.prefixLoadFactor: Must be greater than or equal to 1"),
    ({"activator": {"port": 0}}, "activator.port: Must be greater than or equal to 1"),
    ({"activator": {"enabled": "yes"}}, "activator.enabled: Invalid type. Expected: boolean, given: string"),
    ({"activator": {"service": {"type": "ExternalName"}}},
     "activator.service.type: activator.service.type must be one of"),
    ({"activator": {"replicas": 2}}, "activator: Additional property replicas is not allowed"),
    ({"activator": {"maxHeld": 0}}, "activator.maxHeld: Must be greater than or equal to 1"),
    ({"activator": {"maxHeldMiB": 0}}, "activator.maxHeldMiB: Must be greater than or equal to 1"),
    ({"activator": {"maxBodyMiB": 0}}, "activator.maxBodyMiB: Must be greater than or equal to 1"),
    # the pods' user may be left to the platform (OpenShift), never root
    ({"podSecurityContext": {"runAsNonRoot": False}}, "podSecurityContext.runAsNonRoot must be one of the following"),
    ({"podSecurityContext": {"runAsNonRoot": None}}, "podSecurityContext: runAsNonRoot is required"),
    ({"podSecurityContext": {"runAsUser": 0}}, "podSecurityContext.runAsUser: Must be greater than or equal to 1"),
    ({"activator": {"podSecurityContext": {"runAsNonRoot": False}}},
     "activator.podSecurityContext.runAsNonRoot must be one of the following"),
]


@pytest.mark.parametrize("values,message", BAD_VALUES, ids=[m.split(":")[0] for _, m in BAD_VALUES])
def test_bad_values_are_refused_with_a_clear_message(tmp_path: Path, values: dict, message: str):
    for command in ("template", "lint"):
        args = (command, "fs", str(CHART)) if command == "template" else (command, str(CHART))
        done = helm(*args, values=values, tmp=tmp_path, check=False)
        assert done.returncode != 0, f"helm {command} accepted {values}"
        assert message in done.stdout + done.stderr, done.stdout + done.stderr


@pytest.mark.parametrize("url", [
    "http://prometheus-operated.monitoring.svc:9090", "https://thanos-querier.openshift-monitoring.svc:9091",
    "http://10.0.0.7", "http://[fd00::7]:9090/prom", "http://user:secret@prometheus:65535/a/b",
    "http://:9090", "http://prometheus:0", "http://prometheus:65536", "http://prometheus:99999",
    "http://prometheus:9o90", "https://@:443"])
def test_a_prometheus_url_the_chart_takes_is_one_the_operator_takes(tmp_path: Path, url: str):
    """The operator stops at start on a URL without a host or with a port that is no port (check_url): the
    schema refuses those rather than letting the operator crash-loop, and takes every URL the operator takes."""
    from foresail.checks import check_url

    try:
        check_url("FORESAIL_PROMETHEUS_URL", url)
        operator_takes = True
    except ValueError:
        operator_takes = False
    done = helm("template", "fs", str(CHART), values={"prometheus": {"url": url}}, tmp=tmp_path, check=False)
    if operator_takes:
        assert done.returncode == 0, done.stderr
        assert env_of([d for d in yaml.safe_load_all(done.stdout) if d])["FORESAIL_PROMETHEUS_URL"]["value"] == url
    else:
        assert done.returncode != 0 and "prometheus.url: Does not match pattern" in done.stderr, done.stderr


@pytest.mark.parametrize("value, taken", [
    ("team-a", True), ("a b\tc=d;e|f", True), ("", True),
    ("team-a\nX-Other: 1", False), ("a\rb", False), ("t\u00ebam-\u65e5", False)])
def test_a_header_the_chart_takes_reaches_prometheus(tmp_path: Path, value: str, taken: bool,
                                                    monkeypatch: pytest.MonkeyPatch):
    """prometheus.headers go to the operator in one variable; a value the chart takes arrives at Prometheus as it
    is; one it refuses (a line break, a character beyond ASCII: requests cannot send it, every query failed) the
    operator refuses too, at start."""
    import http.server
    import threading

    from foresail_operator.config import OperatorConfig
    from foresail_operator.metrics import PrometheusSource

    received: list[str | None] = []

    class Prometheus(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            received.append(self.headers.get("X-Scope-OrgID"))
            body = b'{"status": "success", "data": {"resultType": "vector", "result": []}}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    done = helm("template", "fs", str(CHART), values={"prometheus": {"url": "", "headers": {"X-Scope-OrgID": value}}},
                tmp=tmp_path, check=False)
    headers = f"X-Scope-OrgID={value}"
    if taken:
        assert done.returncode == 0, done.stderr
        headers = env_of([d for d in yaml.safe_load_all(done.stdout) if d])["FORESAIL_PROMETHEUS_HEADERS"]["value"]
    else:
        assert done.returncode != 0 and "prometheus.headers.X-Scope-OrgID: Does not match pattern" in done.stderr
    monkeypatch.setenv("FORESAIL_PROMETHEUS_HEADERS", headers)
    if not taken:
        with pytest.raises(ValueError, match="a header value is printable ASCII"):
            OperatorConfig.from_env()
        return
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Prometheus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        source = PrometheusSource(f"http://127.0.0.1:{server.server_address[1]}",
                                  headers=OperatorConfig.from_env().prometheus_headers)
        assert source._query("up") == [] and received == [value.strip()]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("resources", [
    {"requests": {"memory": "512Mi"}, "limits": {"memory": "0.5Gi"}},
    {"requests": {"memory": 536870912}, "limits": {"memory": "512Mi"}},
    {"requests": {"memory": "1e6"}, "limits": {"memory": 1000000}},
    {"requests": {"cpu": "300m"}, "limits": {"cpu": "0.3"}},
    {"requests": {"cpu": "0.3"}, "limits": {"cpu": "300m"}},
    {"requests": {"cpu": "1500m"}, "limits": {"cpu": "1.5e0"}},
    {"requests": {"cpu": ".1", "ephemeral-storage": "1G"}, "limits": {"cpu": "100000u", "ephemeral-storage": "1Gi"}}])
def test_a_request_up_to_its_limit_is_taken_however_spelt(tmp_path: Path, resources: dict) -> None:
    """The check of a request against its limit (BAD_VALUES) compares quantities, not their spelling."""
    for key in ("resources", "activator"):
        values = {"resources": resources} if key == "resources" else {"activator": {"enabled": True,
                                                                                   "resources": resources}}
        objects = render(tmp_path, values)
        deployment = find(objects, "Deployment", "fs-foresail" if key == "resources" else "fs-foresail-activator")[0]
        taken = deployment["spec"]["template"]["spec"]["containers"][0]["resources"]
        assert all(set(given) <= set(taken[kind]) for kind, given in resources.items()), taken


@pytest.mark.parametrize("sets, refused", [
    (["operator.collectPeriodSeconds=7.5", "operator.forecastStepSeconds=30.5", "activator.prefixLoadFactor=1.5"],
     None),
    (["operator.collectPeriodSeconds=0.5"], "operator.collectPeriodSeconds (0.5) must be from 1 to 600 seconds"),
    (["operator.forecastStepSeconds=3600.5"], "operator.forecastStepSeconds (3600.5) must be from 1 to 3600 seconds"),
    (["activator.prefixLoadFactor=0.9"], "activator.prefixLoadFactor (0.9) must be at least 1"),
    (["activator.prefixLoadFactor=1.5x"], "activator.prefixLoadFactor: Does not match pattern")])
def test_a_decimal_value_given_with_set_is_taken_within_its_range(tmp_path: Path, sets: list[str], refused: str | None,
                                                                 monkeypatch: pytest.MonkeyPatch):
    """`helm --set` passes 7.5 as a string (only whole numbers become numbers): the chart takes it as the number it
    is, as the operator and the activator do, and refuses one out of their range as it does a number."""
    import argparse

    from foresail_operator import activator_cli
    from foresail_operator.config import OperatorConfig

    args = [a for s in ["activator.enabled=true", *sets] for a in ("--set", s)]
    done = helm("template", "fs", str(CHART), *args, tmp=tmp_path, check=False)
    if refused:
        assert done.returncode != 0 and refused in done.stderr, done.stderr
        return
    assert done.returncode == 0, done.stderr
    objects = [d for d in yaml.safe_load_all(done.stdout) if d]
    for name in [n for n in os.environ if n.startswith("FORESAIL_")]:
        monkeypatch.delenv(name)
    for name, item in env_of(find(objects, "Deployment", "fs-foresail")).items():
        if "value" in item:
            monkeypatch.setenv(name, item["value"])
    config = OperatorConfig.from_env()
    assert (config.collect_period_s, config.forecast_step_s) == (7.5, 30.5)
    parser = argparse.ArgumentParser(exit_on_error=False)
    activator_cli.add_arguments(parser)
    [activator] = find(objects, "Deployment", "fs-foresail-activator")
    assert parser.parse_args(activator["spec"]["template"]["spec"]["containers"][0]["args"]).prefix_load_factor == 1.5


def test_every_value_is_described_and_has_a_default() -> None:
    """values.schema.json describes each value it knows (editors show it), and values.yaml, which gives each
    its default, names the same ones."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    undescribed: list[str] = []
    without_default: list[str] = []
    unknown: list[str] = []

    def walk(node: dict, values: dict, path: str) -> None:
        known = node.get("properties", {})
        unknown.extend(path + key for key in values if key not in known)
        for key, sub in known.items():
            if not sub.get("description"):
                undescribed.append(path + key)
            if key not in values:
                without_default.append(path + key)
            elif "properties" in sub:
                walk(sub, values[key], f"{path}{key}.")

    walk(schema, defaults, "")
    assert len(undescribed) + len(without_default) + len(unknown) == 0, (undescribed, without_default, unknown)


def test_the_values_reference_names_every_value() -> None:
    """docs/install.md's values reference names each value, or a value above it (`resources`); a cell may
    shorten the next names to their last part (`prometheus.caConfigMap.name`, `.key`)."""
    reference = (ROOT / "docs" / "install.md").read_text().split("## Values reference", 1)[1]
    named: set[str] = set()
    for row in (line for line in reference.splitlines() if line.startswith("| `")):
        previous = ""
        for name in re.findall(r"`([^`]+)`", row.split("|")[1]):
            previous = previous.rsplit(".", 1)[0] + name if name.startswith(".") else name
            named.add(previous)
    unnamed: list[str] = []

    def walk(node: dict, path: str) -> None:
        for key, sub in node.get("properties", {}).items():
            parts = f"{path}{key}".split(".")
            if "properties" in sub:
                walk(sub, f"{path}{key}.")
            elif not any(".".join(parts[:i]) in named for i in range(1, len(parts) + 1)):
                unnamed.append(f"{path}{key}")

    walk(json.loads((CHART / "values.schema.json").read_text()), "")
    assert unnamed == []


def scrape_configs(objects: list[dict]) -> list[dict]:
    configmap = find(objects, "ConfigMap", "fs-foresail-scrape-config")[0]
    return yaml.safe_load(configmap["data"]["scrape-configs.yaml"])


def relabel(labels: dict[str, str], rules: list[dict]) -> dict[str, str] | None:
    """Prometheus' relabeling (keep and replace, with its defaults); None when the target is dropped.

    Debian's Prometheus is built without Kubernetes discovery, so the rules are applied here to the
    discovery labels Prometheus documents for role: pod.
    """
    labels = dict(labels)
    for rule in rules:
        value = rule.get("separator", ";").join(labels.get(n, "") for n in rule["source_labels"])
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        action = rule.get("action", "replace")
        if action == "keep":
            if not match:
                return None
        elif action == "replace":
            if match:
                labels[rule["target_label"]] = match.expand(rule.get("replacement", "$1").replace("$", "\\"))
        else:
            raise AssertionError(f"relabel action {action} is not modelled here")
    return {k: v for k, v in labels.items() if not k.startswith("__") and v}


def discovered(pod: dict, namespace: str, port: str) -> dict[str, str]:
    """The __meta_kubernetes_* labels of one pod port target (role: pod)."""
    def clean(key: str) -> str:
        return re.sub(r"[^a-zA-Z0-9_]", "_", key)
    meta = pod["metadata"]
    labels = {"__meta_kubernetes_namespace": namespace, "__meta_kubernetes_pod_name": "pod-0",
              "__meta_kubernetes_pod_container_port_name": port}
    labels |= {f"__meta_kubernetes_pod_label_{clean(k)}": v for k, v in meta.get("labels", {}).items()}
    labels |= {f"__meta_kubernetes_pod_annotation_{clean(k)}": v for k, v in (meta.get("annotations") or {}).items()}
    return labels


def test_scrape_config_and_pod_monitor_give_the_labels_the_operator_groups_by(tmp_path: Path):
    objects = render(tmp_path, EVERYTHING)
    inference, operator = scrape_configs(objects)
    assert inference["kubernetes_sd_configs"] == [{"role": "pod", "namespaces": {"names": ["team-a"]}}]
    produced = {r["target_label"]: r["source_labels"] for r in inference["relabel_configs"] if "target_label" in r}
    assert produced["namespace"] == ["__meta_kubernetes_namespace"]
    assert produced["llmdeployment"] == ["__meta_kubernetes_pod_label_foresail_dev_llmdeployment"]
    keeps = {r["source_labels"][0]: r["regex"] for r in inference["relabel_configs"] if r.get("action") == "keep"}
    assert keeps["__meta_kubernetes_pod_annotation_prometheus_io_scrape"] == "true"
    assert keeps["__meta_kubernetes_pod_label_app_kubernetes_io_managed_by"] == "foresail"
    assert operator["honor_labels"] is True  # its metrics carry the LLMDeployment's namespace

    monitors = {m["metadata"]["name"]: m for m in find(objects, "PodMonitor")}
    pods = monitors["fs-foresail-inference"]
    assert pods["metadata"]["labels"]["release"] == "kps"
    assert pods["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/managed-by": "foresail"}}
    assert pods["spec"]["namespaceSelector"] == {"matchNames": ["team-a"]}
    endpoint = pods["spec"]["podMetricsEndpoints"][0]
    assert (endpoint["port"], endpoint["interval"]) == ("http", "30s")
    monitor_produced = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"] if "targetLabel" in r}
    assert monitor_produced == {k: produced[k] for k in ("namespace", "llmdeployment")}
    assert monitors["fs-foresail-operator"]["spec"]["podMetricsEndpoints"][0]["honorLabels"] is True


def test_scrape_config_gives_each_pod_the_labels_the_operator_groups_by(tmp_path: Path):
    """Inference pods (as the operator plans them) get `namespace` and `llmdeployment`; the
    operator pod is scraped by its own job; neither is scraped twice."""
    from foresail_operator import plan
    from foresail_operator.runtimes import RUNTIMES
    from foresail_operator.spec import parse_spec

    objects = render(tmp_path, EVERYTHING)
    inference_job, operator_job = scrape_configs(objects)
    inference_pod = plan.pod_template("chat", parse_spec({"model": {"source": "builtin:tiny"}}), RUNTIMES["vllm"])
    operator_pod = the(objects, "Deployment")["spec"]["template"]
    inference = discovered(inference_pod, "team-a", "http")
    operator = discovered(operator_pod, RELEASE_NS, "metrics")

    labels = relabel(inference, inference_job["relabel_configs"])
    assert labels is not None and (labels["namespace"], labels["llmdeployment"]) == ("team-a", "chat")
    assert relabel(operator, inference_job["relabel_configs"]) is None
    assert relabel(operator, operator_job["relabel_configs"]) is not None
    assert relabel(inference, operator_job["relabel_configs"]) is None
    assert relabel(discovered(operator_pod, RELEASE_NS, "health"), operator_job["relabel_configs"]) is None

    # The PodMonitor's relabelings (in the Prometheus Operator's spelling) give the same labels.
    monitor = find(objects, "PodMonitor", "fs-foresail-inference")[0]["spec"]["podMetricsEndpoints"][0]
    rules = [{"source_labels": r["sourceLabels"], "target_label": r.get("targetLabel"),
              **({"regex": r["regex"]} if "regex" in r else {}), "action": r.get("action", "replace")}
             for r in monitor["relabelings"]]
    monitor_labels = relabel(inference, rules)
    assert monitor_labels is not None
    assert (monitor_labels["namespace"], monitor_labels["llmdeployment"]) == ("team-a", "chat")


def known_metrics() -> set[str]:
    """Every series name the dashboard may use: the operator's, the activator's and the vLLM-compatible pods'."""
    from prometheus_client.metrics import MetricWrapperBase

    from foresail_operator import activator, telemetry
    from foresail_operator.runtimes import RUNTIMES

    names: set[str] = set()
    suffixes_of: dict[str | None, list[str]] = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
    for value in [*vars(telemetry).values(), *vars(activator).values()]:
        for metric in value.values() if isinstance(value, dict) else [value]:  # one gauge per demand unit
            if not isinstance(metric, MetricWrapperBase):
                continue
            names |= {metric._name + s for s in suffixes_of.get(metric._type, [""])}
    for name in RUNTIMES["vllm"].metrics.values():
        if name:
            names |= {name, name + "_bucket", name + "_sum", name + "_count"}
    return names


def test_dashboard_is_shipped_and_uses_only_real_metrics(tmp_path: Path):
    objects = render(tmp_path)
    dashboard = json.loads(find(objects, "ConfigMap", "fs-foresail-dashboard")[0]["data"]["foresail.json"])
    assert find(objects, "ConfigMap", "fs-foresail-dashboard")[0]["metadata"]["labels"]["grafana_dashboard"] == "1"
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {m for e in exprs for m in re.findall(r"\b(foresail_[a-z_]+|vllm:[a-z_]+)", e)}
    assert used and used <= known_metrics(), used - known_metrics()
    titles = " ".join(p["title"].lower() for p in dashboard["panels"])
    for topic in ("demand", "forecast", "replicas", "time to first token", "cold start", "activator"):
        assert topic in titles, topic
    for needed in ("foresail_forecast_requests_per_second", "foresail_desired_replicas",
                   "foresail_cold_start_seconds", "vllm:time_to_first_token_seconds_bucket",
                   "vllm:request_success_total", "foresail_capacity_requests_per_second",
                   "foresail_forecast_tokens_per_second", "foresail_activator_arrivals_total",
                   "foresail_activator_held_requests", "foresail_forecast_coverage", "foresail_forecast_quantile"):
        assert needed in used, needed
    for expr in exprs:  # every per-deployment query follows the dashboard's variables
        if "llmdeployment" in expr:
            assert 'llmdeployment=~"$llmdeployment"' in expr, expr


def test_alerting_rules_ship_as_a_prometheus_rule_and_in_the_scrape_config(tmp_path: Path):
    """The rules file (tests/chart/test_alerts.py tests its alerts) as the PrometheusRule's spec, with the
    labels Prometheus selects rules by, and for a plain Prometheus in the scrape-config ConfigMap."""
    rules = yaml.safe_load((CHART / "rules" / "foresail.rules.yaml").read_text())
    objects = render(tmp_path, EVERYTHING)
    rule = the(objects, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kps" and rule["spec"] == rules
    config = find(objects, "ConfigMap", "fs-foresail-scrape-config")[0]["data"]
    assert yaml.safe_load(config["foresail.rules.yaml"]) == rules
    assert {j["job_name"] for j in yaml.safe_load(config["scrape-configs.yaml"])} >= {"foresail-inference"}
    assert not find(render(tmp_path), "PrometheusRule")  # off by default: it needs the Prometheus Operator


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus (make install)")
def test_every_dashboard_query_is_valid_promql_for_a_real_prometheus(tmp_path: Path):
    """The dashboard's queries, with its variables set to match everything, as a real Prometheus parses
    and evaluates them (a typo in a function, a label list or a range would fail here, not in Grafana)."""
    dashboard = json.loads((CHART / "dashboards" / "foresail.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    with PrometheusServer(tmp_path) as prometheus:
        for expr in exprs:
            query = expr.replace("$namespace", ".*").replace("$llmdeployment", ".*")
            answer = requests.get(f"{prometheus.url}/api/v1/query", params={"query": query}, timeout=10).json()
            assert answer["status"] == "success", (expr, answer.get("error"))
    assert len(exprs) >= 20


def test_network_policy_allows_scrapes_dns_api_prometheus_and_the_inference_pods_only(tmp_path: Path):
    policy = the(render(tmp_path, EVERYTHING), "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "metrics", "protocol": "TCP"}],
                                          "from": EVERYTHING["networkPolicy"]["metricsFrom"]}]
    anywhere = sorted((p["port"], p["protocol"]) for rule in policy["spec"]["egress"] if "to" not in rule
                      for p in rule["ports"])
    assert anywhere == [(53, "TCP"), (53, "UDP"), (443, "TCP"), (6443, "TCP"), (9090, "TCP")]
    # the pods' own /metrics, read before a scale-down: only the inference pods' port, only to them
    [inference] = [rule for rule in policy["spec"]["egress"] if "to" in rule and rule != DNS_ON_OPENSHIFT]
    assert inference == {"ports": [{"port": 8000, "protocol": "TCP"}], "to": [{
        "podSelector": {"matchLabels": {"app.kubernetes.io/managed-by": "foresail"}}, "namespaceSelector": {
            "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["team-a"]}]}}]}


# OpenShift's cluster DNS (namespace openshift-dns): its Service dns-default maps 53 to the CoreDNS pods' 5353
DNS_ON_OPENSHIFT = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "openshift-dns"}}}],
                    "ports": [{"port": 5353, "protocol": "UDP"}, {"port": 5353, "protocol": "TCP"}]}


def peer_matches(peer: dict, namespace: str, pod_labels: dict[str, str], policy_namespace: str) -> bool:
    """A NetworkPolicy peer (no ipBlock) against a pod: a namespaceSelector on the namespace's labels (only
    kubernetes.io/metadata.name here), a podSelector on the pod's, without a namespaceSelector the policy's own."""
    def selects(selector: dict, labels: dict[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items()) and all(
            (labels.get(e["key"]) in e["values"]) == (e["operator"] == "In") for e in selector.get("matchExpressions")
            or [])

    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], {"kubernetes.io/metadata.name": namespace}):
            return False
    elif namespace != policy_namespace:
        return False
    return "podSelector" not in peer or selects(peer["podSelector"], pod_labels)


def egress_allowed(policy: dict, namespace: str, pod_labels: dict[str, str], port: int, protocol: str) -> bool:
    """Whether a NetworkPolicy lets its pods open a connection to that pod's port, as Kubernetes defines it: some
    egress rule whose peers (none: anywhere) and ports (none: any) both match; the port is the pod's, the one a
    Service's targetPort maps to."""
    return any((not rule.get("to") or any(peer_matches(peer, namespace, pod_labels, policy["metadata"]["namespace"])
                                          for peer in rule["to"]))
               and (not rule.get("ports") or any(p.get("port") == port and p.get("protocol", "TCP") == protocol
                                                 for p in rule["ports"]))
               for rule in policy["spec"]["egress"])


@pytest.mark.parametrize("namespaces", [[], ["team-a"]])
def test_the_network_policies_let_the_operator_and_the_activator_resolve_names_on_kubernetes_and_openshift(
        tmp_path: Path, namespaces: list[str]) -> None:
    """Both look Services up by name (Prometheus, {name}.{namespace}.svc): the cluster DNS is CoreDNS on 53 in
    kube-system, or, on OpenShift, CoreDNS pods on 5353 in openshift-dns behind dns-default's 53, and a policy
    matches the pod's port. Port 53 alone dropped every lookup on OpenShift."""
    objects = render(tmp_path, {"networkPolicy": {"enabled": True}, "activator": {"enabled": True},
                                "watchNamespaces": namespaces})
    policies = find(objects, "NetworkPolicy")
    assert len(policies) == 2
    coredns = {"k8s-app": "kube-dns"}
    openshift_dns = {"dns.operator.openshift.io/daemonset-dns": "default"}
    for policy in policies:
        for protocol in ("UDP", "TCP"):
            assert egress_allowed(policy, "kube-system", coredns, 53, protocol)
            assert egress_allowed(policy, "openshift-dns", openshift_dns, 5353, protocol)
            assert not egress_allowed(policy, "team-b", {}, 5353, protocol)  # 5353 to OpenShift's DNS only
        assert egress_allowed(policy, "team-a", {"app.kubernetes.io/managed-by": "foresail"}, 8000, "TCP")
        assert not egress_allowed(policy, "team-a", {"app": "other"}, 8000, "TCP")
