"""The capacity model's bounds: what it learns stays within [min_ratio, max_ratio] x the spec, and a restart
resumes a figure learned from exactly ``min_samples`` observations."""

import pytest

from foresail.autoscaler.capacity import CapacityModel


@pytest.mark.parametrize("per_replica, want", [(100.0, 8.0), (0.01, 0.5)])
def test_one_scrape_cannot_push_the_estimate_past_its_bounds(per_replica, want):
    """A saturated scrape far above or below the spec's 2 req/s is learned as 4x or 0.25x the spec at most."""
    m = CapacityModel(initial=2.0, min_samples=1)
    m.observe(throughput=2 * per_replica, waiting=3, ready_replicas=2)
    assert m.learned and m.capacity == pytest.approx(want)


def test_evidence_from_a_slow_ttft_or_a_full_cache_is_bounded_too():
    m = CapacityModel(initial=2.0, min_samples=1, ttft_slo_s=1.0)
    m.observe(throughput=4.0, waiting=0, ready_replicas=2, ttft_p90=100.0)  # 2 x 1/100 per replica
    assert m.capacity == pytest.approx(0.5)
    m = CapacityModel(initial=2.0, min_samples=1)
    m.observe(throughput=40.0, waiting=0, ready_replicas=1, kv_cache=0.9)  # 40 x 0.8/0.9 per replica
    assert m.capacity == pytest.approx(8.0)


def test_a_figure_learned_from_exactly_min_samples_resumes():
    m = CapacityModel(initial=2.0, min_samples=5)
    m.resume(3.0, 5)
    assert m.learned and m.capacity == 3.0


@pytest.mark.parametrize("throughput", [float("inf"), float("nan")])
def test_an_unreadable_throughput_is_no_evidence(throughput):
    m = CapacityModel(initial=2.0, min_samples=1)
    assert m.observe(throughput=throughput, waiting=3, ready_replicas=2) == 2.0
    assert not m.learned


@pytest.mark.parametrize("initial", [0.0, -1.0, float("nan")])
def test_a_capacity_that_is_not_positive_is_refused(initial):
    with pytest.raises(ValueError, match="positive"):
        CapacityModel(initial)
