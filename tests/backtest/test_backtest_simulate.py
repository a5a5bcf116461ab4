"""The simulator's accounting on hand-computed cases."""

from collections.abc import Iterable

import numpy as np
import pytest

from foresail.autoscaler.policy import Decision, Observation
from foresail.backtest.baselines import Oracle
from foresail.backtest.experiment import prepare
from foresail.backtest.simulate import MAX_NEED, SimConfig, simulate
from foresail.backtest.traces import Trace


class Schedule:
    """Returns a fixed replica count per step and records what it saw."""

    def __init__(self, replicas: Iterable[int]) -> None:
        self.replicas = list(replicas)
        self.seen: list[Observation] = []

    def decide(self, obs: Observation) -> Decision:
        r = self.replicas[len(self.seen)]
        self.seen.append(obs)
        return Decision(obs.time_s, r, "", r, None, None, None, 0.0, False, 1.0, "")


def test_hand_computed_run():
    # capacity 1/s, 60-s steps, replicas ready 2 steps after being asked for, 10-s SLO wait
    sim = SimConfig(capacity=1.0, cold_start_s=120.0, slo_wait_s=10.0, interval_s=60.0)
    arrivals = np.array([60.0, 60.0, 180.0, 60.0, 60.0])
    pol = Schedule([1, 1, 3, 3, 3])
    res = simulate(pol, arrivals, sim)
    # the run starts with the oracle's step-0 count ready: max need over steps 0..2 = 3
    assert pol.seen[0].ready_replicas == 3 and pol.seen[0].provisioned_replicas == 3
    assert list(res.provisioned) == [1, 1, 3, 3, 3]
    assert list(res.ready) == [1, 1, 1, 1, 3]  # asked for at step 2, serving from step 4
    # backlog: 0, 0, 180-60=120, 120+60-60=120, 120+60-180=0
    assert np.allclose(res.backlog, [0, 0, 120, 120, 0])
    assert list(res.met) == [True, True, False, False, True]
    assert res.slo_attainment == pytest.approx((60 + 60 + 60) / 420)
    assert res.replica_hours == pytest.approx(11 / 60)  # 11 replica-minutes
    assert res.scale_events == 2
    # the policy sees the previous step's rate and the backlog carried into the step
    assert pol.seen[3].demand == pytest.approx(3.0) and pol.seen[3].waiting == pytest.approx(120.0)


def test_backlog_within_slo_wait_meets_the_slo():
    sim = SimConfig(capacity=1.0, cold_start_s=0.0, slo_wait_s=10.0, interval_s=60.0)
    # 70 arrivals against 60 served leaves 10, which drains in 10 s at 1/s: met; 71 leaves 11: missed
    res = simulate(Schedule([1, 1]), np.array([70.0, 71.0]), sim)
    assert list(res.met) == [True, False]


def test_scale_down_removes_starting_replicas_first():
    sim = SimConfig(capacity=1.0, cold_start_s=180.0, slo_wait_s=0.0, interval_s=60.0)
    arrivals = np.full(6, 60.0)
    res = simulate(Schedule([1, 3, 2, 2, 2, 2]), arrivals, sim)
    # one ready; two asked for at step 1 (ready at step 4); one of them cancelled at step 2
    assert list(res.provisioned) == [1, 3, 2, 2, 2, 2]
    assert list(res.ready) == [1, 1, 1, 1, 2, 2]


def test_oracle_provisions_the_max_need_over_the_cold_start_window():
    sim = SimConfig(capacity=1.0, cold_start_s=120.0, slo_wait_s=0.0, interval_s=60.0)
    arrivals = np.array([60.0, 60.0, 60.0, 300.0, 60.0, 60.0, 60.0])
    res = simulate(Oracle(sim, arrivals), arrivals, sim)
    assert list(res.provisioned) == [1, 5, 5, 5, 1, 1, 1]
    assert res.slo_attainment == 1.0
    assert res.replica_hours == pytest.approx(19 / 60)


@pytest.mark.parametrize("at_zero", ["proxy", "activator", "none"])
def test_what_a_policy_sees_while_no_replica_serves(at_zero: str):
    """Zero replicas at step 1, one asked for at step 2 and ready at step 4 (cold start 120 s)."""
    sim = SimConfig(capacity=1.0, cold_start_s=120.0, slo_wait_s=0.0, interval_s=60.0, scale_to_zero=True)
    arrivals = np.array([60.0, 0.0, 120.0, 60.0, 60.0, 60.0])
    pol = Schedule([1, 0, 1, 1, 1, 1])
    res = simulate(pol, arrivals, sim, at_zero=at_zero)
    seen = [(o.demand, o.waiting, o.provisioned_replicas) for o in pol.seen]
    if at_zero != "none":  # a front door holds and counts what arrives (the queue grows by 120 at step 2)
        assert seen[2:5] == [(0.0, 0.0, 0), (2.0, 120.0, 1), (1.0, 180.0, 1)]
        # Foresail's operator reads the activator's count as demand counted at the door
        assert {o.counted for o in pol.seen} == {at_zero == "activator"}
    else:  # at zero nothing is counted; while the replica starts there is no data; once it has served, all
        assert seen[2:6] == [(0.0, 0.0, 0), (None, None, 1), (None, None, 1), (1.0, 0.0, 1)]
    if at_zero != "none":
        assert list(res.backlog) == [0, 0, 120, 180, 180, 180] and list(res.met[1:]) == [True] + [False] * 4
    else:  # what arrives with no replica ready fails (missed, not queued); the step without arrivals meets it
        assert list(res.backlog) == [0] * 6 and list(res.met[1:]) == [True, False, False, True, True]


