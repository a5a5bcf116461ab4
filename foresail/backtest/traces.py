"""Request-arrival traces: loaders for the public formats and a generic CSV, all into one ``Trace``.

Formats (see ../shared/traces/README.md): Azure LLM 2023 (one row per request), Mooncake FAST'25 JSONL
(``.jsonl`` or ``.jsonl.gz``), ServeGen per-customer CSVs (headerless, 600-s windows; also read straight
from ``servegen-clients.tar.gz``, or from it as .tar, .tgz, .tar.bz2 or .tar.xz), ServeGen service
aggregates (``servegen-*-10min.csv``), and a generic CSV ``time_s,arrivals[,input_tokens,output_tokens]`` with
one row per step at any fixed interval. Any of them may be compressed, as its name says: ``.gz``, ``.bz2``,
``.xz``, or ``.zip`` holding that one file.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import json
import lzma
import math
import re
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import pandas as pd

from foresail.autoscaler.forecast import MAX_RATE

MAX_STEPS = 10_000_000  # a bigger grid is a unit mistake, not a trace
# no permission, a folder, a broken compressed file or tar file
UNREADABLE = (OSError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile, tarfile.TarError)
# the compressions pandas reads by the name, with .zip
OPENERS: dict[str, Callable[..., Any]] = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}
# a tar archive's name, and the mode it is read in; ARCHIVE:<service>/chunk-<i> names one customer in one
TarMode = Literal["r:*", "r:", "r:gz", "r:bz2", "r:xz"]
TAR_MODES: dict[str, TarMode] = {".tar": "r:", ".tar.gz": "r:gz", ".tgz": "r:gz", ".tar.bz2": "r:bz2",
                                 ".tar.xz": "r:xz"}
ARCHIVE_MEMBER = re.compile(f"(.+?(?:{'|'.join(map(re.escape, TAR_MODES))})):(.+)", re.IGNORECASE | re.DOTALL)


class TraceError(ValueError):
    """A trace file that cannot be used, with a message that says why."""


def _reason(exc: BaseException) -> str:
    """Why a file could not be read: the OS's words without the path it repeats, or the exception's text."""
    return getattr(exc, "strerror", None) or str(exc)


@dataclass
class Trace:
    """Arrivals per step (and optionally tokens per step) of one demand series."""

    name: str
    step_s: float
    arrivals: np.ndarray  # requests per step
    tokens: np.ndarray | None = None  # input + output tokens per step
    start_s: float = 0.0  # seconds (Unix time, or from the trace's day-0 midnight)
    gaps: np.ndarray | None = None  # True where the source had a collection gap
    group: str = ""
    request_times_s: np.ndarray | None = None  # per-request traces: each arrival, in seconds after start_s
    request_tokens: np.ndarray | None = None  # and each request's input + output tokens

    def __post_init__(self) -> None:
        self.arrivals = np.asarray(self.arrivals, dtype=float)
        if self.arrivals.ndim != 1 or len(self.arrivals) == 0:
            raise TraceError(f"{self.name}: the trace is empty")
        if not np.all(np.isfinite(self.arrivals)):
            raise TraceError(f"{self.name}: arrivals contain NaN or infinite values")
        if (self.arrivals < 0).any():
            raise TraceError(f"{self.name}: arrivals must not be negative")
        if self.tokens is not None:
            self.tokens = np.asarray(self.tokens, dtype=float)
            if self.tokens.shape != self.arrivals.shape:
                raise TraceError(f"{self.name}: tokens and arrivals differ in length")
            if (self.tokens < 0).any() or not np.all(np.isfinite(self.tokens)):
                raise TraceError(f"{self.name}: token counts must be finite and not negative")
        if not (self.step_s > 0):
            raise TraceError(f"{self.name}: the step must be positive")
        ceiling = MAX_RATE * self.step_s
        for what, values in (("arrivals", self.arrivals), ("tokens", self.tokens)):
            if values is not None and values.max() > ceiling:
                i = int(np.argmax(values > ceiling))
                raise TraceError(f"{self.name}: {what} of {values[i]:g} in step {i} ({i * self.step_s:g} s in) are "
                                 f"above {MAX_RATE:g} per second, which is no demand a deployment serves")

    @property
    def duration_s(self) -> float:
        """Length of the trace in seconds."""
        return len(self.arrivals) * self.step_s

    @property
    def default_unit(self) -> str:
        """The demand unit used unless one is asked for: ``tokens`` where the trace counts them, else ``requests``."""
        return "tokens" if self.tokens is not None and not self._tokens_all_zero() else "requests"

    def _tokens_all_zero(self) -> bool:
        """Whether the token columns are zeros beside requests: no counts (a runtime that did not count them)."""
        return self.tokens is not None and not np.nansum(self.tokens) > 0 and np.nansum(self.arrivals) > 0

    def demand(self, unit: str = "requests") -> np.ndarray:
        """Demand per step in ``requests`` or ``tokens``."""
        if unit == "tokens":
            if self.tokens is None:
                raise TraceError(f"{self.name}: the trace has no token counts")
            if self._tokens_all_zero():
                raise TraceError(f"{self.name}: the token columns are all zero beside "
                                 f"{np.nansum(self.arrivals):.0f} requests: replay it in requests (--unit requests)")
            return self.tokens
        return self.arrivals

    def resample(self, step_s: float) -> "Trace":
        """The same trace on another step: sums when coarser, spreads evenly when finer."""
        if math.isclose(step_s, self.step_s):
            return self
        steps = self.duration_s / step_s  # compared as a float: an infinite one has no int
        if steps > MAX_STEPS:
            raise TraceError(f"{self.name}: {self.duration_s:.4g} s in steps of {step_s:g} s is {steps:.4g} steps "
                             f"(more than {MAX_STEPS:,}); check the time column's unit or the step")
        n_new = max(1, int(math.floor(steps + 1e-9)))
        edges_old = np.arange(len(self.arrivals) + 1) * self.step_s
        edges_new = np.arange(n_new + 1) * step_s

        def regrid(a: np.ndarray) -> np.ndarray:
            cum = np.concatenate(([0.0], np.cumsum(a)))
            return np.maximum(np.diff(np.interp(edges_new, edges_old, cum)), 0.0)

        gaps = None
        if self.gaps is not None:
            gaps = regrid(self.gaps.astype(float) * self.step_s) > 0.5 * step_s
        tokens = regrid(self.tokens) if self.tokens is not None else None
        return replace(self, step_s=float(step_s), arrivals=regrid(self.arrivals), tokens=tokens, gaps=gaps)

    def fill_gaps(self) -> "Trace":
        """Bridge collection gaps by linear interpolation between the steps around them."""
        if self.gaps is None or not self.gaps.any():
            return self
        ok = ~self.gaps
        if not ok.any():
            raise TraceError(f"{self.name}: the whole trace is a collection gap")
        idx = np.arange(len(self.arrivals))

        def bridge(a: np.ndarray) -> np.ndarray:
            out = a.copy()
            out[~ok] = np.interp(idx[~ok], idx[ok], a[ok])
            return out

        tokens = bridge(self.tokens) if self.tokens is not None else None
        return replace(self, arrivals=bridge(self.arrivals), tokens=tokens, gaps=np.zeros(len(idx), bool))


# ---- per-request traces ------------------------------------------------------------------------
def _from_requests(name: str, times_s: np.ndarray, tokens: np.ndarray | None, group: str) -> Trace:
    """Bin request arrival times into 1-s steps, keeping the requests themselves (for `--queue requests`)."""
    if len(times_s) == 0:
        raise TraceError(f"{name}: the trace is empty")
    if np.any(np.diff(times_s) < 0):
        raise TraceError(f"{name}: timestamps are not sorted")
    t0 = math.floor(times_s[0])
    if times_s[-1] - t0 >= MAX_STEPS:  # checked before the cast to int, which a span past 2**63 s would wrap
        raise TraceError(f"{name}: the trace spans {times_s[-1] - t0:.3g} s (more than {MAX_STEPS:,}); check the "
                         "time unit")
    idx = np.floor(times_s - t0).astype(int)
    n = int(idx[-1]) + 1
    arrivals = np.bincount(idx, minlength=n).astype(float)
    tok = np.bincount(idx, weights=tokens, minlength=n) if tokens is not None else None
    return Trace(name, 1.0, arrivals, tok, float(t0), group=group, request_times_s=times_s - t0, request_tokens=tokens)


def _base_name(path: Path) -> str:
    """The file's name without the suffix of its compression (``a.csv`` for ``a.csv.gz``)."""
    name = path.name
    for suffix in (*OPENERS, ".zip", ".zst"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _stem(path: Path) -> str:
    """The file's name without its compression's suffix nor its format's (``a`` for ``a.csv.gz``)."""
    return Path(_base_name(path)).stem


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[IO[bytes]]:
    """The file's bytes, decompressed where its name says so, as pandas decompresses it; TraceError for a ZIP
    file of other than one file, or a compression not read here."""
    suffix = path.suffix.lower()
    if suffix == ".zst":  # pandas reads it only with the zstandard package, which Foresail does not install
        raise TraceError(f"{path}: a zstd-compressed file, which is not read; decompress it (zstd -d), or compress "
                         "it with gzip, bzip2, xz or zip")
    if suffix != ".zip":
        with OPENERS.get(suffix, open)(path, "rb") as fh:
            yield fh
        return
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        if len(names) != 1:
            raise TraceError(f"{path}: a ZIP file of {len(names)} files; a trace in a ZIP file is the only file in it")
        with archive.open(names[0]) as fh:
            yield fh


def _check_columns(path: Path, df: pd.DataFrame, needed: list[str]) -> None:
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise TraceError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(map(str, df.columns))}")


