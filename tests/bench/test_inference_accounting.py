"""The inference benchmark's closed-loop accounting, on hand-computed cases (the figures it prints rest on it)."""

from __future__ import annotations

import asyncio
import json
import math
import time

import aiohttp
import pytest
from aiohttp import web

from bench.inference import _closed_loop_summary, _ms, _summary, completion_lengths, print_table, stream_one


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


def _chunk(text: str | None, **extra: object) -> bytes:
    """One server-sent event as `foresail serve` writes it: compact JSON, text in choices[0]."""
    choices = [] if text is None else [{"index": 0, "text": text, "logprobs": None, "finish_reason": None}]
    body = {"id": "cmpl-1", "object": "text_completion", "choices": choices, **extra}
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


async def _stream_from(texts: list[str], pause: float) -> tuple[float | None, int, float]:
    """Stream ``texts`` as chunks ``pause`` s apart from a local HTTP server; stream_one's reading of it."""
    async def completions(request: web.Request) -> web.StreamResponse:
        rsp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await rsp.prepare(request)
        for text in texts:
            await asyncio.sleep(pause)
            await rsp.write(_chunk(text))
        await rsp.write(_chunk(None, usage={"completion_tokens": len(texts)}))
        await rsp.write(b"data: [DONE]\n\n")
        return rsp

    app = web.Application()
    app.router.add_post("/v1/completions", completions)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    try:
        async with aiohttp.ClientSession() as http:
            sent = time.perf_counter()
            ttft, tokens = await stream_one(http, f"http://127.0.0.1:{port}", "a prompt", 8, sent)
            return ttft, tokens, time.perf_counter() - sent
    finally:
        await runner.cleanup()


async def test_ttft_counts_from_the_first_chunk_with_text() -> None:
    # Two tokens that decode to nothing (a partial character, a skipped special token), then text.
    ttft, tokens, total = await _stream_from(["", "", " sea", " wind"], pause=0.2)
    assert tokens == 4
    assert ttft is not None and 0.55 <= ttft < total - 0.1  # the third chunk's time, not the first's or the end's


async def test_a_completion_without_text_has_no_ttft_and_the_table_says_so() -> None:
    # On an H200 a random-weights model wrote 32 tokens that all decoded to "": its only chunk came at the end.
    ttft, tokens, _ = await _stream_from(["", "", ""], pause=0.05)
    assert (ttft, tokens) == (None, 3)
    summary = _summary(2.0, [None, 0.2, None, 0.4], tokens=12)
    assert summary["median_ttft_s"] == pytest.approx(0.3) and summary["without_text"] == 2
    assert math.isnan(_summary(1.0, [None, None], tokens=6)["median_ttft_s"])
    assert _ms(math.nan, 9).strip() == "n/a" and _ms(0.0123, 9).strip() == "12.3ms"


def test_the_ttft_ratio_column_names_the_concurrency_it_is_over(capsys) -> None:
    rows = {2: {"tokens_per_s": 10.0, "median_ttft_s": 0.1}, 4: {"tokens_per_s": 20.0, "median_ttft_s": 0.3}}
    print_table({"model": "m", "device": "cpu", "dtype": "float32", "per_slot": 2, "mean_tokens": 16, "threads": 2,
                 "repeats": 1, "results": {m: rows for m in ("server", "server-fifo", "sequential", "static")},
                 "cold_start": {}})
    header, *lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("method", "server "))]
    assert header.split()[-5:] == ["x", "own", "c=2", "burst", "TTFT"] and "c=1" not in header
    assert [line.split()[-1] for line in lines] == ["1.00", "3.00"]
