"""Each baseline reproduces its documented behaviour on a step and on a spike.

The rate limits hold per run of the real controller (HPA every 15 s, KPA every 2 s, APA every 10 s): at the
default 60-s interval they compound over the 4, 30 and 6 runs in it, with the interval's metric.
"""

from itertools import pairwise

import numpy as np
import pytest

from foresail.autoscaler.policy import Observation
from foresail.backtest.baselines import APA, HPA, KPA, HoltWintersHPA, Static
from foresail.backtest.simulate import SimConfig

SIM = SimConfig(capacity=1.0, cold_start_s=0.0, slo_wait_s=10.0, interval_s=60.0, min_replicas=1)


def drive(policy, demand, start=1):
    """Feed a demand series, applying each decision at once (ready = provisioned); return the counts."""
    current, out = start, []
    dt = policy.sim.interval_s
    for k, d in enumerate(demand):
        current = policy.decide(Observation(k * dt, d, 0.0, current, current)).replicas
        out.append(current)
    return out


def test_hpa_step_up_at_once_down_after_300s_stabilisation():
    hpa = HPA(SIM, target_utilization=1.0)
    out = drive(hpa, [1.0] * 3 + [4.0] * 3 + [1.0] * 8)
    assert out[3] == 4  # ceil(4 / 1), at once
    assert out[6:10] == [4, 4, 4, 4]  # the highest recommendation of the last 300 s
    assert out[11] == 1


def test_hpa_tolerance_band():
    hpa = HPA(SIM, target_utilization=1.0)
    assert drive(hpa, [10.5], start=10) == [10]  # within 10 %: no change
    assert drive(HPA(SIM, target_utilization=1.0), [11.5], start=10) == [12]


def test_hpa_scale_up_rate_limit_per_15s_period():
    sim = SimConfig(capacity=1.0, cold_start_s=0.0, interval_s=15.0)
    hpa = HPA(sim, target_utilization=1.0)
    assert drive(hpa, [100.0], start=2) == [6]  # max(+4 pods, +100 %) in one period


def test_hpa_scale_up_limit_compounds_over_the_four_syncs_of_a_minute():
    """From 1 replica the real HPA reaches 5, 10, 20, 40 in one minute (it was 17: max(1 + 4 x 4, 1 x 2^4))."""
    assert drive(HPA(SIM, target_utilization=1.0), [100.0, 100.0], start=1) == [40, 100]  # then 80, 100


def test_hpa_spike_up_within_a_minute_and_held_for_the_300s_window():
    out = drive(HPA(SIM, target_utilization=1.0), [1.0] * 2 + [10.0] + [1.0] * 7)
    assert out[2] == 10  # 1 -> 5 -> 10 in two of the minute's syncs
    assert out[3:7] == [10] * 4 and out[7] == 1  # the spike's recommendation (t = 120 s) leaves at t = 420 s


@pytest.mark.parametrize("policy, counts", [
    (HPA, [6, 6, 6, 12, 12, 12, 24]),  # syncs at 0, 15, 30 s: x2 (or +4) each, none in between
    (APA, [4, 4, 8, 8, 10, 10, 10]),  # resyncs at 0, 10, 20 s
])
def test_an_interval_shorter_than_the_controller_period_is_limited_per_period_not_per_decision(policy, counts):
    sim = SimConfig(capacity=1.0, cold_start_s=0.0, interval_s=5.0)
    demand = 100.0 if policy is HPA else 10.0
    assert drive(policy(sim, target_utilization=1.0), [demand] * 7, start=2) == counts


def test_hpa_rate_limit_on_a_step_of_many_periods_does_not_overflow():
    sim = SimConfig(capacity=1.0, cold_start_s=0.0, interval_s=1e6, max_replicas=50)  # 66,667 periods of 15 s
    assert drive(HPA(sim, target_utilization=1.0), [100.0], start=2) == [50]


def test_kpa_spike_panics_and_does_not_scale_down_while_panicking():
    sim = SimConfig(capacity=1.0, cold_start_s=0.0, interval_s=2.0)  # Knative's own 2-s tick
    kpa = KPA(sim, target_utilization=1.0)
    demand = [2.0] * 40 + [20.0] * 3 + [2.0] * 40
    out = drive(kpa, demand, start=2)
    assert out[39] == 2
    assert max(out[40:43]) >= 10  # the panic window (6 s) sees the spike before the stable one does
    assert all(b >= a for a, b in pairwise(out[40:61]))  # no scale-down in panic (60 s)
    assert out[-1] < out[60]  # leaves panic after a full stable window and scales down


