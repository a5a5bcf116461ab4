"""What the benchmarks share: a right-aligned table of rows, and the files their flags name to write."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from foresail.checks import check_plot, check_writable


def print_table(rows: list[dict[str, Any]], columns: dict[str, str]) -> None:
    """One line per row; ``columns`` maps each row key to its header, in order."""
    widths = {k: max([len(h)] + [len(str(r[k])) for r in rows]) for k, h in columns.items()}
    print("\n" + " ".join(f"{h:>{widths[k]}}" for k, h in columns.items()))
    for r in rows:
        print(" ".join(f"{r[k]!s:>{widths[k]}}" for k in columns))


def output_file(path: str) -> Path:
    """An argparse ``type`` for a file written at the end of a run: refused before the run where it cannot be
    written (``check_writable``), not a traceback after it."""
    try:
        check_writable("", path)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).strip()) from None
    return Path(path)


def plot_file(path: str) -> Path:
    """``output_file`` for a plot: also a name in a format matplotlib writes (``check_plot``; none: ``.png``)."""
    try:
        return Path(check_plot("", path))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).strip()) from None


def seconds(text: str) -> float:
    """An argparse ``type`` for a time in seconds: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"seconds, a number >= 0, not {text!r}")
    return value


def cold_starts(text: str) -> tuple[float, ...]:
    """An argparse ``type`` for ``--cold-starts``: comma-separated seconds (``seconds``), each once."""
    try:
        return tuple(dict.fromkeys(seconds(x) for x in text.split(",")))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"seconds, comma-separated, each a number >= 0, not {text!r}") from None


def workers(text: str) -> int:
    """An argparse ``type`` for ``--workers``: a whole number of processes, at least 1."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"a number of processes, at least 1, not {text!r}")
    return n
