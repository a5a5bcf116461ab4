"""The `foresail backtest` and `foresail forecast` commands end to end on a small generic trace."""

import csv
import io
import json
import re
import tarfile

import numpy as np
import pytest

from foresail.backtest.traces import load_trace
from foresail.cli import main


def make_trace(tmp_path):
    rng = np.random.default_rng(1)
    t = np.arange(0, 2 * 86400, 60)
    rate = 10 + 8 * np.sin(2 * np.pi * t / 86400) + (t % 86400 > 50000) * (t % 86400 < 52000) * 20
    p = tmp_path / "trace.csv"
    with open(p, "w") as fh:
        fh.write("time_s,arrivals\n")
        for ti, r in zip(t, rng.poisson(rate * 60), strict=True):
            fh.write(f"{ti},{r}\n")
    return p


def test_backtest_outputs(tmp_path, capsys):
    p = make_trace(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    rc = main(["backtest", "--trace", str(p), "--cold-start", "300", "--json", str(out / "r.json"),
               "--timeline", str(out / "t.csv"), "--plot", str(out / "p.png"), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    for name in ("foresail", "hpa", "kpa", "apa", "holt-winters", "static", "oracle"):
        assert name in text
    data = json.loads((out / "r.json").read_text())
    row = data["traces"]["trace"]
    assert row["oracle"]["cost_vs_oracle"] == 1.0 and row["oracle"]["slo_attainment"] == 1.0
    assert row["static"]["slo_attainment"] == 1.0 and row["static"]["cost_vs_oracle"] > 1.0
    assert set(row["foresail"]) >= {"slo_attainment", "replica_hours", "cost_vs_oracle", "scale_events"}
    with open(out / "t.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["policy", "time_s", "arrivals", "provisioned_replicas", "ready_replicas"]
    assert len(rows) == 7 * 2 * 1440
    assert (out / "p.png").stat().st_size > 10_000


def test_match_slo_reaches_the_target(tmp_path, capsys):
    p = make_trace(tmp_path)
    rc = main(["backtest", "--trace", str(p), "--policy", "hpa", "--match-slo", "0.99", "--json",
               str(tmp_path / "r.json"), "--no-progress"])
    assert rc == 0
    data = json.loads((tmp_path / "r.json").read_text())
    hpa = data["traces"]["trace"]["hpa"]
    assert hpa["slo_attainment"] >= 0.99 and hpa["setting"] == data["settings"]["tuned_settings"]["hpa"]


def test_bad_input_is_an_error_not_a_crash(tmp_path, capsys):
    assert main(["backtest", "--trace", str(tmp_path / "missing.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
    p = make_trace(tmp_path)
    assert main(["backtest", "--trace", str(p), "--capacity", "-1"]) == 2


@pytest.mark.parametrize("command, flags, message", [
    ("backtest", ["--capacity", "inf"], "--capacity must be a positive number"),
    ("backtest", ["--capacity", "1e-300"], "--capacity 1e-300 req/s is too small for trace: its busiest step would "
                                           "need more than 1e+12 replicas"),  # was a run whose oracle held 1
    ("backtest", ["--capacity", "1e-320"], "is too small for trace"),  # was an OverflowError
    ("backtest", ["--min-replicas", "5", "--max-replicas", "2"], "--min-replicas <= --max-replicas"),
    ("backtest", ["--max-replicas", "0"], "--max-replicas >= 1"),
    ("backtest", ["--min-replicas", "0"], "--min-replicas 0 needs --scale-to-zero"),  # the baselines went to 0
    ("backtest", ["--min-replicas", str(10**20), "--max-replicas", str(10**20)],
     "--max-replicas <= 1e+12 and"),  # was an OverflowError at the first step: no int64 holds it
    ("backtest", ["--interval", "1e9"], "less than one decision step"),
    ("backtest", ["--cold-start", "-1"], "--cold-start and --slo-wait must be >= 0"),
    ("backtest", ["--cold-start", "nan"], "--cold-start and --slo-wait must be >= 0"),  # NaN passed every bound
    ("backtest", ["--cold-start", "inf"], "--cold-start and --slo-wait must be >= 0"),
    ("backtest", ["--cold-start", "1e300"],  # was a ValueError from numpy, deep in Foresail's forecast
     "--cold-start 1e+300 s is as long as trace (2880 steps of 60 s): no replica asked for would serve before it ends"),
    ("backtest", ["--cold-start", "172800"], "--cold-start 172800 s is as long as trace"),  # was a run of it
    ("backtest", ["--interval", "nan"], "--interval > 0, in seconds (not NaN or inf)"),
    ("backtest", ["--slo-wait", "nan"], "--cold-start and --slo-wait must be >= 0"),
    ("backtest", ["--slo-target", "1"], "--slo-target is an attainment in [0.5, 1)"),
    ("backtest", ["--match-slo", "0"], "--match-slo is an attainment in (0, 1]"),
    ("backtest", ["--schedule", "{missing}/s.yaml"], "--schedule {missing}/s.yaml: No such file"),
    ("backtest", ["--no-activator"], "--no-activator takes away what holds requests at zero replicas: it needs "
     "--scale-to-zero"),  # was a run exactly as without it: with replicas always up nothing is held
    ("backtest", ["--slots", "4"], "--slots is the batching slots of single requests: it needs --queue requests"),
    ("forecast", ["--horizon", "0"], "--horizon is a number of minutes > 0"),
    ("forecast", ["--horizon", "-5"], "--horizon is a number of minutes > 0"),
])
def test_bad_flags_are_an_error_that_says_which(tmp_path, capsys, command, flags, message):
    p = make_trace(tmp_path)
    missing = tmp_path / "no-such-folder"
    flags = [f.format(missing=missing) for f in flags]
    assert main([command, "--trace", str(p), "--no-progress", *flags]) == 2
    captured = capsys.readouterr()
    assert message.format(missing=missing) in captured.err and captured.out == ""


@pytest.mark.parametrize("command, flags, message", [
    ("backtest", ["--json", "{missing}/r.json"], "is not a folder this user can write to"),
    ("backtest", ["--timeline", "{tmp}"], "is a folder, not a file"),
    ("backtest", ["--plot", "{tmp}/p.txt"], "the name must end in one of"),
    ("backtest", ["--plot", "{tmp}/p.png", "--plot-hours", "5:2"], "--plot-hours is START:END"),
    ("backtest", ["--plot", "{tmp}/p.png", "--plot-hours", "x"], "--plot-hours is START:END"),
    ("backtest", ["--json", "{tmp}/r.json", "--plot-hours", "1:2"], "--plot-hours chooses the window of the plot: "
     "it needs --plot FILE.png"),  # was a run that drew nothing
    ("backtest", ["--plot", "{tmp}/p.png", "--plot-hours", "100:200"],
     "--plot-hours 100:200 holds no step of trace, which lasts 48 hours"),  # was an empty plot
    ("forecast", ["--json", "{missing}/f.json"], "is not a folder this user can write to"),
    ("schedules", ["--out", "{missing}/s.yaml"], "is not a folder this user can write to"),
])
def test_an_output_that_cannot_be_written_is_refused_before_the_run(tmp_path, capsys, command, flags, message):
    p = make_trace(tmp_path)
    flags = [f.format(tmp=tmp_path, missing=tmp_path / "no-such-folder") for f in flags]
    assert main([command, "--trace", str(p), *flags] + (["--no-progress"] if command != "schedules" else [])) == 2
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""  # nothing ran: no table, no schedules


@pytest.mark.parametrize("command", ["backtest", "forecast"])
def test_a_trace_whose_grid_would_not_fit_in_memory_is_an_error(tmp_path, capsys, command):
    p = tmp_path / "seconds-as-ms.csv"
    p.write_text("time_s,arrivals\n0,5\n1000000000000,5\n")  # two rows 10^12 s apart: 1.7e10 one-minute steps
    assert main([command, "--trace", str(p), "--no-progress"]) == 2
    assert "check the time column's unit" in capsys.readouterr().err


def servegen_archive():
    """A ServeGen customers' archive (svc/chunk-1), of data that gzip cannot shrink to nothing."""
    rng = np.random.default_rng(2)
    data = "".join(f"{600 * i},{r:.6f},1.0,Gamma,1,1\n" for i, r in enumerate(rng.random(500))).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        member = tarfile.TarInfo("data/language/svc/chunk-1-trace.csv")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("command", ["backtest", "forecast"])
@pytest.mark.parametrize("name, reason", [
    ("folder.tar.gz:svc/chunk-1", "folder.tar.gz: cannot read the archive (Is a directory)"),
    ("text.tar.gz:svc/chunk-1", "text.tar.gz: cannot read the archive (not a gzip file)"),
    ("cut.tar.gz:svc/chunk-1", "cut.tar.gz: cannot read the archive (Compressed file ended before"),
    ("text.csv.gz", "text.csv.gz: cannot read the file (Not a gzipped file"),
])
def test_a_trace_that_cannot_be_read_is_an_error_that_says_why(tmp_path, capsys, command, name, reason):
    (tmp_path / "folder.tar.gz").mkdir()
    for text in ("text.tar.gz", "text.csv.gz"):
        (tmp_path / text).write_text("time_s,arrivals\n0,1\n60,2\n")
    archive = servegen_archive()
    (tmp_path / "whole.tar.gz").write_bytes(archive)
    (tmp_path / "cut.tar.gz").write_bytes(archive[: len(archive) // 2])
    assert len(load_trace(f"{tmp_path}/whole.tar.gz:svc/chunk-1").arrivals) == 500  # what was cut
    assert main([command, "--trace", str(tmp_path / name), "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: {tmp_path}/{reason}") and captured.err.count("\n") == 1  # no traceback
    assert captured.out == ""


def test_forecast_command(tmp_path, capsys):
    p = make_trace(tmp_path)
    assert main(["forecast", "--trace", str(p), "--horizon", "10", "--horizon", "30", "--no-progress",
                 "--json", str(tmp_path / "f.json")]) == 0
    data = json.loads((tmp_path / "f.json").read_text())["trace"]
    assert [r["horizon_s"] for r in data] == [600.0, 1800.0]
    assert all(0 <= r["window_coverage"]["0.9"] <= 1 for r in data)
    assert "persistence" in capsys.readouterr().out


def test_the_upper_quantiles_column_is_named_for_it_and_kept_apart(tmp_path, capsys):
    """--quantile 0.999 was "pinball p100", run into the column before it."""
    p = make_trace(tmp_path)
    assert main(["forecast", "--trace", str(p), "--horizon", "10", "--quantile", "0.999", "--no-progress"]) == 0
    header = next(line for line in capsys.readouterr().out.splitlines() if line.lstrip().startswith("horizon"))
    assert header.split()[-5:] == ["p50", "pinball", "p99.9", "coverage", "window"] and "p50 pinball p99.9" in header


def test_slo_target_turns_on_foresails_governor(tmp_path, capsys):
    p = make_trace(tmp_path)
    runs = {}
    for extra in ([], ["--slo-target", "0.99"]):
        out = tmp_path / f"r{len(extra)}.json"
        assert main(["backtest", "--trace", str(p), "--cold-start", "300", "--policy", "foresail", "--json",
                     str(out), "--no-progress", *extra]) == 0
        runs[len(extra)] = json.loads(out.read_text())["traces"]["trace"]["foresail"]
    off, on = runs[0], runs[2]
    assert off["setting"] is None and on["setting"] == 0.99
    # the daily spike's misses raise the governor: more replica-hours, and no lower attainment
    assert on["replica_hours"] > off["replica_hours"] and on["slo_attainment"] >= off["slo_attainment"]
    assert main(["backtest", "--trace", str(p), "--slo-target", "1"]) == 2
    assert "--slo-target" in capsys.readouterr().err


def job_trace(tmp_path, period_s: int, opens_s: int, length_s: int):
    """Three days of 1 req/s with a job at 30 req/s for `length_s` from `opens_s` of every `period_s`
    (time_s from midnight)."""
    t = np.arange(0, 3 * 86400, 60)
    job = (t % period_s >= opens_s) & (t % period_s < opens_s + length_s)
    p = tmp_path / "job.csv"
    p.write_text("time_s,arrivals\n" + "".join(f"{ti},{60 * (30 if j else 1)}\n" for ti, j in zip(t, job, strict=True)))
    return p


@pytest.mark.parametrize("period_s, opens_s, length_s, window", [
    (86400, 12 * 3600, 1800, "start: '12:00', end: '12:30'"),  # a daily job
    (3600, 0, 600, "start: '*:00', end: '*:10'"),  # a job in the first 10 min of every hour
])
def test_a_schedule_lifts_foresail_before_a_job_its_history_does_not_foretell(tmp_path, capsys, period_s, opens_s,
                                                                              length_s, window):
    p = job_trace(tmp_path, period_s, opens_s, length_s)
    manifest = tmp_path / "llmd.yaml"  # an LLMDeployment, as kubectl would apply it
    manifest.write_text("apiVersion: foresail.dev/v1alpha1\nkind: LLMDeployment\nmetadata: {name: chat}\n"
                        "spec:\n  model: {source: builtin:tiny}\n  autoscaling:\n    schedules:\n"
                        f"      - {{name: job, {window}, minReplicas: 30}}\n")
    figures = {}
    for label, extra in (("plain", []), ("scheduled", ["--schedule", str(manifest)])):
        assert main(["backtest", "--trace", str(p), "--policy", "foresail", "--cold-start", "300", "--capacity", "1",
                     "--no-progress", "--json", str(tmp_path / f"{label}.json"), *extra]) == 0
        figures[label] = json.loads((tmp_path / f"{label}.json").read_text())
    plain, scheduled = (figures[k]["traces"]["job"]["foresail"] for k in ("plain", "scheduled"))
    assert plain["slo_attainment"] < 0.97 and scheduled["slo_attainment"] >= 0.999, (plain, scheduled)
    described = window.replace("start: ", "").replace("', end: '", "-").strip("'")
    assert figures["scheduled"]["settings"]["schedules"] == [f"job {described} UTC: at least 30"]
    assert f"foresail's scheduled floors: job {described} UTC: at least 30" in capsys.readouterr().out


@pytest.mark.parametrize("text, message", [
    (None, "--schedule .*missing.yaml: No such file"),
    ("[unclosed", "not YAML"),
    ("42", "expected a YAML list of schedules"),
    ("spec: {autoscaling: {}}", "expected a YAML list of schedules"),
    ("- {start: 9am, end: '18:00', minReplicas: 2}", r"schedules\[0\]\.start and \.end must be times of day"),
    ("- {start: '09:00', end: '18:00', minReplicas: two}", r"schedules\[0\]\.minReplicas must be a whole number"),
    ("- {start: '09:00', end: '18:00', days: Mon, minReplicas: 2}", r"schedules\[0\]\.days must name days"),
])
def test_a_bad_schedule_file_is_an_error_that_says_why(tmp_path, capsys, text, message):
    p = make_trace(tmp_path)
    path = tmp_path / ("missing.yaml" if text is None else "s.yaml")
    if text is not None:
        path.write_text(text)
    assert main(["backtest", "--trace", str(p), "--policy", "foresail", "--schedule", str(path), "--no-progress"]) == 2
    assert re.search(message, capsys.readouterr().err)


def test_forecast_json_writes_an_undefined_score_as_null(tmp_path, capsys):
    """A constant trace: naive forecasts never err, so MASE (error over that of the naive forecast) is 0/0."""
    p = tmp_path / "const.csv"
    p.write_text("time_s,arrivals\n" + "".join(f"{60 * i},600\n" for i in range(200)))
    assert main(["forecast", "--trace", str(p), "--horizon", "10", "--no-progress", "--json",
                 str(tmp_path / "f.json")]) == 0

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    (row,) = json.loads((tmp_path / "f.json").read_text(), parse_constant=refuse)["const"]
    assert row["mase"]["persistence"] is None and row["wape"]["persistence"] == 0


def test_forecast_says_which_horizons_a_short_trace_leaves_out(tmp_path, capsys):
    """Two hours of one-minute steps: the hour after the first that is learned from scores 10 minutes, not 60."""
    p = tmp_path / "short.csv"
    p.write_text("time_s,arrivals\n" + "".join(f"{60 * i},{600 + 60 * (i % 7)}\n" for i in range(120)))
    assert main(["forecast", "--trace", str(p), "--horizon", "10", "--horizon", "60", "--no-progress", "--json",
                 str(tmp_path / "f.json")]) == 0
    assert "note: short: left out horizon(s) 60 min: after the 60 steps of 60 s it learns from, the trace has 60 to " \
           "score, and a horizon needs twice its length" in capsys.readouterr().err
    assert [r["horizon_s"] for r in json.loads((tmp_path / "f.json").read_text())["short"]] == [600.0]


def test_the_timeline_keeps_fractional_seconds_and_every_digit_of_the_arrivals(tmp_path, capsys):
    p = tmp_path / "big.csv"
    p.write_text("time_s,arrivals\n0,24691356\n1,1\n2,3\n")  # in half-second steps: 12345678 twice, 0.5, 1.5
    assert main(["backtest", "--trace", str(p), "--policy", "static", "--interval", "0.5", "--cold-start", "0",
                 "--no-progress", "--timeline", str(tmp_path / "t.csv")]) == 0
    with open(tmp_path / "t.csv") as fh:
        rows = [(r["time_s"], r["arrivals"]) for r in csv.DictReader(fh) if r["policy"] == "static"]
    assert rows == [("0", "12345678"), ("0.5", "12345678"), ("1", "0.5"), ("1.5", "0.5"), ("2", "1.5"), ("2.5", "1.5")]


def test_forecast_keeps_the_scores_of_two_traces_of_the_same_name(tmp_path, capsys):
    """Two files named short.csv: the JSON had one entry, the second trace's scores over the first's."""
    (tmp_path / "other").mkdir()
    steady, varied = tmp_path / "short.csv", tmp_path / "other" / "short.csv"
    steady.write_text("time_s,arrivals\n" + "".join(f"{60 * i},600\n" for i in range(120)))
    varied.write_text("time_s,arrivals\n" + "".join(f"{60 * i},{600 + 60 * (i % 7)}\n" for i in range(120)))
    assert main(["forecast", "--trace", str(steady), "--trace", str(varied), "--horizon", "10", "--no-progress",
                 "--json", str(tmp_path / "f.json")]) == 0
    data = json.loads((tmp_path / "f.json").read_text())
    assert list(data) == ["short#1", "short#2"]
    assert data["short#1"][0]["wape"]["persistence"] == 0 < data["short#2"][0]["wape"]["persistence"]
    assert "== short#1 " in capsys.readouterr().out


def test_forecast_checks_every_trace_before_scoring_any(tmp_path, capsys):
    good = make_trace(tmp_path)
    assert main(["forecast", "--trace", str(good), "--trace", str(tmp_path / "missing.csv"), "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert "missing.csv: no such file" in captured.err and captured.out == ""  # was the first trace scored, then this


@pytest.mark.parametrize("command, flag", [("backtest", "--json"), ("backtest", "--timeline"), ("backtest", "--plot"),
                                           ("forecast", "--json"), ("schedules", "--out")])
def test_an_output_that_fails_to_write_after_the_run_is_an_error_not_a_traceback(tmp_path, capsys, command, flag):
    """A name longer than the folder takes passes the checks made before the run, and failed at the end of it."""
    p = make_trace(tmp_path)
    long = str(tmp_path / ("x" * 300 + ".png"))
    extra = ["--json", str(tmp_path / "r.json")] if flag != "--json" and command == "backtest" else []
    flags = [flag, long, *extra] + (["--horizon", "10"] if command == "forecast" else [])
    assert main([command, "--trace", str(p), *flags] + (["--no-progress"] if command != "schedules" else [])) == 1
    assert f"error: {flag} {long}: cannot write it (File name too long)" in capsys.readouterr().err
    assert not extra or json.loads((tmp_path / "r.json").read_text())["traces"]  # the other outputs are written
    assert not [f for f in tmp_path.iterdir() if "partial" in f.name]


def test_a_write_that_fails_part_way_leaves_the_old_file_and_no_partial_one(tmp_path):
    from foresail.backtest.report import write_file

    old = tmp_path / "t.csv"
    old.write_text("the old timeline\n")

    def fail_part_way(to):
        to.write_text("half a timel")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_file(old, fail_part_way)
    assert old.read_text() == "the old timeline\n" and [f.name for f in tmp_path.iterdir()] == ["t.csv"]
    write_file(old, lambda to: to.write_text("the new one\n"))
    assert old.read_text() == "the new one\n" and [f.name for f in tmp_path.iterdir()] == ["t.csv"]


@pytest.mark.parametrize("command", ["backtest", "forecast", "schedules"])
def test_an_archive_named_without_a_customer_is_an_error_that_says_how_to_name_one(tmp_path, capsys, command):
    """Was pandas' list of every member (a traceback from schedules), and for one member, that file read."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for chunk in (1, 2):
            data = "".join(f"{600 * i},{i % 3},1.0,Gamma,1,1\n" for i in range(50)).encode()
            member = tarfile.TarInfo(f"data/language/svc/chunk-{chunk}-trace.csv")
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    p = tmp_path / "clients.tar.gz"
    p.write_bytes(buf.getvalue())
    assert len(load_trace(f"{p}:svc/chunk-2").arrivals) == 50
    assert main([command, "--trace", str(p)] + (["--no-progress"] if command != "schedules" else [])) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: {p}: an archive; name one ServeGen customer in it, as {p}:<service>/chunk-<i>\n"


def test_forecast_shows_an_undefined_mase_as_n_a_and_says_why(tmp_path, capsys):
    """The half learned from is flat: no change per step to scale MASE by. The table showed [nan]."""
    p = tmp_path / "flat.csv"
    p.write_text("time_s,arrivals\n" + "".join(f"{60 * i},{600 if i < 120 else 600 + 60 * (i % 7)}\n"
                                               for i in range(240)))
    assert main(["forecast", "--trace", str(p), "--horizon", "10", "--no-progress", "--json",
                 str(tmp_path / "f.json")]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out and out.count("[n/a]") == 4
    assert ("[n/a]: MASE divides the error by the mean change from one of the trace's steps to the next in the part "
            "it learns from, and that part never changes") in out
    assert "seasonal-naive n/a: it forecasts the demand of a day before, which the trace does not have" in out
    (row,) = json.loads((tmp_path / "f.json").read_text())["flat"]
    assert row["mase_scale"] == 0 and row["mase"]["persistence"] is None and row["wape"]["persistence"] > 0


def test_forecast_scores_a_horizon_between_minutes_once_at_the_minute_and_says_so(tmp_path, capsys):
    """--horizon 0.5 --horizon 1 printed two rows of 1 min, the same scores twice, and two JSON entries."""
    p = tmp_path / "short.csv"
    p.write_text("time_s,arrivals\n" + "".join(f"{60 * i},{600 + 60 * (i % 7)}\n" for i in range(120)))
    assert main(["forecast", "--trace", str(p), "--horizon", "0.5", "--horizon", "1", "--horizon", "10.2",
                 "--no-progress", "--json", str(tmp_path / "f.json")]) == 0
    captured = capsys.readouterr()
    assert "note: --horizon 0.5 is scored at 1 min: the forecaster's steps are whole minutes" in captured.err
    assert "note: --horizon 10.2 is scored at 10 min" in captured.err and "--horizon 1 " not in captured.err
    assert [r["horizon_s"] for r in json.loads((tmp_path / "f.json").read_text())["short"]] == [60.0, 600.0]
    assert [line.split()[0] for line in captured.out.splitlines()[2:4]] == ["1m", "10m"]


@pytest.mark.parametrize("name, mode", [("clients.tar.xz", "w:xz"), ("clients.tar.bz2", "w:bz2"),
                                        ("clients.tgz", "w:gz"), ("clients.tar", "w")])
def test_an_archive_compressed_otherwise_is_named_as_its_hint_says(tmp_path, capsys, name, mode):
    """The hint offered ARCHIVE:<service>/chunk-<i> for any tar file, but only a .tar.gz one was read so: for
    the others that was `no such file`."""
    p = tmp_path / name
    with tarfile.open(p, mode) as tar:
        data = "".join(f"{600 * i},{i % 3},1.0,Gamma,1,1\n" for i in range(50)).encode()
        member = tarfile.TarInfo("data/language/svc/chunk-2-trace.csv")
        member.size = len(data)
        tar.addfile(member, io.BytesIO(data))
    assert main(["backtest", "--trace", str(p), "--no-progress"]) == 2
    assert capsys.readouterr().err == f"error: {p}: an archive; name one ServeGen customer in it, as " \
        f"{p}:<service>/chunk-<i>\n"
    assert main(["backtest", "--trace", f"{p}:svc/chunk-2", "--policy", "oracle", "--no-progress"]) == 0
    assert "oracle         100.00%" in capsys.readouterr().out
    renamed = p.rename(tmp_path / "clients.dat")  # a tar archive by its bytes, not its name: no such form to offer
    assert main(["backtest", "--trace", str(renamed), "--no-progress"]) == 2
    assert capsys.readouterr().err == f"error: {renamed}: a tar archive; one ServeGen customer is read from an " \
        "archive named .tar, .tar.gz, .tgz, .tar.bz2, .tar.xz, as ARCHIVE:<service>/chunk-<i>\n"