def test_kpa_scale_down_at_most_halves_per_2s_tick():
    sim = SimConfig(capacity=1.0, cold_start_s=0.0, interval_s=2.0)
    assert drive(KPA(sim, target_utilization=1.0), [1.0] * 4, start=16) == [8, 4, 2, 1]
    assert drive(KPA(SIM, target_utilization=1.0), [1.0], start=16) == [1]  # 30 ticks a minute (it was 8)


def test_kpa_scale_up_at_most_1000_times_the_ready_replicas():
    """Replicas asked for do not serve within the interval, so its ticks all bound it by the same ready count."""
    kpa = KPA(SimConfig(capacity=1.0, cold_start_s=120.0, max_replicas=10**6), target_utilization=1.0)
    assert kpa.decide(Observation(0.0, 5000.0, 0.0, 1, 1)).replicas == 1000
    assert kpa.decide(Observation(60.0, 5000.0, 0.0, 1, 1000)).replicas == 1000  # still one ready
    assert kpa.decide(Observation(120.0, 5000.0, 0.0, 1000, 1000)).replicas == 5000


def test_kpa_spike_at_60s_panics_and_holds_a_stable_window_after_its_last_tick():
    """Over the threshold through the spike's minute, to its last tick (t = 238 s), so in panic until t = 298 s:
    the count holds through the next minute, then drops to the stable count within a few ticks."""
    out = drive(KPA(SIM, target_utilization=1.0), [2.0] * 3 + [20.0] + [2.0] * 4, start=2)
    assert out == [2, 2, 2, 20, 20, 2, 2, 2]


def test_kpa_counts_the_requests_waiting_as_concurrency():
    """80 requests held at zero replicas (8 slots a replica, target 100 %) ask for 10 replicas, in either unit."""
    sim = SimConfig(capacity=1.0, cold_start_s=120.0, scale_to_zero=True)
    assert KPA(sim, target_utilization=1.0).decide(Observation(0.0, 0.0, 80.0, 0, 0)).replicas == 10
    tokens = SimConfig(capacity=1000.0, cold_start_s=120.0, scale_to_zero=True, unit="tok/s")  # 100 per request
    held = Observation(0.0, 0.0, 8000.0, 0, 0, arrival_size=100.0)
    assert KPA(tokens, target_utilization=1.0).decide(held).replicas == 10


def test_apa_band_and_rates_per_10s_resync():
    sim = SimConfig(capacity=1.0, cold_start_s=0.0, interval_s=10.0)
    assert drive(APA(sim, target_utilization=1.0), [10.0] * 3, start=2) == [4, 8, 10]  # x2 per resync at most
    assert drive(APA(SIM, target_utilization=1.0), [10.0], start=2) == [10]  # six resyncs a minute (it was 4)
    assert drive(APA(SIM, target_utilization=1.0), [10.9], start=10) == [10]  # within +10 %


def test_apa_step_down_halves_once_per_300s_cooldown():
    """Up to 10 by the resync at 20 s; each scale-down waits 300 s after the last scale event (320 s, 620 s)."""
    out = drive(APA(SIM, target_utilization=1.0), [10.0] * 3 + [1.0] * 8, start=2)
    assert out == [10] * 5 + [5] * 5 + [2]


def test_apa_spike():
    """Up to 20 in four resyncs of the spike's minute (the last at 150 s), halved at 450 s."""
    out = drive(APA(SIM, target_utilization=1.0), [2.0] * 2 + [20.0] + [2.0] * 7, start=2)
    assert out == [2, 2] + [20] * 5 + [10] * 3


def test_holt_winters_scales_ahead_of_a_repeating_rise():
    sim = SimConfig(capacity=1.0, cold_start_s=120.0, interval_s=60.0)
    season = 20
    pattern = [1.0] * 10 + [8.0] * 10
    demand = pattern * 5
    hw = drive(HoltWintersHPA(sim, target_utilization=1.0, season_s=season * 60.0), demand)
    hpa = drive(HPA(sim, target_utilization=1.0), demand)
    rise = 4 * season + 10  # a rise in the fifth season
    assert hw[rise - 2] > hpa[rise - 2]  # provisioned before the demand arrives
    assert hpa[rise - 1] == 1


def test_static_is_provisioned_for_the_peak():
    arrivals = np.array([60.0, 120.0, 600.0, 60.0])
    assert Static(SIM, arrivals).replicas == 10
    assert Static(SIM, arrivals, quantile=0.5).replicas == 2
