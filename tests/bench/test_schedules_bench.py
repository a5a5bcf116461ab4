"""The schedules benchmark: learn on a week, score the days after, on series whose answer is known."""

from __future__ import annotations

import numpy as np

from bench.schedules import run_trace, summary
from foresail.backtest.traces import Trace


def hourly_job(days: int, job: bool) -> Trace:
    """Poisson arrivals at 1 req/s, with 30 req/s in the first 10 min of every hour when ``job``."""
    minutes = np.arange(days * 1440)
    rate = 1.0 + 29.0 * ((minutes % 60) < 10) * job
    arrivals = np.random.default_rng(0).poisson(rate * 60).astype(float)
    return Trace("job" if job else "steady", 60.0, arrivals, group="test")


def test_a_schedule_learned_on_the_first_week_holds_the_job_in_the_days_after():
    row = run_trace((hourly_job(9, True), 300.0))
    assert [s["start"] for s in row["schedules"]] == ["*:00"]
    assert row["without"]["slo"] < 0.97 and row["with"]["slo"] > 0.999, row
    assert row["with"]["cost"] >= 1.0 and row["without"]["cost"] >= 1.0  # the oracle is the least
    table = summary([row, run_trace((hourly_job(9, False), 300.0))])
    assert "      300s       2             1        1" in table and "1 / 0" in table, table


def test_a_series_without_a_job_is_not_replayed():
    row = run_trace((hourly_job(9, False), 300.0))
    assert row["schedules"] == [] and "with" not in row
