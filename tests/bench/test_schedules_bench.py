"""The schedules benchmark: learn on a week (or as the policy goes), score the days after, on series whose
answer is known."""

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


def test_a_schedule_learned_on_the_first_week_or_online_holds_the_job_in_the_days_after():
    (row,) = run_trace((hourly_job(9, True), (300.0,)))
    assert [s["start"] for s in row["schedules"]] == ["*:00"] and row["learns"]
    assert row["without"]["slo"] < 0.97 and row["with"]["slo"] > 0.999 and row["online"]["slo"] > 0.999, row
    assert min(row[k]["cost"] for k in ("without", "with", "online")) >= 1.0  # the oracle is the least
    table = summary([row, *run_trace((hourly_job(9, False), (300.0,)))])
    assert "      300s        in week 1       1" in table and "1 / 0, 1 / 0" in table, table
    assert "           online       1" in table and "of       2" in table, table


def test_a_series_without_a_job_is_not_replayed():
    rows = run_trace((hourly_job(9, False), (120.0, 300.0)))
    assert [r["cold_start_s"] for r in rows] == [120.0, 300.0]
    assert all(r["schedules"] == [] and not r["learns"] and "without" not in r for r in rows)
