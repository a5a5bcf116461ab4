"""`foresail serve --prefix-cache`: prompts that start alike reuse the cached pages, with the same output."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from .conftest import MODEL, Server, start_server, stop_server

SYSTEMS = ("You are a careful assistant. Answer briefly and cite your sources. " * 6,
           "Reply in French, in verse, and never use the letter e anywhere at all. " * 6)
QUESTIONS = ("What is the capital of Peru?", "Name a prime number.", "Why is the sky blue?")
PAGE = 16  # tokens per KV-cache page (engine.PAGE_SIZE): only whole pages are shared


@pytest.fixture(scope="module")
def cached() -> Iterator[Server]:
    """A server with the prefix cache on and room for about three of these prompts at a time."""
    srv = start_server("--prefix-cache", "--max-tokens-in-flight", "1024")
    yield srv
    stop_server(srv)


def _complete(server: Server, prompt: str) -> dict:
    """One seeded, sampled completion: its text depends on every token of the prompt."""
    rsp = requests.post(f"{server.url}/v1/completions", headers=server.headers, timeout=60, json={
        "model": MODEL, "prompt": prompt, "max_tokens": 16, "temperature": 1.0, "seed": 3})
    assert rsp.status_code == 200, rsp.text
    return rsp.json()


def _counters(server: Server) -> tuple[float, float]:
    return server.metric("vllm:prefix_cache_queries_total"), server.metric("vllm:prefix_cache_hits_total")


def test_shared_prefixes_are_served_from_the_cache_with_the_same_text(cached: Server, server: Server) -> None:
    prompts = [s + q for s in SYSTEMS for q in QUESTIONS] + [SYSTEMS[0] + QUESTIONS[0]]  # the last: a repeat
    answers, hits = [], []
    for prompt in prompts:
        before = _counters(cached)
        answers.append(_complete(cached, prompt))
        after = _counters(cached)
        assert after[0] - before[0] == answers[-1]["usage"]["prompt_tokens"]  # every prompt token is looked up
        hits.append(after[1] - before[1])
    # The first question of each system prompt computes its pages, the later ones find them, and a repeated
    # prompt finds all its whole pages but the one holding its last token (which must be computed).
    assert [h > 0 for h in hits] == [False, True, True, False, True, True, True]
    assert hits[-1] == (answers[-1]["usage"]["prompt_tokens"] - 1) // PAGE * PAGE
    reference = [_complete(server, p)["choices"][0]["text"] for p in prompts]  # the shared server: no cache
    assert [a["choices"][0]["text"] for a in answers] == reference
    assert reference[0] != reference[len(QUESTIONS)], "the text must depend on the prefix to test anything"
    assert server.metric("vllm:prefix_cache_hits_total") == 0
    assert cached.metric("vllm:kv_cache_usage_perc") == 0, "kept pages are free for live requests"


def test_kept_pages_give_way_when_new_prompts_need_the_room(cached: Server) -> None:
    # Each prompt needs about a third of the cache; ten different ones leave no free page unless kept ones
    # are evicted, and the first, asked again after them, is computed afresh with the same text.
    prompts = [f"Document {i}: " + " ".join(f"w{i}x{j}" for j in range(90)) for i in range(10)]
    first = _complete(cached, prompts[0])
    assert first["usage"]["prompt_tokens"] > 1024 // 4
    for prompt in prompts[1:]:
        _complete(cached, prompt)
    hits = _counters(cached)[1]
    assert _complete(cached, prompts[0])["choices"][0]["text"] == first["choices"][0]["text"]
    assert _counters(cached)[1] == hits, "the first prompt's pages were given to the later ones"
    assert cached.metric("vllm:kv_cache_usage_perc") == 0
