"""The request-level queue (`foresail backtest --queue requests`): how requests are drawn from a demand
series, and single requests over batching slots on hand-computed cases."""

import json

import numpy as np
import pytest

from foresail.backtest.experiment import prepare, run_policy
from foresail.backtest.request_queue import MAX_REQUESTS, RequestQueue, Requests, draw_requests
from foresail.backtest.simulate import SimConfig, simulate
from foresail.backtest.traces import Trace, TraceError, load_trace
from foresail.cli import main
from tests.backtest.test_backtest_simulate import Schedule


def requests(times: list[float], interval_s: float = 60.0, steps: int = 1, size: float = 1.0) -> Requests:
    t = np.array(times)
    at = (t // interval_s).astype(int)
    return Requests(t, np.full(len(t), size), at, np.searchsorted(at, np.arange(steps + 1)))


def test_whole_requests_per_step_keep_their_count_their_step_and_the_demand():
    r = draw_requests("t", np.array([3.0, 0.0, 5.0]), None, 60.0, 60.0, 3)
    assert list(r.bounds) == [0, 3, 3, 8]
    assert list(r.steps) == [0, 0, 0, 2, 2, 2, 2, 2]
    assert np.all(np.diff(r.times_s) >= 0) and np.all(r.times_s[:3] < 60) and np.all(r.times_s[3:] >= 120)
    # in tokens: 2 requests of 150 tokens at the first step, carried as the step's tokens per request
    r = draw_requests("t", np.array([300.0, 600.0]), np.array([150.0, 200.0]), 60.0, 60.0, 2)
    assert list(r.bounds) == [0, 2, 5] and np.allclose(r.sizes, [150, 150, 200, 200, 200])


def test_fractions_of_requests_round_at_random_in_proportion_and_finer_steps_land_on_the_decision_grid():
    r = draw_requests("t", np.full(6000, 0.25), None, 1.0, 60.0, 100)  # 6,000 1-s steps, a quarter request each
    assert 1350 < len(r.times_s) < 1650  # 1,500 expected
    assert len(r.bounds) == 101 and r.bounds[-1] == len(r.times_s)
    assert np.all(r.steps == r.times_s // 60)
    assert np.allclose(r.sizes, 1.0)  # a request rounded up is a whole request, not a quarter of one


def test_a_per_request_trace_replays_its_own_requests_at_their_times_and_sizes(tmp_path):
    path = tmp_path / "AzureLLMInferenceTrace_code.csv"
    rows = ["2023-11-16 18:00:00.50,8000,0", "2023-11-16 18:00:00.75,9,1", "2023-11-16 18:01:30.00,100,20",
            "2023-11-16 18:02:10.00,1,1"]
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(rows) + "\n")
    p = prepare(load_trace(path), queue="requests")  # 60-s steps: 2 whole ones, the request at 130 s after them
    assert p.requests is not None
    assert np.allclose(p.requests.times_s, [0.5, 0.75, 90.0]) and list(p.requests.bounds) == [0, 2, 3]
    assert list(p.requests.sizes) == [8000, 10, 120]  # each its own tokens, not the second's mean of 4,005
    p = prepare(load_trace(path), queue="requests", unit="requests")
    assert p.requests is not None and list(p.requests.sizes) == [1, 1, 1]


def test_too_many_requests_is_an_error_that_names_the_fluid_queue():
    with pytest.raises(TraceError, match="--queue fluid"):
        draw_requests("big", np.array([MAX_REQUESTS + 1.0]), None, 60.0, 60.0, 1)


def test_batching_slots_serve_first_come_first_served():
    # 1 req/s per replica over 2 slots: each request holds a slot 2 s. Arrivals at 0, 0, 0 and 0.5 s:
    # two start at once, the third when the first slot frees (2 s, a wait of 2), the fourth then too (1.5)
    q = RequestQueue(requests([0.0, 0.0, 0.0, 0.5]), capacity=1.0, slots=2, slo_wait_s=1.5)
    assert q.advance(0, 1, 0.0, 60.0) == 0.0
    assert list(q.met) == [True, True, False, True]
    assert q.attainment() == pytest.approx(0.75)
    assert list(q.met_steps(1)) == [False]


def test_requests_wait_for_a_ready_replica_into_the_next_step_and_are_the_backlog_meanwhile():
    q = RequestQueue(requests([10.0, 20.0, 70.0], steps=2, size=3.0), capacity=1.0, slots=1, slo_wait_s=45.0)
    assert q.advance(0, 0, 0.0, 60.0) == 6.0  # no replica: two requests of 3 units wait
    assert q.advance(1, 1, 60.0, 120.0) == 0.0
    # the one slot holds each 3 s: 60 (waited 50), 63 (43), then the third at 70 on arrival
    assert list(q.met) == [False, True, True]
    assert list(q.met_steps(2)) == [False, True]


def test_a_request_no_slot_frees_for_within_its_step_takes_a_replica_that_comes_in_the_next():
    # one replica of one slot, 50 s a request: the request at 55 s would start at 100 s on that slot; at
    # step 1 a second replica serves from 60 s and takes it
    q = RequestQueue(requests([0.0, 10.0, 55.0], steps=2), capacity=1 / 50, slots=1, slo_wait_s=30.0)
    assert q.advance(0, 1, 0.0, 60.0) == 1.0
    q.advance(1, 2, 60.0, 120.0)
    assert list(q.met) == [True, False, True]  # waits of 0, 40 and 5 s


def test_a_removed_replica_drains_and_the_slots_that_free_first_go_first():
    # two replicas of one slot, 50 s a request: two requests start at 0 and 30; at step 1 one replica goes
    # (the one free at 50 s), and the request at 61 s waits for the other's slot until 80 s
    q = RequestQueue(requests([0.0, 30.0, 61.0], steps=2), capacity=1 / 50, slots=1, slo_wait_s=10.0)
    q.advance(0, 2, 0.0, 60.0)
    q.advance(1, 1, 60.0, 120.0)
    assert sorted(q.free) == [130.0] and list(q.met) == [True, True, False]


def test_the_request_level_queue_misses_what_the_fluid_queue_averages_away():
    # one replica of one slot at exactly the arrival rate: the fluid queue never holds a backlog, single
    # requests arriving at random moments wait for each other
    sim = SimConfig(capacity=1.0, cold_start_s=0.0, slo_wait_s=0.0, interval_s=60.0, slots=1)
    arrivals = np.full(10, 60.0)
    fluid = simulate(Schedule([1] * 10), arrivals, sim)
    single = simulate(Schedule([1] * 10), arrivals, sim, requests=draw_requests("t", arrivals, None, 60.0, 60.0, 10))
    assert fluid.slo_attainment == 1.0 and fluid.met.all()
    assert 0 < single.slo_attainment < 0.5 and not single.met.all()
    assert single.replica_hours == fluid.replica_hours


def test_without_the_activator_requests_at_zero_replicas_fail_instead_of_waiting():
    sim = SimConfig(capacity=1.0, cold_start_s=60.0, slo_wait_s=100.0, interval_s=60.0, scale_to_zero=True,
                    slots=1)
    reqs = requests([30.0, 90.0, 150.0], steps=3)
    res = simulate(Schedule([0, 1, 1]), np.array([1.0, 1.0, 1.0]), sim, at_zero="none", requests=reqs)
    # nothing ready at steps 0 and 1 (asked for at step 1, ready at 2): the first two fail, though a wait until
    # 120 s would be within the 100 s; the third is served
    assert list(res.met) == [False, False, True] and res.slo_attainment == pytest.approx(1 / 3)


def test_every_policy_replays_the_same_requests_and_the_oracle_still_costs_least():
    rng = np.random.default_rng(3)
    trace = Trace("t", 60.0, rng.poisson(30 + 20 * np.sin(np.arange(600) / 40)).astype(float))
    p = prepare(trace, cold_start_s=120.0, queue="requests")
    again = prepare(trace, cold_start_s=120.0, queue="requests")
    assert p.requests is not None and again.requests is not None
    assert np.array_equal(p.requests.times_s, again.requests.times_s)
    oracle, hpa = run_policy(p, "oracle"), run_policy(p, "hpa")
    assert oracle.replica_hours < hpa.replica_hours and 0.5 < oracle.slo_attainment <= 1.0
    with pytest.raises(ValueError, match="queue must be one of fluid, requests"):
        prepare(trace, queue="tokens")


def test_the_command_runs_the_request_level_queue_and_says_so(tmp_path, capsys):
    trace = tmp_path / "t.csv"
    trace.write_text("time_s,arrivals\n" + "".join(f"{60 * i},{40 + (i % 7) * 5}\n" for i in range(120)))
    out = tmp_path / "r.json"
    args = ["backtest", "--trace", str(trace), "--policy", "hpa", "--json", str(out), "--no-progress"]
    assert main(args) == 0
    fluid = json.loads(out.read_text())
    capsys.readouterr()
    assert main([*args, "--queue", "requests", "--slots", "4"]) == 0
    assert "single requests, 4 at once per ready replica" in capsys.readouterr().out
    single = json.loads(out.read_text())
    assert (single["settings"]["queue"], single["settings"]["slots"]) == ("requests", 4)
    assert (fluid["settings"]["queue"], fluid["settings"]["slots"]) == ("fluid", None)
    hpa = single["traces"]["t"]["hpa"]
    assert hpa["replica_hours"] == fluid["traces"]["t"]["hpa"]["replica_hours"]
    assert hpa["slo_attainment"] != fluid["traces"]["t"]["hpa"]["slo_attainment"]
    capsys.readouterr()
    assert main([*args, "--queue", "requests", "--slots", "0"]) == 2
    assert "--slots is the number of requests one replica runs at once, at least 1" in capsys.readouterr().err
    trace.write_text("time_s,arrivals\n0,30000000\n60,1\n")
    assert main([*args, "--queue", "requests"]) == 2
    assert "more than --queue requests replays" in capsys.readouterr().err


@pytest.mark.timeout(60)  # one slot per request waited in a list: ten billion of them never came back
def test_slots_past_the_requests_cost_nothing_and_serve_every_request_on_arrival(tmp_path, capsys):
    q = RequestQueue(requests([0.0, 0.0, 30.0, 70.0], steps=2), capacity=1e9, slots=10**10, slo_wait_s=0.0)
    assert q.advance(0, 1000, 0.0, 60.0) == 0.0  # ten trillion slots, three requests
    q.advance(1, 1, 60.0, 120.0)  # one replica left: its slots are free, the busy ones of the others drain
    assert q.met.all() and q.attainment() == 1.0
    trace = tmp_path / "t.csv"
    trace.write_text("time_s,arrivals\n" + "".join(f"{60 * i},{40 + (i % 7) * 5}\n" for i in range(30)))
    out = tmp_path / "r.json"
    assert main(["backtest", "--trace", str(trace), "--policy", "static", "--queue", "requests", "--slots",
                 str(10**8), "--json", str(out), "--no-progress"]) == 0
    assert json.loads(out.read_text())["traces"]["t"]["static"]["slo_attainment"] == 1.0
