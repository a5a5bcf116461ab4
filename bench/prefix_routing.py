"""Prefix routing on real servers: the activator's `--routing prefix` against least in flight (`--routing pods`).

Two `foresail serve --prefix-cache` processes (``--model``, the built-in tiny model unless set; one torch
thread and a KV cache of ``--cache-tokens`` tokens each) are listed in EndpointSlices of the Kubernetes API
test server, with one `foresail activator` process per routing in front of them. Each request is one of
``--documents`` long prompt starts (``--document-words`` words each) followed by a question of its own, as
when many users ask about the same few documents: least in flight sends every document to both pods, and a
pod's cache is too small for all of them (transformers then drops every kept page at once); prefix routing
sends each document to one pod (the routing key is the prompt's first 100 characters), so the two caches
split the documents, unless that pod has more than the load factor (``--load-factors``, one activator each)
times the mean requests in flight. For each routing the requests are sent in order, at most
``--concurrency`` at a time, streamed, ``--max-tokens`` tokens each. Each round brings new documents, so no
round finds pages of another, and the routings take turns, in alternate order round by round. It prints, per
routing, the share of prompt tokens the pods' caches served (`vllm:prefix_cache_hits_total` over
`vllm:prefix_cache_queries_total`) and the busier pod's share of the prompt tokens, over all rounds, and the
mean and median time to first token and the tokens/s of the best round.

    PYTHONPATH=. python -m bench.prefix_routing [--concurrency 2,8] [--documents 8] [--document-words 100]
        [--cache-tokens 4096] [--requests 96] [--max-tokens 8] [--repeats 3] [--load-factors 1.25,2]
        [--model builtin:tiny] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
from typing import Any

import aiohttp

from bench.balance import activators
from bench.inference import TINY, open_session, server_closed_loop, start_server, stop_server
from bench.prefix_cache import cache_counters, requests_for, system_prompts
from bench.table import output_file, print_table

MODEL = "chat"  # the LLMDeployment's name and the servers' model name


def _round(runner: asyncio.Runner, http: aiohttp.ClientSession, via: str, urls: list[str], concurrency: int,
           batch: list[tuple[str, int]]) -> dict[str, Any]:
    """One closed loop through the activator at ``via``, with the prompt tokens each server looked up and found."""
    before = [cache_counters(url) for url in urls]
    result = runner.run(server_closed_loop(http, via, concurrency, batch, MODEL))
    after = [cache_counters(url) for url in urls]
    return {**result, "queried": [a[0] - b[0] for a, b in zip(after, before, strict=True)],
            "found": [a[1] - b[1] for a, b in zip(after, before, strict=True)]}


def _figures(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Hits and the busier server's share over all rounds; TTFT and tokens/s of the best round."""
    queried = [sum(r["queried"][i] for r in runs) for i in range(len(runs[0]["queried"]))]
    return {"hit_rate": sum(sum(r["found"]) for r in runs) / max(1.0, sum(queried)),
            "busier_pod_share": max(queried) / max(1.0, sum(queried)),
            "mean_prompt_tokens": sum(queried) / sum(r["requests"] for r in runs),
            "median_ttft_s": min(r["median_ttft_s"] for r in runs), "mean_ttft_s": min(r["mean_ttft_s"] for r in runs),
            "tokens_per_s": max(r["tokens_per_s"] for r in runs)}


