"""Time to first token over its SLO is evidence of a replica's capacity only while the replicas are loaded."""

import pytest

from foresail.autoscaler.capacity import CapacityModel


def test_a_slow_ttft_at_a_light_load_leaves_the_capacity_as_it_was():
    """0.2 req/s per replica against a spec of 10 (a slow prefill: TTFT 2.4 s over the 2-s SLO, no queue): the
    light load is not what the replica can serve. At 6 req/s per replica the same TTFT is."""
    m = CapacityModel(10.0, ttft_slo_s=2.0)
    for _ in range(10):
        m.observe(0.4, waiting=0.0, ready_replicas=2, ttft_p90=2.4, kv_cache=0.05)
    assert not m.learned and m.capacity == 10.0
    for _ in range(10):
        m.observe(12.0, waiting=0.0, ready_replicas=2, ttft_p90=2.4, kv_cache=0.05)
    assert m.learned and m.capacity == pytest.approx(6.0 * 2.0 / 2.4)


def test_a_full_kv_cache_is_evidence_at_any_load():
    """Long contexts fill the cache at few requests: that bounds what a replica serves, however light the load."""
    m = CapacityModel(10.0, ttft_slo_s=2.0, min_samples=1)
    m.observe(8.0, waiting=0.0, ready_replicas=2, ttft_p90=3.0, kv_cache=0.96)  # 4 per replica, 40 %
    assert m.capacity == pytest.approx(4.0 * 0.8 / 0.96)
