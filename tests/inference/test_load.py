"""Concurrency, overload, cancellation and metrics on the real server (bounded in requests and time)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import openai
import pytest
import requests

from .conftest import MODEL, Server, start_server, stop_server

pytestmark = pytest.mark.timeout(120)


def _counters(server: Server) -> dict[str, float]:
    return {
        "prompt": server.metric("vllm:prompt_tokens_total"),
        "generation": server.metric("vllm:generation_tokens_total"),
        "success": sum(server.metric("vllm:request_success_total", finished_reason=r) for r in ("stop", "length")),
        "ttft": server.metric("vllm:time_to_first_token_seconds_count"),
        "e2e": server.metric("vllm:e2e_request_latency_seconds_count"),
    }


async def test_concurrent_requests_all_complete_and_counters_match_usage(server: Server, aclient) -> None:
    before = _counters(server)
    prompts = [f"Request number {i}: tell me about the sea" for i in range(8)]
    results = await asyncio.gather(*[
        aclient.completions.create(model=MODEL, prompt=p, max_tokens=10 + i, temperature=0.8, seed=i)
        for i, p in enumerate(prompts)
    ])
    chats = await asyncio.gather(*[
        aclient.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": p}], max_tokens=9)
        for p in prompts[:4]
    ])
    usages = [r.usage for r in results + chats]
    after = _counters(server)
    assert after["prompt"] - before["prompt"] == sum(u.prompt_tokens for u in usages)
    assert after["generation"] - before["generation"] == sum(u.completion_tokens for u in usages)
    assert after["success"] - before["success"] == len(usages)
    assert after["ttft"] - before["ttft"] == len(usages)
    assert after["e2e"] - before["e2e"] == len(usages)
    for i, r in enumerate(results):
        assert r.usage.completion_tokens <= 10 + i
        assert r.choices[0].finish_reason in ("stop", "length")


async def test_streamed_usage_matches_generation_counter(server: Server, aclient) -> None:
    before = server.metric("vllm:generation_tokens_total")

    async def one(i: int) -> int:
        stream = await aclient.completions.create(model=MODEL, prompt=f"Count {i}", max_tokens=20, stream=True,
                                                  stream_options={"include_usage": True})
        usage = [c.usage async for c in stream if c.usage]
        return usage[-1].completion_tokens

    served = await asyncio.gather(*[one(i) for i in range(6)])
    assert server.metric("vllm:generation_tokens_total") - before == sum(served)


async def test_gauges_move_under_load_and_return_to_zero(server: Server) -> None:
    url = f"{server.url}/v1/completions"
    # 8 x (~300 prompt + 150) tokens fit in the 4096-token budget; prefill takes several steps of 1024 tokens
    body = {"model": MODEL, "prompt": "the sea " * 100, "max_tokens": 150, "temperature": 0}
    seen = {"vllm:num_requests_running": 0.0, "vllm:num_requests_waiting": 0.0, "vllm:kv_cache_usage_perc": 0.0}
    async with aiohttp.ClientSession(headers=server.headers) as http:
        async def request() -> int:
            async with http.post(url, json=body) as rsp:
                await rsp.read()
                return rsp.status

        tasks = [asyncio.create_task(request()) for _ in range(8)]
        while not all(t.done() for t in tasks):
            async with http.get(f"{server.url}/metrics") as rsp:
                text = await rsp.text()
            for line in text.splitlines():
                for name in seen:
                    if line.startswith(name + "{"):
                        seen[name] = max(seen[name], float(line.rsplit(" ", 1)[1]))
            await asyncio.sleep(0.01)
        statuses = await asyncio.gather(*tasks)
    assert statuses == [200] * 8
    assert seen["vllm:num_requests_running"] >= 2
    assert seen["vllm:num_requests_waiting"] >= 1
    assert 0 < seen["vllm:kv_cache_usage_perc"] <= 1
    assert server.metric("vllm:num_requests_running") == 0
    assert server.metric("vllm:num_requests_waiting") == 0
    assert server.metric("vllm:kv_cache_usage_perc") == 0


async def test_overload_answers_429_with_retry_after_and_memory_stays_flat(server: Server) -> None:
    # 4096 tokens in flight at most: each request reserves ~16 + 300 tokens, so only ~12 fit at once.
    url = f"{server.url}/v1/completions"
    body = {"model": MODEL, "prompt": "overload", "max_tokens": 300, "temperature": 0}
    rejected_before = server.metric("foresail:requests_rejected_total", reason="overloaded")
    async with aiohttp.ClientSession(headers=server.headers) as http:
        async def request() -> tuple[int, str | None]:
            async with http.post(url, json=body) as rsp:
                await rsp.read()
                return rsp.status, rsp.headers.get("Retry-After")

        for burst in range(3):  # three bursts of 40: the memory must not grow from one to the next
            results = await asyncio.gather(*[request() for _ in range(40)])
            if burst == 0:  # the first may allocate once (malloc arenas, buffers for the largest batch)
                rss_after_first = server.rss()
            statuses = [s for s, _ in results]
            assert set(statuses) <= {200, 429}
            assert statuses.count(200) >= 4
            assert statuses.count(429) >= 20
            assert all(ra is not None and int(ra) >= 1 for s, ra in results if s == 429)
    assert server.proc.poll() is None
    assert server.rss() - rss_after_first < 60 * 2**20
    assert server.metric("foresail:requests_rejected_total", reason="overloaded") - rejected_before >= 60
    assert server.metric("vllm:num_requests_running") == 0


async def test_client_disconnect_cancels_the_generation(server: Server, aclient) -> None:
    aborted = server.metric("vllm:request_success_total", finished_reason="abort")
    generated = server.metric("vllm:generation_tokens_total")
    stream = await aclient.completions.create(model=MODEL, prompt="a long story", max_tokens=1900, stream=True,
                                              temperature=0)
    received = 0
    async for _ in stream:
        received += 1
        if received == 5:
            break
    await stream.close()
    # a non-streaming request whose client gives up
    with pytest.raises(openai.APITimeoutError):
        await aclient.with_options(timeout=0.5).completions.create(model=MODEL, prompt="another long story",
                                                                   max_tokens=1900, temperature=0)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if server.metric("vllm:request_success_total", finished_reason="abort") - aborted == 2:
            break
        await asyncio.sleep(0.1)
    assert server.metric("vllm:request_success_total", finished_reason="abort") - aborted == 2
    assert server.metric("vllm:num_requests_running") == 0
    first = server.metric("vllm:generation_tokens_total")
    await asyncio.sleep(0.5)
    assert server.metric("vllm:generation_tokens_total") == first, "tokens still generated after cancel"
    assert first - generated < 2 * 1900


def test_a_request_at_the_per_request_limit_is_admitted_when_the_budget_is_not_whole_pages() -> None:
    # 100 tokens in flight: 6.25 pages of 16, a cache of 7. Prompt 1 + 99 is the per-request limit and 7 pages;
    # admission compared those 112 tokens to 100 and answered 429, however long the client retried.
    server = start_server("--max-tokens-in-flight", "100")
    try:
        url = f"{server.url}/v1/completions"
        body: dict[str, Any] = {"model": MODEL, "prompt": [1], "temperature": 0}
        at_limit = requests.post(url, json={**body, "max_tokens": 99}, timeout=60)
        over = requests.post(url, json={**body, "max_tokens": 100}, timeout=60)
        assert at_limit.status_code == 200, at_limit.text
        usage, choice = at_limit.json()["usage"], at_limit.json()["choices"][0]
        assert usage["completion_tokens"] == 99 or choice["finish_reason"] == "stop"
        assert over.status_code == 400
        assert over.json()["error"]["code"] == "context_length_exceeded"
    finally:
        stop_server(server)
        server.log_path.unlink(missing_ok=True)
