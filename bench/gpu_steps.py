"""Seconds per decode step on one device: generate(), transformers' continuous batching, `foresail serve`.

For each MODEL (LABEL=PATH), N tokens (DIAG_TOKENS, default 100) greedy: generate() one request;
transformers' own continuous batching (generate_batch) for 1 and 16 requests, on CUDA also with CUDA graphs
captured (a replay instead of a launch per kernel); then `foresail serve` on the
same device for 1 and 16 concurrent requests over HTTP. A step costing about the same for 16 requests as
for one is what batching buys. Each figure is the second of two runs of N tokens: on CUDA a step at a
length not seen before costs more (load_model turns torch's cuDNN attention off, as the server does, but
kernels still load on first use). Writes OUT/diag.json and each server's log.

    python -m bench.gpu_steps cuda OUT tiny=builtin:tiny smol=/tmp/smol
"""
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import aiohttp
import torch
from transformers import ContinuousBatchingConfig, GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase

from bench.inference import ROOT, start_server, stop_server

sys.path.insert(0, str(ROOT / "inference"))
from foresail_inference.models import load_model  # noqa: E402


def sync() -> None:
    """Wait for the device to finish what it was given."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def hf(model: PreTrainedModel, tok: PreTrainedTokenizerBase, n: int) -> float:
    """Seconds per token of generate() for one request of n tokens."""
    ids = tok("The sea", return_tensors="pt").to(model.device)
    t = time.perf_counter()
    model.generate(**ids, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)
    sync()
    return (time.perf_counter() - t) / n


def cb(model: PreTrainedModel, tok: PreTrainedTokenizerBase, batch: int, n: int, graphs: bool | None = None) -> float:
    """Seconds per step of transformers' generate_batch for ``batch`` requests of n tokens; ``graphs=True``
    captures CUDA graphs (transformers' default, None, does so only with attention that needs no mask)."""
    gc = GenerationConfig(max_new_tokens=n, do_sample=False, eos_token_id=-1)
    cfg = ContinuousBatchingConfig(page_size=16, num_blocks=512, max_batch_tokens=256, use_cuda_graph=graphs)
    inputs = [tok(f"The sea {i}")["input_ids"] for i in range(batch)]
    t = time.perf_counter()
    model.generate_batch(inputs=inputs, generation_config=gc, continuous_batching_config=cfg)
    sync()
    return (time.perf_counter() - t) / n


async def serve_rate(url: str, name: str, batch: int, n: int) -> tuple[float, list[int]]:
    """Seconds per step of `foresail serve` for ``batch`` concurrent requests of n tokens, and their tokens."""
    async with aiohttp.ClientSession() as http:
        async def one(i: int) -> int:
            body = {"model": name, "prompt": f"The sea {i}", "max_tokens": n, "temperature": 0}
            async with http.post(f"{url}/v1/completions", json=body) as r:
                return (await r.json())["usage"]["completion_tokens"]
        t = time.perf_counter()
        toks = await asyncio.gather(*[one(i) for i in range(batch)])
        return (time.perf_counter() - t) / max(toks), toks


def main() -> int:
    """Command line entry point: python -m bench.gpu_steps DEVICE OUT LABEL=MODEL..."""
    dev, out, models = sys.argv[1], sys.argv[2], sys.argv[3:]
    N = int(os.environ.get("DIAG_TOKENS", "100"))
    os.makedirs(out, exist_ok=True)
    res: dict = {}
    for label, path in [(m.split("=")[0], m.split("=")[1]) for m in models]:
        r = res[label] = {}
        loaded = load_model(path, device=dev)
        model, tok = loaded.model, loaded.tokenizer
        hf(model, tok, N)  # warm-up at full length: a step at a length not seen before costs more on CUDA
        r["hf_generate_s_per_token"] = hf(model, tok, N)
        for b in (1, 16):
            cb(model, tok, b, N)
            r[f"cb_generate_batch_{b}_s_per_step"] = cb(model, tok, b, N)
        if dev == "cuda":
            for b in (1, 16):
                cb(model, tok, b, N, graphs=True)
                r[f"cb_cuda_graphs_batch_{b}_s_per_step"] = cb(model, tok, b, N, graphs=True)
        print(label, r, flush=True)
        del model, loaded
        proc, url, _ = start_server(path, None, "--device", dev, "--served-model-name", "m",
                                    log_path=Path(out) / f"serve-{label}.log")
        try:
            for b in (1, 16):
                asyncio.run(serve_rate(url, "m", b, N))
                r[f"serve_{b}_s_per_step"], r[f"serve_{b}_tokens"] = asyncio.run(serve_rate(url, "m", b, N))
        finally:
            stop_server(proc)
        print(label, r, flush=True)
    json.dump(res, open(f"{out}/diag.json", "w"), indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
