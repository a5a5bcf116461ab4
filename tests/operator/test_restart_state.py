"""What a restarted operator carries on from: the state the decision loop learned, kept in the status.

The status goes through the operator's own `refresh_status` and `KubeClient` to the Kubernetes API test
server, which prunes what the CRD's schema does not know, as a real API server does; the decisions are the
operator's own `step` against `FakePrometheus` (tests/operator/advisory.py), a new `Loop` standing for the
restarted process.
"""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import kopf
import pytest

from foresail_operator.autoscaler import Loop, backfill, capacity_basis
from foresail_operator.collector import Collector
from foresail_operator.kube import KubeClient
from foresail_operator.reconciler import refresh_status
from foresail_operator.spec import LLMDeploymentSpec, parse_spec
from tests.helpers import wait_for
from tests.operator.advisory import KEY, decisions
from tests.operator.conftest import LLMD, Operator
from tests.operator.test_capacity_learning import SPEC, cache_at, spec


async def written(cluster: Any, view: dict[str, Any]) -> dict[str, Any]:
    """The LLMDeployment as the API server keeps it once its status holds the decision loop's ``view``."""
    path = LLMD.format(ns="default") + "/tiny"
    cluster.kube.create(LLMD.format(ns="default"), {"apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment",
                                                    "metadata": {"name": "tiny"},
                                                    "spec": {"model": {"source": "builtin:tiny"}}})
    client = KubeClient(kopf.ConnectionInfo(server=cluster.url, insecure=True))
    try:
        await refresh_status(client, cluster.kube.get(path), None, [], autoscaler=view)
    finally:
        await client.close()
    return cluster.kube.get(path)


async def test_a_restarted_operator_carries_on_from_the_capacity_it_learned(cluster, caplog) -> None:
    """A new loop starts from the learned figure: replicas sized by it may never saturate again to correct
    the spec's figure. Not where the spec's figure or the unit changed, nor from a garbled status."""
    learned = (await cache_at("0.96", logging.getLogger("test.capacity"))).view
    body = await written(cluster, learned)
    assert body["status"]["capacity"] == {**learned["fields"]["capacity"], "kvCacheUsage": 0.96}
    assert body["status"]["capacity"]["samples"] == 6 and body["status"]["capacity"]["unit"] == "requests"
    restarted, _ = await decisions(SPEC, body=body, values={"kv_cache": "0.5"})  # no evidence of saturation
    assert restarted.view["fields"]["capacity"]["perReplica"] == learned["fields"]["capacity"]["perReplica"]
    assert restarted.view["fields"]["capacity"]["source"] == "learned from 6 saturated scrapes"
    assert restarted.policy is not None and restarted.policy.config.capacity == pytest.approx(0.417, rel=0.01)
    with caplog.at_level(logging.INFO):
        await backfill(restarted, Collector(None), "foresail", logging.getLogger("test.capacity"))
    assert "default/tiny: capacity per replica 0.417 req/s, learned before from 6 saturated scrapes" in caplog.text
    saved = body["status"]["capacity"]
    for changed, status in ((spec(capacityPerReplica=2), body["status"]),
                            (SPEC, {"capacity": {**saved, "unit": "tokens"}}),
                            (SPEC, {"capacity": {**saved, "samples": "6"}}), (SPEC, {"capacity": "x"})):
        loop = Loop(KEY, forecast_step_s=60.0)
        loop.configure(changed, None, status)
        assert loop.capacity is not None and not loop.capacity.learned, (changed, status)


async def test_a_restarted_operator_carries_on_from_the_slo_governors_multiplier(cluster) -> None:
    """With an attainment target, a queue that cannot drain within the SLO raises the governor; a new loop
    starts from its multiplier rather than from 1, which would take minutes of misses to climb back."""
    governed = parse_spec({"model": {"source": "builtin:tiny"}, "minReplicas": 1, "maxReplicas": 100,
                           "autoscaling": {"mode": "advisory", "intervalSeconds": 5,
                                           "slo": {"capacityPerReplica": 1, "attainmentTarget": 0.99}}})
    loop = Loop(KEY, forecast_step_s=60.0)
    loop.configure(governed, None)
    assert loop.policy is not None
    loop.policy.resume_governor(1.8)  # as after minutes of misses
    loop, _ = await decisions(governed, n=3, values={"waiting": "50"}, loop=loop)  # 50 queued: 3 misses more
    multiplier = loop.view["fields"]["sloGovernor"]
    assert multiplier == pytest.approx(1.8 * 1.0125, abs=0.01)
    body = await written(cluster, loop.view)
    assert body["status"]["sloGovernor"] == multiplier
    restarted, decision = await decisions(governed, body=body)  # nothing queued now
    assert restarted.policy is not None and restarted.policy.governor == pytest.approx(multiplier, rel=0.001)
    assert "SLO governor" in decision.reason, decision.reason
    fresh = Loop(KEY, forecast_step_s=60.0)
    fresh.configure(SPEC, None, body["status"])  # no attainment target: nothing to carry on
    assert fresh.policy is not None and fresh.policy.governor == 1.0
    assert (await decisions(SPEC, loop=fresh))[0].view["fields"]["sloGovernor"] is None


