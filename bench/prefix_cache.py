"""Prefix cache benchmark: `foresail serve --prefix-cache` against the same server without it.

Prompts in a fleet often start alike: a system prompt, few-shot examples, a document asked about again.
Here each request is one of ``--system-prompts`` long system prompts (``--system-words`` words each)
followed by a question of its own; the requests pick their system prompt at random (seeded), the same list
for both servers. For each concurrency C they are sent in order, at most C at a time (a closed loop, as in
`bench.inference`), streamed, ``--max-tokens`` tokens each. It prints the median time to first token (TTFT,
from sending to the first chunk with text), generated tokens/s and the share of prompt tokens the prefix
cache served (`vllm:prefix_cache_hits_total` over `vllm:prefix_cache_queries_total`), with the cached
server's TTFT over the other's. The two servers take turns, in alternate order round by round, and each
figure is the best of ``--repeats`` rounds, so that a slow spell of a shared machine hits both alike. Each
round asks new questions, so only the system prompts repeat.

    python -m bench.prefix_cache [--concurrency 1,8] [--requests 48] [--system-prompts 4]
                                 [--system-words 200] [--max-tokens 8] [--threads 2] [--repeats 3]
                                 [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
from typing import Any

from bench.inference import TINY, metric, open_session, server_closed_loop, start_server, stop_server
from bench.table import output_file, print_table

WORDS = ("sail", "harbour", "tide", "lantern", "compass", "rope", "gull", "anchor", "storm", "chart", "keel",
         "mast", "reef", "current", "beacon", "voyage")


def system_prompts(count: int, words: int, seed: int = 0) -> list[str]:
    """``count`` different system prompts of ``words`` words each."""
    rng = random.Random(seed)
    return [f"System prompt {k}. " + " ".join(rng.choice(WORDS) for _ in range(words)) for k in range(count)]


def requests_for(systems: list[str], count: int, round_: int, seed: int = 0) -> list[str]:
    """``count`` prompts: a system prompt picked at random, then a question not asked before."""
    rng = random.Random(seed)
    return [f"{rng.choice(systems)}\nQuestion {round_}-{i}: where does the {rng.choice(WORDS)} go?"
            for i in range(count)]


def cache_counters(url: str) -> tuple[float, float]:
    """The prompt tokens the server looked up in its prefix cache so far, and those it found."""
    return metric(url, "vllm:prefix_cache_queries_total"), metric(url, "vllm:prefix_cache_hits_total")


def run_bench(concurrencies: list[int], requests: int, systems: int, words: int, max_tokens: int, threads: int,
              repeats: int) -> dict[str, Any]:
    """Both servers at every concurrency; the best of ``repeats`` rounds of each."""
    prompts = system_prompts(systems, words)
    servers = {"prefix-cache": start_server(TINY, threads, "--prefix-cache"), "no-cache": start_server(TINY, threads)}
    runner = asyncio.Runner()
    results: dict[str, dict[int, dict[str, float]]] = {name: {} for name in servers}
    try:
        http = runner.run(open_session(2 * max(concurrencies)))
        for _, url, _ in servers.values():  # warm-up: opens the connections (its system prompt is not reused)
            warm_up = requests_for(system_prompts(1, words, seed=1), 4, -1)
            runner.run(server_closed_loop(http, url, 4, [(p, 2) for p in warm_up]))
        before = {name: cache_counters(url) for name, (_, url, _) in servers.items()}
        for c in concurrencies:
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
            for round_ in range(repeats):
                batch = [(p, max_tokens) for p in requests_for(prompts, requests, round_ + 100 * c, seed=round_)]
                for name in sorted(servers, reverse=round_ % 2 == 1):
                    url = servers[name][1]
                    runs[name].append(runner.run(server_closed_loop(http, url, c, batch)))
            for name in servers:
                results[name][c] = {"median_ttft_s": min(r["median_ttft_s"] for r in runs[name]),
                                    "tokens_per_s": max(r["tokens_per_s"] for r in runs[name])}
        hits, prompt_tokens = {}, 0.0
        for name, (_, url, _) in servers.items():  # over the measured rounds, not the warm-up
            queries, found = (now - then for now, then in zip(cache_counters(url), before[name], strict=True))
            hits[name] = found / queries if queries else 0.0
            prompt_tokens = max(prompt_tokens, queries / (requests * repeats * len(concurrencies)))
        runner.run(http.close())
    finally:
        runner.close()
        for proc, _, _ in servers.values():
            stop_server(proc)
    return {"results": results, "hit_rate": hits, "mean_prompt_tokens": prompt_tokens, "requests": requests,
            "system_prompts": systems, "system_words": words, "max_tokens": max_tokens, "threads": threads,
            "repeats": repeats}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", default="1,8", help="comma-separated requests in flight")
    parser.add_argument("--requests", type=int, default=48, help="requests per round")
    parser.add_argument("--system-prompts", type=int, default=4)
    parser.add_argument("--system-words", type=int, default=200, help="words per system prompt")
    parser.add_argument("--max-tokens", type=int, default=8, help="tokens generated per request")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of each server")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; each figure is the best round's")
    parser.add_argument("--json", type=output_file, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    figures = run_bench([int(c) for c in args.concurrency.split(",")], args.requests, args.system_prompts,
                        args.system_words, args.max_tokens, args.threads, args.repeats)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    results, rows = figures["results"], []
    for c, cached in results["prefix-cache"].items():
        plain = results["no-cache"][c]
        rows.append({"c": c, "ttft": f"{cached['median_ttft_s'] * 1000:.1f} ms",
                     "ttft0": f"{plain['median_ttft_s'] * 1000:.1f} ms",
                     "ratio": f"x{cached['median_ttft_s'] / plain['median_ttft_s']:.2f}",
                     "tps": f"{cached['tokens_per_s']:.0f}", "tps0": f"{plain['tokens_per_s']:.0f}"})
    print_table(rows, {"c": "concurrency", "ttft": "TTFT cached", "ttft0": "TTFT no cache", "ratio": "cached/none",
                       "tps": "tok/s cached", "tps0": "tok/s no cache"})
    print(f"\nprefix cache hits: {figures['hit_rate']['prefix-cache']:.1%} of prompt tokens, "
          f"{figures['mean_prompt_tokens']:.0f} a request on average ({args.system_prompts} system prompts of "
          f"{args.system_words} words, {args.requests} requests a round, "
          f"best of {args.repeats} rounds, {args.threads} torch threads per server)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
