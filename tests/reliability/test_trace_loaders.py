"""`load_trace` on malformed files: always a TraceError with a clear message, never another exception.

Random bytes under every name the loader dispatches on, and structured damage (truncated rows,
wrong columns, NaN, infinities, negatives, unsorted or duplicated times, empty files, directories).
Time values stay small, so that no generated trace asks for a huge array.
"""

from __future__ import annotations

import gzip
import itertools
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foresail.backtest.traces import Trace, TraceError, load_trace

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
NAMES = ["trace.csv", "AzureLLMInferenceTrace_conv.csv", "servegen-chat-10min.csv", "chunk-3-trace.csv",
         "conversation_trace.jsonl", "conversation_trace.jsonl.gz", "no-suffix"]
HEADERS = ["time_s,arrivals", "time_s,arrivals,input_tokens,output_tokens", "TIMESTAMP,ContextTokens,GeneratedTokens",
           "t_start_s,rate_rps,active_clients", "when,count", "", "time_s", "arrivals,time_s"]
CELLS = st.one_of(st.integers(-3, 3000).map(str), st.sampled_from(["", "nan", "NaN", "inf", "-inf", "1e400", "abc",
                                                                   "2023-11-16 18:17:03", "-0", "1.5", '"x,y"']))
_ids = itertools.count()


def fresh(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / f"case{next(_ids)}"
    folder.mkdir()
    return folder / name


def check(path: Path) -> None:
    """A usable trace or a TraceError with a message naming the file; anything else fails the test."""
    try:
        trace = load_trace(path)
    except TraceError as exc:
        assert str(path) in str(exc) or path.name in str(exc) or "azure-" in str(exc) or "mooncake-" in str(exc), \
            f"the message does not say which file: {exc}"
        assert len(str(exc)) > len(str(path)) + 5, f"no reason given: {exc}"
        return
    assert isinstance(trace, Trace) and len(trace.arrivals) > 0
    assert all(math.isfinite(v) and v >= 0 for v in trace.arrivals)


@SETTINGS
@given(name=st.sampled_from(NAMES),
       data=st.binary(max_size=400))
def test_random_bytes(tmp_path, name, data):
    path = fresh(tmp_path, name)
    path.write_bytes(data)
    check(path)


@SETTINGS
@given(name=st.sampled_from(NAMES), header=st.sampled_from(HEADERS),
       rows=st.lists(st.lists(CELLS, min_size=0, max_size=6), max_size=12), truncate=st.integers(0, 40))
def test_damaged_csv_and_jsonl(tmp_path, name, header, rows, truncate):
    path = fresh(tmp_path, name.replace(".gz", ""))
    if name.endswith(".jsonl"):
        text = "\n".join('{"timestamp": %s, "input_length": %s, "output_length": 1}' % tuple((r + ["0", "0"])[:2])
                         for r in rows)
    else:
        text = "\n".join([header] + [",".join(r) for r in rows])
    text = text[:len(text) - truncate] if truncate < len(text) else text
    path.write_text(text)
    check(path)


GOOD = "time_s,arrivals\n0,1\n60,2\n120,3\n"


@pytest.mark.parametrize("name,text,message", [
    ("empty.csv", "", "empty"),
    ("header-only.csv", "time_s,arrivals\n", "empty"),
    ("truncated.csv", "time_s,arrivals\n0,1\n60,", "non-numeric or empty"),
    ("columns.csv", "t,n\n0,1\n", "missing column"),
    ("nan.csv", "time_s,arrivals\n0,nan\n60,1\n", "non-numeric or empty"),
    ("inf.csv", "time_s,arrivals\n0,inf\n60,1\n", "column arrivals has an infinite value at data row 1"),
    ("negative.csv", "time_s,arrivals\n0,1\n60,-1\n", "negative"),
    ("absurd.csv", "time_s,arrivals\n0,1\n60,1e300\n", r"arrivals of 1e\+300 in step 1 \(60 s in\) are above 1e\+12"),
    ("absurd-tokens.csv", "time_s,arrivals,input_tokens,output_tokens\n0,1,1e300,1e300\n60,1,1,1\n",
     r"tokens of 2e\+300 in step 0 \(0 s in\)"),
    ("unsorted.csv", "time_s,arrivals\n60,1\n0,1\n", "not strictly increasing"),
    ("duplicated.csv", "time_s,arrivals\n0,1\n0,1\n", "not strictly increasing"),
    ("irregular.csv", "time_s,arrivals\n0,1\n60,1\n150,1\n", "regular interval"),
    ("binary.csv", "\x00\x01\x02", "missing column"),
    ("bad.jsonl", '{"timestamp": 1}\nnot json\n', "line 2"),
    ("neg.jsonl", '{"timestamp": -5, "input_length": 1, "output_length": 1}\n', "negative"),
])
def test_each_kind_of_damage_gets_its_own_message(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(TraceError, match=message):
        load_trace(path)


def test_a_directory_and_a_missing_file(tmp_path):
    with pytest.raises(TraceError, match="is a directory"):
        load_trace(tmp_path)
    with pytest.raises(TraceError, match="no such file"):
        load_trace(tmp_path / "missing.csv")
    with pytest.raises(TraceError, match="no such file"):
        load_trace(f"{tmp_path}/missing.tar.gz:data/x/chat/chunk-1-trace.csv")
    good = tmp_path / "good.csv"
    good.write_text(GOOD)
    assert load_trace(good).step_s == 60  # the same loader accepts a sound file


@pytest.mark.parametrize("payload", [b"not gzip at all", gzip.compress(b'{"timestamp": 1}\n' * 50)[:30]],
                         ids=["not-gzip", "truncated-gzip"])
def test_a_broken_gzip_trace_gets_a_trace_error(tmp_path, payload):
    path = tmp_path / "conversation_trace.jsonl.gz"
    path.write_bytes(payload)
    with pytest.raises(TraceError):
        load_trace(path)


def test_a_trace_spanning_an_absurd_time_range_gets_a_trace_error(tmp_path):
    path = tmp_path / "sparse.csv"
    path.write_text("time_s,arrivals\n0,1\n1,1\n1000000000000000,1\n")
    with pytest.raises(TraceError):
        load_trace(path)