def _read_csv(path: Path) -> pd.DataFrame:
    """A CSV with a header row. A row with more fields than the header is refused: pandas would take its first
    field for the row's label and shift the others under the wrong columns (a trailing comma is fine)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.ParserWarning)
        try:
            return pd.read_csv(path, index_col=False)
        except pd.errors.ParserWarning:
            raise TraceError(f"{path}: rows have more fields than the header names") from None


def _numeric(path: Path, df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    for c in cols:
        values = pd.to_numeric(df[c], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(float))
        if bad.any():
            row = int(np.argmax(bad))
            what = "a non-numeric or empty" if np.isnan(values.iloc[row]) else "an infinite"
            raise TraceError(f"{path}: column {c} has {what} value at data row {row + 1}")
        if (values < 0).any():
            raise TraceError(f"{path}: column {c} has negative values")
        df[c] = values
    return df


def load_azure(path: Path) -> Trace:
    """Azure LLM inference trace 2023: ``TIMESTAMP,ContextTokens,GeneratedTokens``."""
    df = _read_csv(path)
    _check_columns(path, df, ["TIMESTAMP", "ContextTokens", "GeneratedTokens"])
    if df.empty:
        raise TraceError(f"{path}: the trace is empty")
    try:
        ts = pd.to_datetime(df["TIMESTAMP"].astype(str), errors="coerce", format="ISO8601")  # numbers: NaT, not epochs
    except ValueError:  # pandas refuses rows in different time zones
        raise TraceError(f"{path}: TIMESTAMP has rows in different time zones; give every row the same one, or "
                         "none (UTC)") from None
    if ts.isna().any():
        raise TraceError(f"{path}: unreadable TIMESTAMP at data row {int(np.argmax(ts.isna().to_numpy())) + 1}")
    df = _numeric(path, df, ["ContextTokens", "GeneratedTokens"])
    if ts.dt.tz is not None:  # every row in one time zone: to UTC, the zone of rows without one
        ts = ts.dt.tz_convert(None)
    times = (ts - pd.Timestamp("1970-01-01")).dt.total_seconds().to_numpy()
    tokens = (df["ContextTokens"] + df["GeneratedTokens"]).to_numpy(float)
    return _from_requests(f"azure-{path.name.split('.')[0].split('_')[-1]}", times, tokens, "azure")


def load_mooncake(path: Path) -> Trace:
    """Mooncake FAST'25 JSONL: ``timestamp`` (ms), ``input_length``, ``output_length``."""
    times, tokens = [], []
    try:
        with _opened(path) as raw, io.TextIOWrapper(raw) as fh:
            for k, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    times.append(float(rec["timestamp"]) / 1000.0)
                    tokens.append(float(rec.get("input_length", 0)) + float(rec.get("output_length", 0)))
                    if not (math.isfinite(times[-1]) and math.isfinite(tokens[-1])):  # json reads NaN, Infinity
                        raise ValueError("the timestamp and token counts must be finite numbers")
                except (ValueError, KeyError, TypeError) as exc:
                    raise TraceError(f"{path}: line {k} is not a Mooncake record ({exc})") from None
    except UNREADABLE as exc:
        raise TraceError(f"{path}: cannot read the file ({_reason(exc)})") from None
    if any(t < 0 for t in times) or any(t < 0 for t in tokens):
        raise TraceError(f"{path}: negative timestamp or token count")
    name = "mooncake-" + path.name.split(".")[0].replace("_trace", "")
    return _from_requests(name, np.asarray(times), np.asarray(tokens), "mooncake")


