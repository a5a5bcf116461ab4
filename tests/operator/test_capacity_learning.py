"""The decision loop learns per-replica capacity from the pods' saturation signals, read from Prometheus.

The metrics path is the operator's own (`PrometheusSource` over HTTP, `Collector`, `step` in advisory
mode), against `FakePrometheus` (tests/reliability/fake_prometheus.py, checked against a real Prometheus
there) told to report a KV cache 96 % full: 1.5 req/s on 3 ready replicas, nothing queued, TTFT in SLO.
"""

from __future__ import annotations

import logging

import pytest

from foresail_operator.autoscaler import Loop
from foresail_operator.spec import LLMDeploymentSpec, parse_spec
from tests.operator.advisory import KEY, decisions


def spec(**slo: float) -> LLMDeploymentSpec:
    """An advisory spec whose SLO block is ``capacityPerReplica: 1`` plus ``slo``."""
    return parse_spec({"model": {"source": "builtin:tiny"}, "minReplicas": 1, "maxReplicas": 10,
                       "autoscaling": {"mode": "advisory", "intervalSeconds": 5,
                                       "slo": {"capacityPerReplica": 1, **slo}}})


SPEC = spec()


async def cache_at(usage: str, logger: logging.Logger, llmd: LLMDeploymentSpec = SPEC) -> Loop:
    """Six decisions with the pods' KV cache at ``usage``."""
    loop, _ = await decisions(llmd, n=6, values={"kv_cache": usage}, logger=logger)
    return loop


async def test_a_nearly_full_kv_cache_lowers_capacity_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.capacity")
    with caplog.at_level(logging.INFO, logger="test.capacity"):
        loop = await cache_at("0.96", logger)
    capacity = loop.view["fields"]["capacity"]
    learned = 1.5 / 3 * 0.8 / 0.96  # the load per replica, scaled to 80 % of the cache
    assert capacity["perReplica"] == pytest.approx(learned, rel=0.01), capacity
    assert capacity["source"] == "learned from 6 saturated scrapes" and capacity["kvCacheUsage"] == 0.96
    assert loop.view["fields"]["recommendedReplicas"] == 4  # 1.5 req/s at 0.417 each; the spec's 1 said 2
    assert "default/tiny: capacity per replica 1 -> 0.417 req/s (learned from 5 saturated scrapes)" in caplog.text


async def test_a_cache_with_room_keeps_the_spec_capacity(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.capacity")
    with caplog.at_level(logging.INFO, logger="test.capacity"):
        loop = await cache_at("0.5", logger)
    capacity = loop.view["fields"]["capacity"]
    assert capacity == {"perReplica": 1.0, "source": "spec (slo.capacityPerReplica)", "kvCacheUsage": 0.5,
                        "unit": "requests", "initial": 1.0, "samples": 0,
                        "basis": "foresail/builtin:tiny x0 nvidia.com/gpu "
                                 "ghcr.io/foresail-dev/foresail-inference:0.1.0"}
    assert loop.view["fields"]["recommendedReplicas"] == 3  # the stabilisation window keeps the 3 found
    assert "capacity per replica" not in caplog.text
    await decisions(SPEC, loop=loop, series=False)  # the pods stop reporting: the figure goes, none stale
    assert loop.view["fields"]["capacity"]["kvCacheUsage"] is None


@pytest.mark.parametrize(("threshold", "learned"), [(0.9, 1.5 / 3 * 0.9 / 0.96), (1.0, None)])
async def test_the_spec_sets_the_kv_cache_saturation_threshold(threshold: float, learned: float | None) -> None:
    loop = await cache_at("0.96", logging.getLogger("test.capacity"), spec(kvCacheSaturation=threshold))
    capacity = loop.view["fields"]["capacity"]
    if learned is None:  # 1 turns the rule off: a full cache is not evidence
        assert capacity["perReplica"] == 1.0 and capacity["source"] == "spec (slo.capacityPerReplica)"
    else:
        assert capacity["perReplica"] == pytest.approx(learned, rel=0.01), capacity


def test_a_changed_slo_moves_the_thresholds_and_keeps_what_was_learned() -> None:
    loop = Loop(KEY, forecast_step_s=60.0)
    loop.configure(SPEC, None)
    assert loop.capacity is not None and (loop.capacity.ttft_slo_s, loop.capacity.kv_saturation) == (2.0, 0.8)
    for _ in range(5):
        loop.capacity.observe(1.5, waiting=0, ready_replicas=3, kv_cache=0.96)
    learned = loop.capacity.capacity
    loop.configure(spec(ttftSeconds=1.0, kvCacheSaturation=0.95), None)
    assert (loop.capacity.ttft_slo_s, loop.capacity.kv_saturation) == (1.0, 0.95)
    assert loop.capacity.capacity == learned < 1.0

