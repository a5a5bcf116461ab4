"""`foresail schedules` end to end: the schedules it finds in a trace replay with `foresail backtest --schedule`."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from foresail.backtest.cli import load_schedules
from foresail.cli import main
from tests.backtest.test_backtest_cli import job_trace, make_trace


def test_the_schedules_found_in_a_trace_hold_its_hourly_job(tmp_path, capsys):
    p = job_trace(tmp_path, 3600, 0, 600)  # 30 req/s for the first 10 min of every hour, 1 req/s otherwise
    found = tmp_path / "found.yaml"
    assert main(["schedules", "--trace", str(p), "--capacity", "1", "-o", str(found)]) == 0
    out = capsys.readouterr().out
    assert '- {name: hourly-00, start: "*:00", end: "*:10", minReplicas: 30}' in out
    assert "# hourly-00: raised in 72 of 72 hours (100 %)" in out and out == found.read_text()
    assert [s.describe() for s in load_schedules(str(found))] == ["*:00-*:10 UTC"]
    figures = {}
    for label, extra in (("plain", []), ("found", ["--schedule", str(found)])):
        assert main(["backtest", "--trace", str(p), "--policy", "foresail", "--cold-start", "300", "--capacity", "1",
                     "--no-progress", "--json", str(tmp_path / f"{label}.json"), *extra]) == 0
        figures[label] = json.loads((tmp_path / f"{label}.json").read_text())["traces"]["job"]["foresail"]
    assert figures["plain"]["slo_attainment"] < 0.97 and figures["found"]["slo_attainment"] >= 0.999, figures


def test_foresail_learns_the_hourly_job_as_it_goes(tmp_path, capsys):
    """--learn-schedules: from a day of history on, Foresail holds the job it found, so only the first day
    misses it (of three, a third of what it misses without)."""
    p = job_trace(tmp_path, 3600, 0, 600)
    figures = {}
    for label, extra in (("plain", []), ("learning", ["--learn-schedules"])):
        assert main(["backtest", "--trace", str(p), "--policy", "foresail", "--cold-start", "300", "--capacity", "1",
                     "--no-progress", "--json", str(tmp_path / f"{label}.json"), *extra]) == 0
        figures[label] = json.loads((tmp_path / f"{label}.json").read_text())
    plain, learning = (figures[k]["traces"]["job"]["foresail"]["slo_attainment"] for k in ("plain", "learning"))
    assert plain < 0.97 and learning > 1 - 0.45 * (1 - plain), (plain, learning)
    assert figures["plain"]["settings"]["learned"] == {"job": []}
    (found,) = figures["learning"]["settings"]["learned"]["job"]
    assert found.startswith("hourly-00 *:00-*:10: at least 30, raised in 7") and "(100 %)" in found, found
    assert f"foresail learned on job: {found}" in capsys.readouterr().out


def test_a_daily_job_needs_days_of_evidence(tmp_path, capsys):
    p = job_trace(tmp_path, 86400, 12 * 3600, 1800)  # three days with a job at noon
    assert main(["schedules", "--trace", str(p), "--capacity", "1"]) == 0
    out = capsys.readouterr().out
    assert "0 windows in 3.0 days of job" in out and "# none:" in out and "- {" not in out
    assert main(["schedules", "--trace", str(p), "--capacity", "1", "--days", "1", "--min-share", "1"]) == 0
    assert "in 1.0 days of job" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--min-share", "0"], "--min-share must be in"),
    (["--min-ratio", "1"], "--min-ratio above 1"),
    (["--days", "-2"], "--days positive"),
    (["--days", "inf"], "--days positive (and finite)"),  # was an OverflowError
    (["--capacity", "-1"], "--capacity must be a positive number"),
    (["--interval", "420"], "--interval must divide the hour (3600 s) or the day (86400 s) into two steps or more"),
    (["--interval", "86400"], "--interval must divide the hour (3600 s) or the day (86400 s) into two steps or more"),
    (["--max-replicas", "1001"], "--max-replicas in [1, 1000]"),
    (["--max-replicas", "0"], "--max-replicas in [1, 1000]"),
])
def test_bad_flags_are_an_error_that_says_why(tmp_path, capsys, flags, message):
    assert main(["schedules", "--trace", str(make_trace(tmp_path)), *flags]) == 2
    assert message in capsys.readouterr().err


def test_a_floor_above_what_the_crd_accepts_is_capped_and_says_so(tmp_path, capsys):
    """At 0.01 req/s per replica the job needs 3000 replicas: more than the CRD's schedules[].minReplicas
    maximum, which kubectl apply would refuse; the floor is capped there (or at --max-replicas)."""
    crd = yaml.safe_load((Path(__file__).parents[2] / "crds" / "llmdeployment.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    bound = spec["autoscaling"]["properties"]["schedules"]["items"]["properties"]["minReplicas"]["maximum"]
    p = job_trace(tmp_path, 3600, 0, 600)
    found = tmp_path / "found.yaml"
    assert main(["schedules", "--trace", str(p), "--capacity", "0.01", "-o", str(found)]) == 0
    out = capsys.readouterr().out
    assert f'- {{name: hourly-00, start: "*:00", end: "*:10", minReplicas: {bound}}}' in out
    assert f"; capped at {bound} (--max-replicas), the window needs 3000" in out
    assert [s.min_replicas for s in load_schedules(str(found))] == [bound]
    assert main(["schedules", "--trace", str(p), "--capacity", "0.01", "--max-replicas", "40"]) == 0
    out = capsys.readouterr().out
    assert 'minReplicas: 40}' in out and "; capped at 40 (--max-replicas), the window needs 3000" in out
    assert main(["schedules", "--trace", str(p), "--capacity", "1", "--max-replicas", "40"]) == 0
    assert "capped" not in capsys.readouterr().out  # 30 replicas: under the cap


def test_a_missing_trace_is_an_error_that_names_it(tmp_path, capsys):
    assert main(["schedules", "--trace", str(tmp_path / "missing.csv")]) == 2
    assert "missing.csv" in capsys.readouterr().err


def test_a_weekday_job_is_written_with_its_days(tmp_path, capsys):
    """Two weeks from Thursday 1 January 1970, 1 req/s, and 20 more from 09:00 to 09:30 Monday to Friday."""
    minutes = np.arange(14 * 1440)
    job = ((minutes // 1440 + 3) % 7 < 5) & (minutes % 1440 >= 540) & (minutes % 1440 < 570)
    p = tmp_path / "weekdays.csv"
    rows = (f"{60 * m},{60 * (21 if j else 1)}\n" for m, j in zip(minutes, job, strict=True))
    p.write_text("time_s,arrivals\n" + "".join(rows))
    found = tmp_path / "found.yaml"
    assert main(["schedules", "--trace", str(p), "--capacity", "1", "-o", str(found)]) == 0
    assert ('- {name: weekdays-0900, days: [Mon, Tue, Wed, Thu, Fri], start: "09:00", end: "09:30", '
            'minReplicas: 21}') in capsys.readouterr().out
    assert [s.describe() for s in load_schedules(str(found))] == ["09:00-09:30 UTC Mon,Tue,Wed,Thu,Fri"]


def test_a_history_too_short_says_which_periods_were_not_searched_not_that_none_jumped(tmp_path, capsys):
    p = job_trace(tmp_path, 3600, 0, 600)  # three days with a job in the first 10 min of every hour
    assert main(["schedules", "--trace", str(p), "--capacity", "1", "--days", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "0 windows in 0.5 days of job" in out and "# none:" not in out
    assert "# hourly windows not searched: only 12 hours seen, 24 needed" in out
    assert "# daily windows not searched: only 0 days seen, 5 needed" in out
    assert "# weekday windows not searched: only 0 weekdays seen, 5 needed" in out
    assert main(["schedules", "--trace", str(p), "--capacity", "1"]) == 0  # the job found, the days still too few
    out = capsys.readouterr().out
    assert "- {name: hourly-00," in out and "# hourly windows not searched" not in out
    assert "# daily windows not searched: only 3 days seen, 5 needed" in out


def test_an_interval_longer_than_the_hour_searches_the_days_only_and_says_so(tmp_path, capsys):
    minutes = np.arange(6 * 1440)
    p = tmp_path / "flat.csv"
    p.write_text("time_s,arrivals\n" + "".join(f"{60 * m},60\n" for m in minutes))  # six quiet days from Thursday
    assert main(["schedules", "--trace", str(p), "--capacity", "1", "--interval", "7200"]) == 0
    out = capsys.readouterr().out
    assert "# none: no demand jumped at the same time of 80 % of the days\n" in out
    assert "# hourly windows not searched: a step of 7200 s is not shorter than the hour" in out
    assert "# weekday windows not searched: only 4 weekdays seen, 5 needed" in out
    assert "# daily windows not searched" not in out