# ---- per-window traces -------------------------------------------------------------------------
def _on_grid(path: Path, name: str, t: np.ndarray, rate_per_step: np.ndarray, tokens: np.ndarray | None) -> Trace:
    """Place rows keyed by step start time on a regular grid (missing rows are zero)."""
    if len(t) == 0:
        raise TraceError(f"{path}: the trace is empty")
    if np.any(np.diff(t) <= 0):
        raise TraceError(f"{path}: time_s is not strictly increasing (unsorted or duplicated rows)")
    step = float(np.min(np.diff(t))) if len(t) > 1 else 60.0
    steps = (t[-1] - t[0]) / step + 1  # checked before the cast to int, which a span past 2**63 steps would wrap
    if steps > MAX_STEPS:
        raise TraceError(f"{path}: the trace spans {steps:.4g} steps of {step:g} s "
                         f"(more than {MAX_STEPS:,}); check the time column's unit")
    idx = np.round((t - t[0]) / step).astype(int)
    if np.any(np.abs(idx * step - (t - t[0])) > 1e-6 * step + 1e-6):
        raise TraceError(f"{path}: rows are not on a regular interval (step {step:g} s)")
    arrivals = np.zeros(idx[-1] + 1)
    arrivals[idx] = rate_per_step
    tok = None
    if tokens is not None:
        tok = np.zeros(idx[-1] + 1)
        tok[idx] = tokens
    return Trace(name, step, arrivals, tok, float(t[0]))


