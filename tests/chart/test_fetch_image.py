"""runtimeImages.fetch: the image of the init container that downloads an http(s) model, mirrored like the runtime
images (air-gapped clusters cannot pull curlimages/curl from Docker Hub). The chart passes it as
FORESAIL_IMAGE_FETCH, and the real operator, with the chart's environment against the API test server, plans the init
container with it."""

from __future__ import annotations

import sys
from pathlib import Path

from foresail.demo.prometheus import free_port
from foresail.kubetest.testing import start_apiserver
from tests.chart.helm import RELEASE_NS, render
from tests.chart.test_rbac import install, operator_env
from tests.chart.test_render import env_of
from tests.helpers import ROOT, Kube, logged_process, wait_for

MIRROR = "registry.internal/mirror/curl:8.22.0"
DEPLOYMENTS = "/apis/apps/v1/namespaces/team-a/deployments"


def test_the_chart_sets_no_fetch_image_by_default(tmp_path: Path) -> None:
    assert "FORESAIL_IMAGE_FETCH" not in env_of(render(tmp_path))


def test_the_operator_downloads_a_model_with_the_fetch_image_of_the_chart(tmp_path: Path) -> None:
    values = {"runtimeImages": {"fetch": MIRROR},
              "operator": {"healthPort": free_port(), "metricsPort": free_port()}}
    objects = render(tmp_path, values)
    assert env_of(objects)["FORESAIL_IMAGE_FETCH"]["value"] == MIRROR
    with start_apiserver(tmp_path / "api", simulate_pods=True, ready_delay_s=0.2) as server:
        kube = Kube(server.url)
        install(kube, objects, [RELEASE_NS, "team-a"])
        with logged_process([sys.executable, "-m", "foresail", "operator"], tmp_path / "operator.log",
                            env=operator_env(objects, server.kubeconfig), cwd=ROOT):
            kube.create("/apis/foresail.dev/v1alpha1/namespaces/team-a/llmdeployments", {
                "apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "gguf"},
                "spec": {"model": {"source": "https://models.example.com/tiny.gguf"}, "runtime": {"name": "vllm"}}})
            deployment = wait_for(lambda: kube.get(f"{DEPLOYMENTS}/gguf"), timeout=30, what="the Deployment")
    (init,) = deployment["spec"]["template"]["spec"]["initContainers"]
    assert (init["name"], init["image"]) == ("fetch-model", MIRROR)
