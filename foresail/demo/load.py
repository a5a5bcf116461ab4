"""Replay a per-step demand series against the served model on an accelerated clock.

Each trace step (one minute of the real trace) lasts `step_s` seconds of wall time; arrivals inside
a step are Poisson at the trace's rate scaled so that the busiest step sends `peak_rps` requests/s.
Requests go round-robin to the ready replicas; the replay is bounded in requests and time.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import aiohttp

PROMPTS = ["Tell me about the sea.", "Write a haiku on autumn.", "What is a forecast?",
           "Summarise the news.", "Explain batching.", "Name three rivers."]


@dataclass(frozen=True)
class Outcome:
    """One replayed request."""

    sent_s: float  # seconds since the replay started
    latency_s: float
    ok: bool
    status: str  # "200", "429", "no replica", "error: ..."


def rates(counts: Sequence[float], peak_rps: float) -> list[float]:
    """Per-step request rates scaled so that the largest step runs at `peak_rps`."""
    top = max(counts) if counts and max(counts) > 0 else 1.0
    return [peak_rps * c / top for c in counts]


async def replay(step_rates: Sequence[float], step_s: float, endpoints: Callable[[], list[str]],
                 model: str, max_tokens: int = 12, seed: int = 0, request_timeout_s: float = 30.0,
                 on_step: Callable[[int, float], None] | None = None) -> list[Outcome]:
    """Send the requests; return one Outcome per request, in order of sending."""
    rng = random.Random(seed)
    outcomes: list[Outcome] = []
    tasks: list[asyncio.Task] = []
    counter = itertools.count()
    start = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=request_timeout_s)

    async with aiohttp.ClientSession(timeout=timeout) as http:
        async def one(sent: float) -> None:
            urls = endpoints()
            if not urls:
                outcomes.append(Outcome(sent, 0.0, False, "no replica"))
                return
            url = urls[next(counter) % len(urls)]
            body = {"model": model, "prompt": rng.choice(PROMPTS), "max_tokens": max_tokens, "temperature": 0}
            t0 = time.monotonic()
            try:
                async with http.post(url + "/v1/completions", json=body) as rsp:
                    await rsp.read()
                    outcomes.append(Outcome(sent, time.monotonic() - t0, rsp.status == 200, str(rsp.status)))
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                outcomes.append(Outcome(sent, time.monotonic() - t0, False, f"error: {type(exc).__name__}"))

        for i, rate in enumerate(step_rates):
            if on_step is not None:
                on_step(i, rate)
            step_end = start + (i + 1) * step_s
            now = time.monotonic()
            while rate > 0:
                now += rng.expovariate(rate)
                if now >= step_end:
                    break
                await asyncio.sleep(max(0.0, now - time.monotonic()))
                tasks.append(asyncio.create_task(one(now - start)))
            await asyncio.sleep(max(0.0, step_end - time.monotonic()))
        if tasks:
            await asyncio.wait(tasks, timeout=request_timeout_s + 5)
    return sorted(outcomes, key=lambda o: o.sent_s)
