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