async def test_a_restarted_operator_carries_on_from_the_record_of_forecast_checks(cluster) -> None:
    """The share of recent forecasts the p90 covered (status.forecast) comes back, so a headroom widened
    after misses stays widened; not where the status counted demand in another unit."""
    loop = Loop(KEY, forecast_step_s=60.0)
    loop.configure(SPEC, None)
    assert loop.policy is not None
    loop.policy.resume_coverage(0.7, 60, 0.9)  # as after an hour of forecasts that fell short
    loop, _ = await decisions(SPEC, loop=loop)
    body = await written(cluster, loop.view)
    assert (body["status"]["forecast"]["coverage"], body["status"]["forecast"]["checked"]) == (0.7, 60)
    restarted, decision = await decisions(SPEC, body=body)
    assert restarted.policy is not None and restarted.policy.forecast_coverage() == (pytest.approx(0.7), 60)
    assert decision.headroom == pytest.approx(1.4)
    other = Loop(KEY, forecast_step_s=60.0)
    other.configure(SPEC, None, {**body["status"], "capacity": {**body["status"]["capacity"], "unit": "tokens"}})
    assert other.policy is not None and other.policy.forecast_coverage() is None


@pytest.mark.parametrize("garbled", [{"sloGovernor": "2"}, {"sloGovernor": True}, {"sloGovernor": float("inf")},
                                     {"forecast": {"coverage": "0.7", "checked": 60, "quantile": 0.9}},
                                     {"forecast": {"coverage": True}},
                                     {"forecast": {"quantile": None}},
                                     {"capacity": {"perReplica": "3", "samples": 6}},
                                     {"capacity": {"perReplica": 3.0, "samples": None}}])
def test_a_garbled_status_is_not_carried_on(garbled: dict[str, Any]) -> None:
    """A status someone edited by hand, or an older operator wrote: a figure that is not a finite number is
    left out, and the loop starts from the spec as before the restart state existed."""
    governed = parse_spec({"model": {"source": "builtin:tiny"},
                           "autoscaling": {"slo": {"capacityPerReplica": 1, "attainmentTarget": 0.99}}})
    good: dict[str, Any] = {"sloGovernor": 2.0, "forecast": {"coverage": 0.7, "checked": 60, "quantile": 0.9},
            "capacity": {"perReplica": 3.0, "samples": 6, "unit": "requests", "initial": 1.0}}
    status = {**good, **{k: {**good[k], **v} if isinstance(v, dict) else v for k, v in garbled.items()}}
    loop = Loop(KEY, forecast_step_s=60.0)
    loop.configure(governed, None, status)
    assert loop.policy is not None and loop.capacity is not None
    assert loop.policy.governor == (1.0 if "sloGovernor" in garbled else 2.0)
    assert (loop.policy.forecast_coverage() is None) == ("forecast" in garbled)
    assert loop.capacity.learned == ("capacity" not in garbled)


def edited(**changes: Any) -> LLMDeploymentSpec:
    """SPEC with other top-level spec fields: what a replica's capacity depends on, changed."""
    return parse_spec({"model": {"source": "builtin:tiny"}, "minReplicas": 1, "maxReplicas": 10,
                       "autoscaling": {"mode": "advisory", "intervalSeconds": 5, "slo": {"capacityPerReplica": 1}},
                       **changes})


OTHER_REPLICAS: dict[str, dict[str, Any]] = {  # the same LLMDeployment edited to replicas whose capacity differs
    "model": {"model": {"source": "Qwen/Qwen2.5-0.5B-Instruct"}},
    "revision": {"model": {"source": "builtin:tiny", "revision": "v2"}},
    "runtime": {"runtime": {"name": "vllm"}},
    "gpus": {"resources": {"gpus": 1}},
    "gpuResource": {"resources": {"gpus": 1, "gpuResource": "amd.com/gpu"}},
    "image": {"runtime": {"image": "ghcr.io/foresail-dev/foresail-inference:0.2.0"}},  # a new engine version
    "args": {"runtime": {"args": ["--max-num-seqs", "4"]}},  # fewer sequences batched at once
}