def load_generic(path: Path) -> Trace:
    """Generic CSV ``time_s,arrivals[,input_tokens,output_tokens]``, one row per step. A step without a row
    is zero demand, and a collection gap that ``fill_gaps`` bridges (``foresail history`` writes no row
    where Prometheus has no point)."""
    df = _read_csv(path)
    _check_columns(path, df, ["time_s", "arrivals"])
    if df.empty:
        raise TraceError(f"{path}: the trace is empty")
    has_tokens = "input_tokens" in df.columns or "output_tokens" in df.columns
    cols = ["time_s", "arrivals"] + [c for c in ("input_tokens", "output_tokens") if c in df.columns]
    df = _numeric(path, df, cols)
    tokens = None
    if has_tokens:
        tokens = sum(df[c].to_numpy(float) for c in ("input_tokens", "output_tokens") if c in df.columns)
    t = df["time_s"].to_numpy(float)
    trace = _on_grid(path, _stem(path), t, df["arrivals"].to_numpy(float), tokens)
    gaps = np.ones(len(trace.arrivals), bool)
    gaps[np.round((t - t[0]) / trace.step_s).astype(int)] = False
    trace.gaps = gaps if gaps.any() else None
    return trace


def _servegen_client_frame(path: Path, text: io.StringIO | Path) -> pd.DataFrame:
    df = pd.read_csv(text, header=None)
    if df.shape[1] < 2:
        raise TraceError(f"{path}: a ServeGen customer CSV has columns t_start_s,rate,cv,distribution,p1,p2")
    df = df.rename(columns={0: "t_start_s", 1: "rate"})
    return _numeric(path, df, ["t_start_s", "rate"])


