"""Each baseline reproduces its documented behaviour on a step and on a spike."""

from itertools import pairwise

import numpy as np

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


def test_kpa_scale_down_at_most_halves():
    kpa = KPA(SIM, target_utilization=1.0)
    assert drive(kpa, [1.0], start=8) == [4]


def test_apa_band_rates_and_cooldown():
    apa = APA(SIM, target_utilization=1.0)
    out = drive(apa, [10.0, 10.0, 10.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0], start=2)
    assert out[:3] == [4, 8, 10]  # x2 per decision at most
    assert out[3:7] == [10, 10, 10, 10]  # scale-down waits 300 s after the last scale event
    assert out[7] == 5  # then halves at most
    assert drive(APA(SIM, target_utilization=1.0), [10.9], start=10) == [10]  # within +10 %


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
