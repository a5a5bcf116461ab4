"""Replay a per-step demand series against the served model on an accelerated clock.

Each trace step (one minute of the real trace) lasts `step_s` seconds of wall time; arrivals inside
a step are Poisson at the trace's rate scaled so that the busiest step sends `peak_rps` requests/s
(or evenly spaced, for tests that give two deployments the same load).
Requests go round-robin to the ready replicas; the replay is bounded in requests and time.
"""

from __future__ import annotations

import asyncio
import itertools
import math
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


def arrivals(step_rates: Sequence[float], step_s: float, rng: random.Random, even: bool = False) -> list[list[float]]:
    """Each step's arrival offsets (s): Poisson at the step's rate, or evenly spaced when `even`: one each
    time the running count of requests due (from half a request) reaches a whole number, so the spacing
    carries across steps and the replay sends sum(rate x step_s), rounded."""
    steps: list[list[float]] = []
    due = 0.5  # requests due so far, for `even`
    for rate in step_rates:
        times: list[float] = []
        if rate > 0 and even:
            times = [(n - due) / rate for n in range(math.ceil(due), math.ceil(due + rate * step_s))]
            due += rate * step_s
        elif rate > 0:
            t = rng.expovariate(rate)
            while t < step_s:
                times.append(t)
                t += rng.expovariate(rate)
        steps.append(times)
    return steps


async def replay(step_rates: Sequence[float], step_s: float, endpoints: Callable[[], list[str]],
                 model: str, max_tokens: int = 12, seed: int = 0, request_timeout_s: float = 30.0,
                 on_step: Callable[[int, float], None] | None = None, even: bool = False) -> list[Outcome]:
    """Send the requests (Poisson arrivals, or evenly spaced when `even`); return one Outcome per
    request, in order of sending."""
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

        for i, (rate, offsets) in enumerate(zip(step_rates, arrivals(step_rates, step_s, rng, even), strict=True)):
            if on_step is not None:
                on_step(i, rate)
            step_start, step_end = start + i * step_s, start + (i + 1) * step_s
            for offset in offsets:
                await asyncio.sleep(max(0.0, step_start + offset - time.monotonic()))
                tasks.append(asyncio.create_task(one(step_start + offset - start)))
            await asyncio.sleep(max(0.0, step_end - time.monotonic()))
        if tasks:
            await asyncio.wait(tasks, timeout=request_timeout_s + 5)
    return sorted(outcomes, key=lambda o: o.sent_s)
