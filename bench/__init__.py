"""Benchmarks: each module prints its figures against a baseline measured in the same run."""

from pathlib import Path

TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"  # shared/ beside the repository, from anywhere
