"""Trace loading: supported formats, and a clear error for bad traces."""

import bz2
import gzip
import io
import json
import lzma
import zipfile

import numpy as np
import pytest

from foresail.backtest.traces import Trace, TraceError, load_trace
from foresail.cli import main


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_generic_csv_with_tokens_and_resampling(tmp_path):
    p = write(tmp_path, "t.csv",
              "time_s,arrivals,input_tokens,output_tokens\n0,6,60,6\n30,3,30,3\n60,0,0,0\n90,9,90,9\n")
    tr = load_trace(p)
    assert tr.step_s == 30 and list(tr.arrivals) == [6, 3, 0, 9]
    assert list(tr.tokens) == [66, 33, 0, 99]
    coarse = tr.resample(60)
    assert list(coarse.arrivals) == [9, 9]
    fine = tr.resample(15)
    assert np.allclose(fine.arrivals, [3, 3, 1.5, 1.5, 0, 0, 4.5, 4.5])


def test_token_columns_of_zeros_beside_requests_are_no_token_counts(tmp_path):
    """A runtime that did not count tokens leaves columns of zeros: replayed in requests by default (in tokens the
    demand was nothing and KPA divided by zero), and a clear error where tokens are asked for."""
    p = write(tmp_path, "t.csv", "time_s,arrivals,input_tokens,output_tokens\n" +
              "".join(f"{60 * i},{5 + i % 3},0,0\n" for i in range(60)))
    tr = load_trace(p)
    assert tr.default_unit == "requests" and list(tr.demand()) == list(tr.arrivals)
    with pytest.raises(TraceError, match="token columns are all zero beside 360 requests.*--unit requests"):
        tr.demand("tokens")
    out = tmp_path / "r.json"
    assert main(["backtest", "--trace", str(p), "--cold-start", "120", "--capacity", "2", "--no-progress",
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["settings"]["unit"] == {"t": "req/s"}
    quiet = write(tmp_path, "quiet.csv", "time_s,arrivals,input_tokens,output_tokens\n0,0,0,0\n60,0,0,0\n")
    assert load_trace(quiet).default_unit == "tokens"  # no requests either: the columns may be counts


def test_missing_rows_of_a_generic_csv_are_zero_and_gaps_that_can_be_bridged(tmp_path):
    tr = load_trace(write(tmp_path, "t.csv", "time_s,arrivals\n0,1\n120,2\n"))
    assert tr.step_s == 120 and list(tr.arrivals) == [1, 2] and tr.gaps is None
    tr = load_trace(write(tmp_path, "u.csv", "time_s,arrivals,output_tokens\n0,1,10\n60,1,10\n240,4,40\n"))
    assert list(tr.arrivals) == [1, 1, 0, 0, 4] and list(tr.gaps) == [False, False, True, True, False]
    bridged = tr.fill_gaps()
    assert list(bridged.arrivals) == [1, 1, 2, 3, 4] and list(bridged.tokens) == [10, 10, 20, 30, 40]


def test_azure_and_mooncake_formats(tmp_path):
    az = write(tmp_path, "AzureLLMInferenceTrace_code.csv",
               "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,10,1\n"
               "2023-11-16 18:17:03.9900000,20,2\n2023-11-16 18:17:05.5000000,30,3\n")
    tr = load_trace(az)
    assert tr.step_s == 1 and list(tr.arrivals) == [2, 0, 1] and list(tr.tokens) == [33, 0, 33]
    mc = tmp_path / "conversation_trace.jsonl.gz"
    with gzip.open(mc, "wt") as fh:
        for ts in (0, 0, 2500):
            fh.write(json.dumps({"timestamp": ts, "input_length": 100, "output_length": 10, "hash_ids": [1]}) + "\n")
    tr = load_trace(mc)
    assert list(tr.arrivals) == [2, 0, 1] and tr.tokens.sum() == 330


AZURE = ("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03.9799600,10,1\n"
         "2023-11-16 18:17:03.9900000,20,2\n2023-11-16 18:17:05.5000000,30,3\n")
UTC_START = 1700158623  # 2023-11-16 18:17:03 UTC


@pytest.mark.parametrize("name, data, start_s", [
    ("AzureLLMInferenceTrace_code.csv", "\ufeff".encode() + AZURE.encode(), UTC_START),  # Excel's "CSV UTF-8"
    ("AzureLLMInferenceTrace_code.csv.gz", gzip.compress(AZURE.encode()), UTC_START),
    ("AzureLLMInferenceTrace_code.csv", AZURE.replace("00,", "00+05:00,").encode(), UTC_START - 5 * 3600),
])
def test_an_azure_trace_with_a_bom_gzipped_or_in_a_time_zone_is_read_as_azure(tmp_path, name, data, start_s):
    (tmp_path / name).write_bytes(data)
    tr = load_trace(tmp_path / name)
    assert tr.name == "azure-code" and list(tr.arrivals) == [2, 0, 1] and list(tr.tokens) == [33, 0, 33]
    assert tr.start_s == start_s


def test_servegen_client_and_gap_filling(tmp_path):
    tr = load_trace(write(tmp_path, "chunk-1-trace.csv",
                          "0,1.0,1.0,Gamma,1,1\n600,2.0,1.0,Gamma,1,1\n1200,0.5,1.0,Gamma,1,1\n"))
    assert tr.step_s == 600 and np.allclose(tr.arrivals, [600, 1200, 300])
    quiet_start = load_trace(write(tmp_path, "chunk-3-trace.csv", "0,0,0,,0,0\n600,2.0,1.0,Gamma,1,1\n"))
    assert quiet_start.step_s == 600 and np.allclose(quiet_start.arrivals, [0, 1200])
    gapped = Trace("g", 600, np.array([600.0, 0.0, 0.0, 1500.0]), gaps=np.array([False, True, True, False]))
    assert np.allclose(gapped.fill_gaps().arrivals, [600, 900, 1200, 1500])


@pytest.mark.parametrize(
    "name,text,message",
    [
        ("empty.csv", "", "empty"),
        ("header.csv", "time_s,arrivals\n", "empty"),
        ("unsorted.csv", "time_s,arrivals\n60,1\n0,2\n", "not strictly increasing"),
        ("negative.csv", "time_s,arrivals\n0,1\n60,-2\n", "negative"),
        ("columns.csv", "when,count\n0,1\n", "missing column(s) time_s, arrivals"),
        ("text.csv", "time_s,arrivals\n0,abc\n", "non-numeric"),
        ("inf.csv", "time_s,arrivals\n0,10\ninf,10\n", "inf.csv: column time_s has an infinite value at data row 2"),
        ("inf-arrivals.csv", "time_s,arrivals\n0,10\n60,-inf\n", "column arrivals has an infinite value at data row 2"),
        ("AzureLLMInferenceTrace_x.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"
         "2023-11-16 18:17:05,1,1\n2023-11-16 18:17:03,1,1\n", "not sorted"),
        ("AzureLLMInferenceTrace_tz.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"
         "2023-11-16 18:17:03,1,1\n2023-11-16 18:19:02+05:00,1,1\n",
         "AzureLLMInferenceTrace_tz.csv: TIMESTAMP has rows in different time zones"),
        ("nan.jsonl", '{"timestamp": 0}\n{"timestamp": NaN}\n',
         "nan.jsonl: line 2 is not a Mooncake record (the timestamp and token counts must be finite numbers)"),
        ("inf.jsonl", '{"timestamp": 0}\n{"timestamp": Infinity}\n', "inf.jsonl: line 2 is not a Mooncake record"),
        ("span.jsonl", '{"timestamp": 0}\n{"timestamp": 1e300}\n', "the trace spans 1e\\+297 s"),
        ("span.csv", "time_s,arrivals\n0,1\n60,2\n6e20,3\n",  # was "not on a regular interval": 1e19 wrapped as int
         "span.csv: the trace spans 1e\\+19 steps of 60 s (more than 10,000,000)"),
    ],
)
def test_bad_traces_get_a_clear_error(tmp_path, name, text, message):
    with pytest.raises(TraceError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_trace(write(tmp_path, name, text))


def test_missing_file(tmp_path):
    with pytest.raises(TraceError, match="no such file"):
        load_trace(tmp_path / "nope.csv")


@pytest.mark.parametrize("name, text", [
    ("generic.csv", "time_s,arrivals\n0,10,5\n60,20,5\n"),  # was read as time_s 10, 20 and arrivals 5, 5
    ("ragged.csv", "time_s,arrivals\n0,10,5\n60,20\n"),  # was an error about row 2, the good one
    ("servegen-x-10min.csv", "t_start_s,rate_rps\n0,1,7\n600,2,7\n"),
    ("AzureLLMInferenceTrace_x.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03,4,1,9\n"),
])
def test_rows_with_more_fields_than_the_header_are_an_error_not_shifted_columns(tmp_path, name, text):
    with pytest.raises(TraceError, match=f"{name}: rows have more fields than the header names"):
        load_trace(write(tmp_path, name, text))


def test_a_trailing_comma_on_each_row_is_no_extra_column(tmp_path):
    tr = load_trace(write(tmp_path, "t.csv", "time_s,arrivals\r\n0,10,\r\n60,20,\r\n"))
    assert tr.step_s == 60 and tr.start_s == 0 and list(tr.arrivals) == [10, 20]


@pytest.mark.parametrize("step_s, steps", [(1e-320, "inf"), (60.0, "3.333e\\+298")])
def test_a_grid_too_fine_to_count_is_an_error_not_an_overflow(step_s, steps):
    tr = Trace("t", 1e300, np.array([1.0, 2.0]))  # 2e300 s: was an OverflowError turning inf steps into an int
    with pytest.raises(TraceError, match=f"is {steps} steps \\(more than 10,000,000\\); check the time column"):
        tr.resample(step_s)


def zipped(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr(name, data)
    return out.getvalue()


COMPRESS = {"gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}
MOONCAKE = "".join(json.dumps({"timestamp": ts, "input_length": 100, "output_length": 10}) + "\n"
                   for ts in (0, 0, 2500))
PLAIN = [("AzureLLMInferenceTrace_code.csv", AZURE, "azure-code"),
         ("servegen-chat-10min.csv", "t_start_s,rate_rps\n0,1\n600,2\n", "servegen-chat"),
         ("chunk-1-trace.csv", "0,1.0,1.0,Gamma,1,1\n600,2.0,1.0,Gamma,1,1\n", "chunk-1"),
         ("steps.csv", "time_s,arrivals\n0,5\n60,7\n", "steps"),
         ("conversation_trace.jsonl", MOONCAKE, "mooncake-conversation")]


@pytest.mark.parametrize("how", ["gz", "bz2", "xz", "zip"])
@pytest.mark.parametrize("name, text, trace_name", PLAIN, ids=[p[0] for p in PLAIN])
def test_a_compressed_trace_of_each_format_reads_as_the_file_itself(tmp_path, how, name, text, trace_name):
    plain = load_trace(write(tmp_path, name, text))
    data = zipped(name, text.encode()) if how == "zip" else COMPRESS[how](text.encode())
    (tmp_path / f"{name}.{how}").write_bytes(data)
    tr = load_trace(tmp_path / f"{name}.{how}")  # a .bz2 was read as a generic CSV: "missing column(s) time_s"
    assert tr.name == plain.name == trace_name and tr.step_s == plain.step_s and tr.start_s == plain.start_s
    assert np.array_equal(tr.arrivals, plain.arrivals)
    with pytest.raises(TraceError, match=f"{name}.{how}: cannot read the file"):  # not what its name says
        load_trace(write(tmp_path, f"{name}.{how}", text))


def test_a_zip_of_several_files_and_a_zstd_file_are_refused_with_a_reason(tmp_path):
    two = tmp_path / "two.csv.zip"
    with zipfile.ZipFile(two, "w") as archive:
        archive.writestr("a.csv", "time_s,arrivals\n0,1\n")
        archive.writestr("b.csv", "time_s,arrivals\n0,1\n")
    with pytest.raises(TraceError, match="two.csv.zip: a ZIP file of 2 files; a trace in a ZIP file is the only"):
        load_trace(two)
    (tmp_path / "t.csv.zst").write_bytes(bytes.fromhex("28b52ffd") + b"\0" * 20)  # pandas wanted zstandard: ImportError
    with pytest.raises(TraceError, match=r"t.csv.zst: a zstd-compressed file, which is not read; decompress it"):
        load_trace(tmp_path / "t.csv.zst")