def run_bench(concurrencies: list[int], documents: int, words: int, cache_tokens: int, requests: int,
              max_tokens: int, repeats: int, load_factors: list[float], model: str = TINY) -> dict[str, Any]:
    """Least in flight and prefix routing at each load factor, over the same two servers at every concurrency,
    ``repeats`` rounds each."""
    routings = ("pods", *(f"prefix:{f:g}" for f in load_factors))
    servers: list[tuple[subprocess.Popen, str, float]] = []
    runner = asyncio.Runner()
    results: dict[str, dict[int, dict[str, float]]] = {routing: {} for routing in routings}
    try:
        for _ in range(2):  # one at a time, so that a server that fails to start stops the one before it
            servers.append(start_server(model, 1, "--prefix-cache", "--max-tokens-in-flight", str(cache_tokens),
                                        "--served-model-name", MODEL))
        urls = [url for _, url, _ in servers]
        with activators(urls, routings, MODEL) as via:
            http = runner.run(open_session(2 * max(concurrencies)))
            warm_up = requests_for(system_prompts(1, words), 4, -1)  # opens connections; its prompt is not reused
            runner.run(server_closed_loop(http, via["pods"][0], 4, [(p, 2) for p in warm_up], MODEL))
            seed = 0
            for c in concurrencies:
                runs: dict[str, list[dict[str, Any]]] = {routing: [] for routing in routings}
                for round_ in range(repeats):
                    for routing in routings[::-1] if round_ % 2 else routings:
                        seed += 1  # new documents for every round of every routing
                        batch = [(p, max_tokens) for p in requests_for(system_prompts(documents, words, seed),
                                                                       requests, round_, seed=round_)]
                        runs[routing].append({**_round(runner, http, via[routing][0], urls, c, batch),
                                              "requests": requests})
                for routing in routings:
                    results[routing][c] = _figures(runs[routing])
            runner.run(http.close())
    finally:
        runner.close()
        for proc, _, _ in servers:
            stop_server(proc)
    return {"results": results, "model": model, "documents": documents, "document_words": words,
            "cache_tokens": cache_tokens, "requests": requests, "max_tokens": max_tokens, "repeats": repeats}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrency", default="2,8", help="comma-separated requests in flight")
    parser.add_argument("--documents", type=int, default=8, help="different prompt starts a round")
    parser.add_argument("--document-words", type=int, default=100, help="words per prompt start")
    parser.add_argument("--cache-tokens", type=int, default=4096, help="each server's KV cache, in tokens")
    parser.add_argument("--requests", type=int, default=96, help="requests per round and routing")
    parser.add_argument("--max-tokens", type=int, default=8, help="tokens generated per request")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; TTFT and tokens/s are the best round's")
    parser.add_argument("--load-factors", default="1.25,2",
                        help="comma-separated --prefix-load-factor of the prefix routing activators")
    parser.add_argument("--model", default=TINY, help="the servers' --model (default: the built-in tiny model)")
    parser.add_argument("--json", type=output_file, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    figures = run_bench([int(c) for c in args.concurrency.split(",")], args.documents, args.document_words,
                        args.cache_tokens, args.requests, args.max_tokens, args.repeats,
                        [float(f) for f in args.load_factors.split(",")], args.model)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    rows = []
    for routing, by_c in figures["results"].items():
        for c, r in by_c.items():
            base = figures["results"]["pods"][c]
            rows.append({"c": c, "routing": routing, "hits": f"{r['hit_rate']:.1%}",
                         "busier": f"{r['busier_pod_share']:.0%}", "mean": f"{r['mean_ttft_s'] * 1000:.1f} ms",
                         "ratio": f"x{r['mean_ttft_s'] / base['mean_ttft_s']:.2f}",
                         "median": f"{r['median_ttft_s'] * 1000:.1f} ms", "tps": f"{r['tokens_per_s']:.0f}"})
    print_table(sorted(rows, key=lambda row: row["c"]),
                {"c": "in flight", "routing": "routing", "hits": "cached prompt tokens", "busier": "busier pod",
                 "mean": "mean TTFT", "ratio": "mean TTFT / pods'", "median": "median TTFT", "tps": "tokens/s"})
    tokens = figures["results"]["pods"][int(args.concurrency.split(",")[0])]["mean_prompt_tokens"]
    print(f"\n2 servers of {args.model}, {args.cache_tokens} cache tokens each; {args.documents} documents of "
          f"{args.document_words} words a round ({tokens:.0f} prompt tokens a request on average), "
          f"{args.requests} requests a round, "
          f"best of {args.repeats} rounds (hits and the busier pod's share of prompt tokens: all rounds)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