def _servegen_client_trace(path: Path, df: pd.DataFrame, name: str, group: str) -> Trace:
    t = df["t_start_s"].to_numpy(float)
    step = float(np.min(np.diff(t))) if len(t) > 1 else 600.0
    trace = _on_grid(path, name, t, df["rate"].to_numpy(float) * step, None)
    trace.group = group
    return trace


def load_servegen_aggregate(path: Path) -> Trace:
    """ServeGen service aggregate ``servegen-<service>-10min.csv`` (requests per 10-min window)."""
    df = _read_csv(path)
    _check_columns(path, df, ["t_start_s", "rate_rps"])
    if df.empty:
        raise TraceError(f"{path}: the trace is empty")
    df = _numeric(path, df, ["t_start_s", "rate_rps"])
    t = df["t_start_s"].to_numpy(float)
    step = float(np.min(np.diff(t))) if len(t) > 1 else 600.0
    service = _stem(path).replace("servegen-", "").replace("-10min", "")
    trace = _on_grid(path, f"servegen-{service}", t, df["rate_rps"].to_numpy(float) * step, None)
    active = df["active_clients"].to_numpy(float) if "active_clients" in df.columns else None
    empty = df["rate_rps"].to_numpy(float) <= 0
    gaps = np.zeros(len(trace.arrivals), bool)
    idx = np.round((t - t[0]) / step).astype(int)
    gaps[idx] = empty if active is None else empty & (active <= 0)
    trace.gaps = gaps if gaps.any() else None
    trace.group = "servegen-aggregate"
    return trace


def iter_servegen_clients(tar_path: str | Path, services: list[str] | None = None) -> Iterator[Trace]:
    """Every customer series in ``servegen-clients.tar.gz`` (optionally only some services), or the same
    archive under another name of ``TAR_MODES``, compressed as it says.

    A window where every customer of the service reports zero is marked as a collection gap.
    """
    tar_path = Path(tar_path)
    if not tar_path.exists():
        raise TraceError(f"{tar_path}: no such file")
    frames: dict[str, list[tuple[str, pd.DataFrame]]] = {}
    try:
        mode: TarMode = next((m for suffix, m in TAR_MODES.items() if tar_path.name.lower().endswith(suffix)), "r:*")
        with tarfile.open(tar_path, mode) as tar:
            for member in tar:
                if not (member.isfile() and member.name.endswith("-trace.csv")):
                    continue
                parts = Path(member.name).parts  # data/<category>/<service>/chunk-<i>-trace.csv
                service = parts[-2]
                if services and service not in services:
                    continue
                fh = tar.extractfile(member)
                assert fh is not None
                text = io.StringIO(fh.read().decode())
                chunk = parts[-1].replace("-trace.csv", "")
                frames.setdefault(service, []).append((chunk, _servegen_client_frame(tar_path, text)))
    except UNREADABLE as exc:
        raise TraceError(f"{tar_path}: cannot read the archive ({_reason(exc)})") from None
    for service in sorted(frames):
        items = sorted(frames[service], key=lambda kv: int(kv[0].split("-")[1]))
        traces = [_servegen_client_trace(tar_path, df, f"{service}/{c}", f"servegen-{service}") for c, df in items]
        n = max(len(tr.arrivals) for tr in traces)
        total = np.zeros(n)
        for tr in traces:
            total[: len(tr.arrivals)] += tr.arrivals
        for tr in traces:
            gaps = total[: len(tr.arrivals)] <= 0
            tr.gaps = gaps if gaps.any() else None
            yield tr


