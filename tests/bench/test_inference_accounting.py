"""The inference benchmark's closed-loop accounting, on hand-computed cases (the figures it prints rest on it)."""

from __future__ import annotations

import pytest

from bench.inference import _closed_loop_summary, completion_lengths


def test_a_request_is_sent_when_a_slot_frees() -> None:
    # Two slots; four requests served one after another, each taking 1 s with its first token after 0.25 s.
    first = [0.25, 1.25, 2.25, 3.25]
    finish = [1.0, 2.0, 3.0, 4.0]
    summary = _closed_loop_summary(0.0, 4.0, first, finish, tokens=40, concurrency=2)
    # Requests 0 and 1 are sent at 0; request 2 at the first end (1.0), request 3 at the second (2.0).
    # TTFTs 0.25, 1.25, 1.25, 1.25.
    assert summary["median_ttft_s"] == pytest.approx(1.25)
    assert summary["tokens_per_s"] == pytest.approx(10.0)


def test_the_next_request_takes_whichever_slot_frees_first() -> None:
    # Two slots, as vLLM's --max-concurrency: request 1 ends (at 1.0) before request 0 (at 3.0), so request 2 is
    # sent at 1.0 and request 3 at 3.0. TTFTs: 0.5, 0.5, 3.5 - 1.0 = 2.5, 4.0 - 3.0 = 1.0.
    summary = _closed_loop_summary(0.0, 5.0, [0.5, 0.5, 3.5, 4.0], [3.0, 1.0, 4.5, 5.0], tokens=10, concurrency=2)
    assert summary["median_ttft_s"] == pytest.approx(0.75)


def test_one_client_waits_for_nobody() -> None:
    summary = _closed_loop_summary(0.0, 3.0, [0.1, 1.1, 2.1], [1.0, 2.0, 3.0], tokens=3, concurrency=1)
    assert summary["median_ttft_s"] == pytest.approx(0.1)


def test_completion_lengths_are_seeded_and_average_the_mean() -> None:
    lengths = completion_lengths(4000, 64)
    assert lengths == completion_lengths(4000, 64)
    assert min(lengths) == 16 and max(lengths) == 112
    assert sum(lengths) / len(lengths) == pytest.approx(64, rel=0.03)