@pytest.mark.parametrize("at_zero, woken", [("proxy", True), ("activator", True), ("none", False)])
def test_a_request_at_a_front_door_wakes_a_replica_at_once(at_zero: str, woken: bool):
    """A policy that stays at zero: the step a request arrives, a front door asks for a replica anyway, and keeps
    it while it holds the request (the replica starts for two steps)."""
    sim = SimConfig(capacity=1.0, cold_start_s=120.0, slo_wait_s=0.0, interval_s=60.0, scale_to_zero=True)
    arrivals = np.array([0.0, 0.0, 30.0, 0.0, 0.0, 0.0])
    res = simulate(Schedule([0] * 6), arrivals, sim, at_zero=at_zero)
    assert list(res.provisioned) == ([0, 0, 1, 1, 1, 0] if woken else [0] * 6)


def test_in_tokens_the_policy_sees_the_tokens_per_request_of_the_step_its_rate_is_from():
    """A trace with tokens, counted in tokens: 100 tokens per request, none arrive at step 2, then 300."""
    trace = Trace("t", 60.0, np.array([2.0, 2.0, 0.0, 3.0, 3.0]), tokens=np.array([200.0, 200.0, 0.0, 900.0, 900.0]))
    p = prepare(trace, cold_start_s=0.0, capacity=100.0, unit="tokens")
    assert list(p.sizes) == [100.0, 100.0, 100.0, 300.0, 300.0]  # a step without requests keeps the last
    pol = Schedule([1] * 5)
    simulate(pol, p.arrivals, p.sim, at_zero="activator", sizes=p.sizes)
    assert [o.arrival_size for o in pol.seen] == [100.0, 100.0, 100.0, 100.0, 300.0]  # the step before's
    assert prepare(trace, cold_start_s=0.0, capacity=1.0, unit="requests").sizes is None  # a request counts for 1


def test_a_need_too_big_for_an_int_is_held_at_the_most_not_wrapped_to_zero():
    """At a capacity of 1e-300 one request needs 1.7e298 replicas: cast to int it wrapped negative, clipped to 0,
    and the oracle held its floor of one replica."""
    sim = SimConfig(capacity=1e-300, max_replicas=5)
    assert list(sim.need(np.array([0.0, 1.0]))) == [0, int(MAX_NEED)]
    assert list(Oracle(sim, np.array([1.0, 1.0])).plan) == [5, 5]


@pytest.mark.parametrize("queue", ["fluid", "requests"])
@pytest.mark.parametrize("at_zero", ["proxy", "activator"])
def test_requests_a_front_door_holds_wake_a_replica_until_they_are_served(queue: str, at_zero: str):
    """120 requests arrive at zero and one replica serves 60 a step: those still held after it wake a replica for
    the next step too, though none arrives then and the policy stays at zero (they were held with no replica)."""
    trace = Trace("t", 60.0, np.array([0.0, 120.0, 0.0, 0.0, 0.0]))
    p = prepare(trace, cold_start_s=0.0, capacity=1.0, slo_wait_s=0.0, scale_to_zero=True, queue=queue)
    res = simulate(Schedule([0] * 5), p.arrivals, p.sim, at_zero=at_zero, requests=p.requests)
    assert list(res.provisioned) == [0, 1, 1, 0, 0]
    assert res.backlog[1] > 0 and list(res.backlog[2:]) == [0, 0, 0]


def test_the_oracle_meets_the_slo_at_zero_wait_on_steps_its_replicas_just_serve():
    """8 replicas serve exactly this step's demand, but 8 x (capacity x 60) falls 1.9e-9 short of it in floats:
    counted as a backlog, that missed the SLO at --slo-wait 0 (and could wake a replica at zero)."""
    arrivals = np.full(3, 15991730.0)
    sim = SimConfig(capacity=15991730.0 / 8 / 60, slo_wait_s=0.0, scale_to_zero=True)
    assert arrivals[0] - 8 * (sim.capacity * 60) > 1e-9
    res = simulate(Oracle(sim, arrivals), arrivals, sim)
    assert list(res.provisioned) == [8, 8, 8] and res.slo_attainment == 1.0 and list(res.backlog) == [0, 0, 0]


def test_replica_counts_beyond_int32():
    """2.5 and 5 billion replicas (a capacity of 1e-9 req/s) run, starting ones too: they overflowed int32 (and
    each starting replica was an entry of its own)."""
    sim = SimConfig(capacity=1e-9, cold_start_s=120.0, max_replicas=10**11)
    arrivals = np.array([150.0, 150.0, 300.0, 300.0])  # 2.5e9 and 5e9 replicas' worth
    half, full = 2_500_000_000, 5_000_000_000
    res = simulate(Schedule([half, full, full, full]), arrivals, sim)
    assert list(res.provisioned) == [half, full, full, full] and list(res.ready) == [half, half, half, full]