@pytest.mark.parametrize("change", [None, *OTHER_REPLICAS])
async def test_a_change_of_model_runtime_or_gpus_starts_capacity_learning_over(change: str | None) -> None:
    """Capacity learned on one model, runtime, image, args or GPU count says nothing of another's: the live loop
    starts from the spec's figure again when the spec changes any of them, and keeps what it learned otherwise."""
    loop = await cache_at("0.96", logging.getLogger("test.capacity"))
    assert loop.view["fields"]["capacity"]["source"] == "learned from 6 saturated scrapes"
    after = edited(**OTHER_REPLICAS[change]) if change else SPEC
    loop, decision = await decisions(after, loop=loop, values={"kv_cache": "0.5"})
    capacity = loop.view["fields"]["capacity"]
    assert capacity["basis"] == capacity_basis(after)
    if change is None:
        assert capacity["perReplica"] == pytest.approx(0.417, rel=0.01) and capacity["samples"] == 6
    else:
        assert capacity == {"perReplica": 1.0, "source": "spec (slo.capacityPerReplica)", "unit": "requests",
                            "initial": 1.0, "basis": capacity_basis(after), "samples": 0, "kvCacheUsage": 0.5}
        assert loop.policy is not None and loop.policy.config.capacity == 1.0
        assert decision.replicas == 3, decision.reason  # 1.5 req/s at 1 each asks 2; the window keeps the 3 found


async def test_a_restarted_operator_carries_capacity_on_only_for_the_same_model_runtime_and_gpus(cluster) -> None:
    """status.capacity.basis, kept through the CRD's schema, names what the figure was learned for: a restart
    onto a spec edited meanwhile starts from the spec's figure. A status without it, written by an operator
    before it was kept, or with one without the image and args, carries on (so an upgrade keeps what was learned).
    The image is the one the pods run: the operator's default for the runtime where the spec names none."""
    learned = (await cache_at("0.96", logging.getLogger("test.capacity"))).view
    body = await written(cluster, learned)
    assert body["status"]["capacity"]["basis"] == \
        "foresail/builtin:tiny x0 nvidia.com/gpu ghcr.io/foresail-dev/foresail-inference:0.1.0"
    for change, changes in OTHER_REPLICAS.items():
        restarted, _ = await decisions(edited(**changes), body=body, values={"kv_cache": "0.5"})
        assert restarted.view["fields"]["capacity"]["source"] == "spec (slo.capacityPerReplica)", change
    mirrored = Loop(KEY, forecast_step_s=60.0, images={"foresail": "mirror/foresail-inference:0.2.0"})
    restarted, _ = await decisions(SPEC, body=body, values={"kv_cache": "0.5"}, loop=mirrored)
    assert restarted.view["fields"]["capacity"]["source"] == "spec (slo.capacityPerReplica)"
    saved = body["status"]["capacity"]
    older = [{**body, "status": {"capacity": {k: v for k, v in saved.items() if k != "basis"}}},
             {**body, "status": {"capacity": {**saved, "basis": "foresail/builtin:tiny x0 nvidia.com/gpu"}}}]
    for status_body in (body, *older):
        restarted, _ = await decisions(SPEC, body=status_body, values={"kv_cache": "0.5"})
        assert restarted.view["fields"]["capacity"]["source"] == "learned from 6 saturated scrapes"


def test_the_basis_names_the_image_the_operators_configuration_gives(cluster, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The real operator process, its default image for the runtime configured (the chart's images.foresail): the
    basis names the image the pods run, so that a new default image starts capacity learning over."""
    image = "mirror.example/foresail-inference:0.2.0"
    monkeypatch.setenv("FORESAIL_IMAGE_FORESAIL", image)
    cluster.kube.create(LLMD.format(ns="default"), {
        "apiVersion": "foresail.dev/v1alpha1", "kind": "LLMDeployment", "metadata": {"name": "tiny"},
        "spec": {"model": {"source": "builtin:tiny"}, "autoscaling": {"mode": "predictive", "intervalSeconds": 5}}})
    op = Operator(cluster.kubeconfig, tmp_path / "operator.log", "--standalone").start()
    try:
        capacity = wait_for(lambda: ((cluster.kube.get(LLMD.format(ns="default") + "/tiny") or {}).get("status")
                                     or {}).get("capacity"), timeout=60, what="status.capacity")
        assert capacity["basis"] == f"foresail/builtin:tiny x0 nvidia.com/gpu {image}"
        deployment = cluster.kube.get("/apis/apps/v1/namespaces/default/deployments/tiny")
        assert deployment is not None and deployment["spec"]["template"]["spec"]["containers"][0]["image"] == image
    finally:
        op.kill(signal.SIGTERM)