def _servegen_client_row(fields: list[str]) -> bool:
    """True for a headerless ServeGen customer row: numbers, then a distribution name (blank in an empty window)."""
    if len(fields) != 6 or not (fields[3].isalpha() or fields[3] == ""):
        return False
    try:
        float(fields[0]), float(fields[1])
    except ValueError:
        return False
    return True


def _load_archive_member(tar_path: str, member: str) -> Trace:
    """``archive.tar.gz:<service>/chunk-<i>``: that ServeGen customer's series from the tarball."""
    if not Path(tar_path).exists():
        raise TraceError(f"{tar_path}: no such file")
    want = member.replace("data/", "").replace("-trace.csv", "").split("/")[-2:]
    for tr in iter_servegen_clients(tar_path, [want[0]]):
        if tr.name == "/".join(want):
            return tr
    raise TraceError(f"{tar_path}:{member}: no such customer in the archive (expected <service>/chunk-<i>)")


def _load_by_format(p: Path) -> Trace:
    """The trace in ``p``, read by the format its name or first line shows (the generic CSV otherwise)."""
    if _base_name(p).endswith(".jsonl"):
        return load_mooncake(p)
    if tarfile.is_tarfile(p):  # pandas would read a lone member, and list every one of ServeGen's thousands else
        if ARCHIVE_MEMBER.fullmatch(f"{p}:x"):
            raise TraceError(f"{p}: an archive; name one ServeGen customer in it, as {p}:<service>/chunk-<i>")
        raise TraceError(f"{p}: a tar archive; one ServeGen customer is read from an archive named "
                         f"{', '.join(TAR_MODES)}, as ARCHIVE:<service>/chunk-<i>")
    with _opened(p) as fh:  # pandas decompresses by the name too
        head = fh.readline().decode("utf-8-sig", errors="replace").strip()  # a BOM is no part of the header
    if head.startswith("TIMESTAMP"):
        return load_azure(p)
    if "rate_rps" in head and "t_start_s" in head:
        return load_servegen_aggregate(p)
    if _servegen_client_row(head.split(",")):
        df = _servegen_client_frame(p, p)
        return _servegen_client_trace(p, df, _stem(p).replace("-trace", ""), "servegen-client")
    return load_generic(p)


def load_trace(path: str | Path) -> Trace:
    """Load any supported trace; ``archive.tar.gz:member`` (or .tar, .tgz, .tar.bz2, .tar.xz) names one ServeGen
    customer in the tarball."""
    spec = str(path)
    if archive := ARCHIVE_MEMBER.fullmatch(spec):
        return _load_archive_member(*archive.groups())
    p = Path(spec)
    if not p.exists():
        raise TraceError(f"{p}: no such file")
    if p.is_dir():
        raise TraceError(f"{p}: is a directory, not a trace file")
    if p.stat().st_size == 0:
        raise TraceError(f"{p}: the trace is empty")
    try:
        return _load_by_format(p)
    except pd.errors.EmptyDataError:
        raise TraceError(f"{p}: the trace is empty") from None
    except pd.errors.ParserError as exc:
        raise TraceError(f"{p}: not a readable CSV ({exc})") from None
    except UnicodeDecodeError:
        raise TraceError(f"{p}: not a text file") from None
    except UNREADABLE as exc:
        raise TraceError(f"{p}: cannot read the file ({_reason(exc)})") from None
