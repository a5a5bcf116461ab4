"""Print benchmark rows as a right-aligned table."""

from __future__ import annotations

from typing import Any


def print_table(rows: list[dict[str, Any]], columns: dict[str, str]) -> None:
    """One line per row; ``columns`` maps each row key to its header, in order."""
    widths = {k: max([len(h)] + [len(str(r[k])) for r in rows]) for k, h in columns.items()}
    print("\n" + " ".join(f"{h:>{widths[k]}}" for k, h in columns.items()))
    for r in rows:
        print(" ".join(f"{r[k]!s:>{widths[k]}}" for k in columns))
