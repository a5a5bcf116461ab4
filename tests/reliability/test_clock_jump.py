"""The scaling policy (`ForesailPolicy`) when the wall clock jumps: forward by hours, back by minutes.

The operator stamps each observation with `time.time()`, which NTP or an operator can move. The
policy runs closed loop here (the replicas it decides are the replicas provisioned next step), in
predictive mode with the learned prior and in reactive mode.
"""

from __future__ import annotations

import math
from itertools import pairwise

import pytest

from foresail.autoscaler.policy import Decision, ForesailPolicy, Observation, PolicyConfig

T0 = 1_700_000_000.0
STEP = 15.0
WINDOW = 300.0  # scale-down stabilisation
HOUR = 3600.0


def run(policy: ForesailPolicy, times: list[float], demand: list[float], replicas: int,
        each: float = 1.0) -> list[Decision]:
    """Feed observations closed loop (each request counting for ``each`` demand units); check the bounds and
    reasons of every decision."""
    out = []
    c = policy.config
    for t, d in zip(times, demand, strict=True):
        decision = policy.decide(Observation(t, d, waiting=0.0, ready_replicas=replicas, provisioned_replicas=replicas,
                                             arrival_size=each))
        assert decision.reason and math.isfinite(decision.replicas)
        assert (0 if c.scale_to_zero else c.min_replicas) <= decision.replicas <= c.max_replicas
        assert decision.replicas >= min(decision.reactive_floor, c.max_replicas), decision.reason
        replicas = decision.replicas
        out.append(decision)
    return out


def scale_downs(decisions: list[Decision]) -> int:
    return sum(1 for a, b in pairwise(decisions) if b.replicas < a.replicas)


@pytest.mark.parametrize("each", [1.0, 1000.0], ids=["requests", "tokens"])
@pytest.mark.parametrize("hours", [1, 2])
@pytest.mark.parametrize("predictive", [True, False])
@pytest.mark.parametrize("jump", [-10 * 60.0, -STEP, 3 * HOUR, 30 * 24 * HOUR])
def test_a_clock_jump_right_after_demand_falls(predictive: bool, jump: float, hours: int, each: float) -> None:
    """An hour or two of 4 req/s, then demand falls to 1 req/s and, on the same step, the clock jumps
    (counted in requests, or in tokens at 1,000 a request, with capacity in the same unit).

    The policy counts a jump (backwards, or forward by more than 10 intervals) as one interval, so
    the stabilisation window is measured in decisions seen, not in wall-clock arithmetic. After two
    flat hours the p90 comes from the forecaster's own errors, which on a series without noise have no
    spread: it keeps the noise of counting arrivals, or the forecasts after the jump all fall short and
    burst memory holds the last hour's peak. In tokens that noise is of requests worth 1,000 tokens each,
    not of single tokens (whose noise is sqrt(1000), about 32, times smaller)."""
    policy = ForesailPolicy(PolicyConfig(min_replicas=1, max_replicas=10, capacity=each, cold_start_s=60.0,
                                         interval_s=STEP, scale_down_stabilization_s=WINDOW,
                                         predictive=predictive), forecast_step_s=60.0)
    before = [T0 + i * STEP for i in range(int(hours * HOUR / STEP))]
    steady = run(policy, before, [4.0 * each] * len(before), replicas=4, each=each)
    held = steady[-1].replicas
    assert held >= 4
    after = [before[-1] + jump + (i + 1) * STEP for i in range(60)]  # 15 min of 1 req/s after the jump
    decisions = run(policy, after, [1.0 * each] * len(after), replicas=held, each=each)
    steps_held = next((i for i, d in enumerate(decisions) if d.replicas < held), len(decisions))
    # neither direction shortens the window: the first scale-down waits a full window of decisions
    assert steps_held >= WINDOW / STEP - 1, f"scaled down {steps_held} steps after demand fell"
    # no burst: after the jump the replicas only go down, never back up (no oscillation)
    assert not any(b.replicas > a.replicas for a, b in pairwise(decisions)), [d.replicas for d in decisions]
    if not predictive:  # reactive: one step down to the floor once the window has passed
        assert scale_downs([steady[-1], *decisions]) == 1, [d.replicas for d in decisions]
        assert decisions[-1].replicas == 1
    else:  # predictive: the forecast of the lower level may bring it down in steps, within 15 min
        assert decisions[-1].replicas < held, [d.replicas for d in decisions]


