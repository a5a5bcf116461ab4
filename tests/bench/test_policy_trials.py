"""The policy-trials benchmark: a default replaced reaches the policy, and the cost split adds up."""

from __future__ import annotations

import numpy as np
import pytest

from bench.policy_trials import COST_COLUMNS, excess_by_term, main, parse_trial, run_foresail
from foresail.backtest.experiment import prepare, run_policy
from foresail.backtest.traces import Trace


@pytest.fixture(scope="module")
def falling():
    """Two hours of steady demand, then a tenth of it: the scale-down waits out its window."""
    rng = np.random.default_rng(0)
    arrivals = np.r_[rng.poisson(600, 120), rng.poisson(60, 120)].astype(float)
    p = prepare(Trace("falling/chunk-0", 60.0, arrivals), cold_start_s=120.0)
    return p, run_policy(p, "oracle")


def test_the_split_adds_up_to_the_cost_above_the_oracle_and_names_the_window(falling) -> None:
    p, oracle = falling
    res, reasons = run_foresail(p)
    split = excess_by_term(res, oracle, reasons)
    assert set(split) == set(COST_COLUMNS)
    assert sum(split.values()) == pytest.approx(float(np.maximum(res.provisioned - oracle.provisioned, 0).sum()))
    assert split["stabilisation window"] > 0 and split["forecast"] > 0 and split["other"] == 0


def test_a_replaced_default_reaches_the_policy(falling) -> None:
    p, oracle = falling
    shipped, shipped_reasons = run_foresail(p)
    res, reasons = run_foresail(p, scale_down_stabilization_s=0.0)  # a forecast's still holds a cold start
    held = excess_by_term(res, oracle, reasons)["stabilisation window"]
    assert held < excess_by_term(shipped, oracle, shipped_reasons)["stabilisation window"]
    assert res.replica_hours < shipped.replica_hours


def test_a_trial_is_a_numeric_field_and_its_values() -> None:
    assert parse_trial("quantile=0.8,0.85") == ("quantile", [0.8, 0.85])
    assert parse_trial("error_window=30") == ("error_window", [30])
    for bad in ("predictive=0", "nope=1", "quantile", "unit=tok/s"):
        with pytest.raises(ValueError, match="numeric PolicyConfig field"):
            parse_trial(bad)


def test_a_bad_trial_is_an_error_not_a_crash(capsys) -> None:
    assert main(["nope=1"]) == 2
    assert "'nope=1' is not FIELD=V1,V2" in capsys.readouterr().out
