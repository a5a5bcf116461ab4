"""`helm install`, the documented CRD upgrade, `helm upgrade` and `helm uninstall` against the
Kubernetes API test server, step by step as docs/install.md tells users to."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

from foresail.kubetest.testing import start_apiserver
from tests.chart.helm import CHART, RELEASE, RELEASE_NS, helm_binary
from tests.helpers import Kube, kubectl

CRD = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/llmdeployments.foresail.dev"
DEPLOYMENT = f"/apis/apps/v1/namespaces/{RELEASE_NS}/deployments/{RELEASE}-foresail"


def run_helm(server, tmp: Path, *args: str, values: dict | None = None) -> str:
    """helm against the test server (--disable-openapi-validation: the server has no OpenAPI)."""
    extra = []
    if values is not None:
        (tmp / "values.yaml").write_text(yaml.safe_dump(values))
        extra = ["-f", str(tmp / "values.yaml")]
    env = dict(server.env(), HELM_CACHE_HOME=str(tmp / "c"), HELM_CONFIG_HOME=str(tmp / "g"),
               HELM_DATA_HOME=str(tmp / "d"))
    done = subprocess.run([helm_binary(), *args, *extra], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, f"helm {' '.join(args)}: {done.stderr}"
    return done.stdout


def test_install_upgrade_uninstall(tmp_path: Path):
    with start_apiserver(tmp_path / "api", simulate_pods=False) as server:
        kube = Kube(server.url)
        for name in (RELEASE_NS, "team-a", "team-b"):  # (--create-namespace needs OpenAPI)
            kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

        notes = run_helm(server, tmp_path, "install", RELEASE, str(CHART), "-n", RELEASE_NS,
                         "--disable-openapi-validation", values={"watchNamespaces": ["team-a"]})
        assert "It manages LLMDeployments in: team-a." in notes
        assert f"rollout status deployment/{RELEASE}-foresail" in notes
        assert "WARNING: prometheus.url is not set" in notes
        assert kube.read(CRD)["spec"]["names"]["kind"] == "LLMDeployment"
        assert kube.read(DEPLOYMENT)["spec"]["replicas"] == 2
        assert kube.get("/apis/kopf.dev/v1/namespaces/team-a/kopfpeerings/foresail")
        assert kube.get("/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/roles/fs-foresail")

        # Upgrade, CRDs first. Make the live CRD an "older" one, then apply the chart's as documented.
        version = kube.read(CRD)["spec"]["versions"][0]
        kube.merge(CRD, {"spec": {"versions": [{**version, "additionalPrinterColumns": []}]}})
        assert not kube.read(CRD)["spec"]["versions"][0]["additionalPrinterColumns"]
        kubectl(server.kubeconfig, "apply", "--server-side", "--force-conflicts", "--validate=false",
                "-f", str(CHART / "crds"))
        chart_crd = yaml.safe_load((CHART / "crds" / "llmdeployment.yaml").read_text())
        assert kube.read(CRD)["spec"]["versions"][0]["additionalPrinterColumns"] \
            == chart_crd["spec"]["versions"][0]["additionalPrinterColumns"]

        run_helm(server, tmp_path, "upgrade", RELEASE, str(CHART), "-n", RELEASE_NS, "--disable-openapi-validation",
                 values={"watchNamespaces": ["team-a", "team-b"], "replicaCount": 3,
                         "prometheus": {"url": "http://prometheus.monitoring.svc:9090"}})
        deployment = kube.read(DEPLOYMENT)
        assert deployment["spec"]["replicas"] == 3
        env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["FORESAIL_NAMESPACES"] == "team-a,team-b"
        assert env["FORESAIL_PROMETHEUS_URL"] == "http://prometheus.monitoring.svc:9090"
        assert kube.get("/apis/rbac.authorization.k8s.io/v1/namespaces/team-b/roles/fs-foresail")
        assert kube.get("/apis/kopf.dev/v1/namespaces/team-b/kopfpeerings/foresail")

        run_helm(server, tmp_path, "uninstall", RELEASE, "-n", RELEASE_NS)
        assert kube.get(DEPLOYMENT) is None
        assert kube.get("/apis/rbac.authorization.k8s.io/v1/namespaces/team-a/roles/fs-foresail") is None
        assert kube.get("/apis/rbac.authorization.k8s.io/v1/clusterroles/fs-foresail-cluster") is None
        assert kube.get("/apis/kopf.dev/v1/namespaces/team-b/kopfpeerings/foresail") is None
        assert kube.get(CRD) is not None  # helm keeps CRDs: deleting them is a deliberate step


def test_install_with_names_yaml_reads_as_numbers_or_booleans(tmp_path: Path):
    """helm takes the release name 123, and Kubernetes the namespaces 123 and on: unquoted, YAML reads them as a
    number and a boolean, and helm could not decode its own manifest ("ReadString: expects \" or n")."""
    with start_apiserver(tmp_path / "api", simulate_pods=False) as server:
        kube = Kube(server.url)
        for name in ("7", "123", "on"):
            kube.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
        run_helm(server, tmp_path, "install", "123", str(CHART), "-n", "7", "--disable-openapi-validation",
                 values={"watchNamespaces": ["123", "on"], "fullnameOverride": "fs", "serviceAccount": {"name": "0"},
                         "prometheus": {"url": "", "bearerTokenSecret": {"name": "1", "key": "2"}},
                         "activator": {"enabled": True}, "monitoring": {"scrapeConfig": {"enabled": True}}})
        deployment = kube.read("/apis/apps/v1/namespaces/7/deployments/fs")
        assert deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"] == "123"
        pod = deployment["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == "0"
        token = next(e for e in pod["containers"][0]["env"] if e["name"] == "FORESAIL_PROMETHEUS_TOKEN")
        assert token["valueFrom"]["secretKeyRef"] == {"name": "1", "key": "2"}
        activator = kube.read("/apis/apps/v1/namespaces/7/deployments/fs-activator")
        assert activator["spec"]["template"]["spec"]["containers"][0]["args"][-4:] == \
            ["--namespace", "123", "--namespace", "on"]
        for namespace in ("123", "on"):
            assert kube.get(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles/fs")
            assert kube.get(f"/apis/kopf.dev/v1/namespaces/{namespace}/kopfpeerings/foresail")
        scrape = yaml.safe_load(kube.read("/api/v1/namespaces/7/configmaps/fs-scrape-config")["data"]
                                ["scrape-configs.yaml"])
        operator_job = next(job for job in scrape if job["job_name"] == "foresail-operator")
        assert operator_job["kubernetes_sd_configs"][0]["namespaces"]["names"] == ["7"]
        assert {"source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_instance"], "regex": "123",
                "action": "keep"} in operator_job["relabel_configs"]


def test_the_notes_warn_of_a_prometheus_port_the_network_policy_leaves_out(tmp_path: Path):
    """docs/install.md's thanos-querier on 9091 with networkPolicy.enabled: the operator's NetworkPolicy let it reach
    443, 6443 and 9090 only, so every Prometheus read timed out, and nothing at install said why."""
    url = "https://thanos-querier.openshift-monitoring.svc:9091"
    with start_apiserver(tmp_path / "api", simulate_pods=False) as server:
        Kube(server.url).create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                       "metadata": {"name": RELEASE_NS}})
        notes = run_helm(server, tmp_path, "install", RELEASE, str(CHART), "-n", RELEASE_NS,
                         "--disable-openapi-validation",
                         values={"prometheus": {"url": url}, "networkPolicy": {"enabled": True}})
        assert "WARNING: prometheus.url names port 9091, which networkPolicy.egressPorts (443, 6443, 9090)" in notes
        for values in ({"prometheus": {"url": url}, "networkPolicy": {"enabled": True, "egressPorts": [443, 9091]}},
                       {"prometheus": {"url": url}},  # no NetworkPolicy
                       {"prometheus": {"url": "http://prometheus-operated.monitoring.svc:9090"},
                        "networkPolicy": {"enabled": True}},
                       {"prometheus": {"url": "https://prometheus.example.com/api"},
                        "networkPolicy": {"enabled": True}}):
            notes = run_helm(server, tmp_path, "upgrade", RELEASE, str(CHART), "-n", RELEASE_NS,
                             "--disable-openapi-validation", values=values)
            assert "Foresail" in notes and "names port" not in notes, values