@pytest.mark.parametrize("jump", [-10 * 60.0, 3 * HOUR])
def test_a_clock_jump_does_not_count_as_idle_time(jump: float) -> None:
    """Scale-to-zero after 600 s without demand: a clock jump is not 600 s without demand."""
    policy = ForesailPolicy(PolicyConfig(min_replicas=1, max_replicas=10, capacity=1.0, cold_start_s=60.0,
                                         interval_s=STEP, scale_down_stabilization_s=WINDOW, scale_to_zero=True,
                                         idle_s=600.0, predictive=False), forecast_step_s=60.0)
    quiet_yesterday = [T0 - 86400 - HOUR + i * 60.0 for i in range(6 * 60)]  # watched and idle, so zero is safe
    policy.warm_start(quiet_yesterday, [0.0] * len(quiet_yesterday))
    before = [T0 + i * STEP for i in range(40)]
    run(policy, before, [2.0] * len(before), replicas=2)
    idle = [before[-1] + STEP, before[-1] + STEP + jump, before[-1] + 2 * STEP + jump]  # two idle steps
    decisions = run(policy, idle, [0.0] * 3, replicas=2)
    assert min(d.replicas for d in decisions) >= 1, [d.reason for d in decisions]
    # and the timer still works: 600 s of real idleness after the jump reaches zero
    later = [idle[-1] + (i + 1) * STEP for i in range(60)]
    assert run(policy, later, [0.0] * len(later), replicas=decisions[-1].replicas)[-1].replicas == 0


@pytest.mark.parametrize("step", [60.0, 5.0])
@pytest.mark.parametrize("clock", [T0 * 1000, 1000.0], ids=["milliseconds", "1970"])
def test_a_clock_far_off_neither_exhausts_memory_nor_stops_the_forecasts(clock: float, step: float,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    """A clock read in milliseconds (1.7e12 s ahead) or reset to 1970, and then right again: the forecaster
    never holds more than its history's length of steps (it used to allocate the whole span: 200 GiB, which
    failed, or 1 GiB and 11 GiB at 60-s and 5-s steps for 1970), the policy decides on, counting each jump
    as one interval, and the forecaster, whose history has nowhere to stand on the new clock, starts again
    from the prior and forecasts within a few steps."""
    policy = ForesailPolicy(PolicyConfig(min_replicas=1, max_replicas=10, capacity=1.0, cold_start_s=60.0,
                                         interval_s=STEP, scale_down_stabilization_s=WINDOW), forecast_step_s=step)
    f = policy.forecaster
    kept = f.kept_steps + 256
    before = [T0 + i * STEP for i in range(40)]
    run(policy, before, [4.0] * len(before), replicas=4)
    off = [clock + i * STEP for i in range(40)]
    decisions = run(policy, off, [4.0] * len(off), replicas=4)
    assert policy.forecaster is not f and len(policy.forecaster.history_) <= kept
    assert "starts again from the prior" in caplog.text
    back = [before[-1] + (i + 1) * STEP for i in range(40)]
    decisions += run(policy, back, [4.0] * len(back), replicas=4)
    assert all(d.replicas >= 4 for d in decisions), [d.replicas for d in decisions]
    assert decisions[-1].forecast_ready and len(policy.forecaster.history_) <= kept
    assert policy.forecaster.history_peak(back[0], back[-1]) == 4.0
