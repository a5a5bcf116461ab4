"""Where a decode step's time goes on one device, and whether the server's memory grows from burst to burst.

Three measurements, written to OUT/profile.json (and the profiler's tables to OUT/profile-*.txt):
- ``launch``: microseconds per kernel launch (2,000 tiny adds, one sync at the end) and per launch plus
  sync (a sync after each), the floor under every step on this machine;
- ``generate``: on the builtin tiny model, first the warm-up curves (milliseconds per token of successive
  generate() calls of 4, 5, 20, 50, 100 and 100 tokens, in a fresh process each, with torch's cuDNN
  attention off as the server runs it, and on); then, warm, 20 greedy tokens under torch.profiler:
  seconds per token, the CPU time and the device time the operators took, and the top operators;
- ``bursts``: `foresail serve` with the test suite's limits (8 waiting, 4,096 tokens in flight), BURSTS
  bursts of 40 requests of 300 tokens, the server's RSS before the first and after each; run once with
  glibc's default malloc arenas (up to 8 per core) and once with MALLOC_ARENA_MAX=2, as the image sets.
  Growth that stops after the first bursts is warm-up (arenas, buffers); growth in every burst is a leak.

    python -m bench.gpu_profile cuda OUT [BURSTS]
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import psutil
import torch
from torch.profiler import ProfilerActivity, profile

from bench.gpu_steps import hf, load_model, sync
from bench.inference import ROOT, TINY, start_server, stop_server


def launch_us(device: str, count: int = 2000) -> dict[str, float]:
    """Microseconds per tiny kernel launch, without and with a sync after each."""
    x = torch.zeros(16, device=device)
    for _ in range(100):
        x.add_(1)
    sync()
    start = time.perf_counter()
    for _ in range(count):
        x.add_(1)
    sync()
    queued = (time.perf_counter() - start) / count * 1e6
    start = time.perf_counter()
    for _ in range(count // 4):
        x.add_(1)
        sync()
    synced = (time.perf_counter() - start) / (count // 4) * 1e6
    return {"launch_us": queued, "launch_and_sync_us": synced}


CURVE_TOKENS = (4, 5, 20, 50, 100, 100)


def warm_up_curve(device: str, cudnn: bool) -> list[float]:
    """Milliseconds per token of successive generate() calls of CURVE_TOKENS tokens on the tiny model, in a
    fresh process with torch's cuDNN attention on or off (the server runs it off).

    A call that reaches lengths not seen before pays for any per-shape work (cuDNN builds a graph for each);
    the second 100-token call is warm. Each setting gets its own process so that both meet every length anew.
    """
    code = ("import json, sys, torch; from bench.gpu_steps import hf, load_model; "
            f"loaded = load_model('{TINY}', device='{device}'); torch.backends.cuda.enable_cudnn_sdp({cudnn}); "
            f"print(json.dumps([hf(loaded.model, loaded.tokenizer, n) * 1e3 for n in {CURVE_TOKENS}]))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    return json.loads(run.stdout.splitlines()[-1])


def profile_generate(device: str, out: Path, tokens: int = 20) -> dict[str, object]:
    """The warm-up curves, then seconds per warm token of generate() on the tiny model and how much of it the
    operators' CPU and device time are."""
    curves = {f"cudnn_{name}": warm_up_curve(device, cudnn) for name, cudnn in (("off", False), ("on", True))}
    loaded = load_model(TINY, device=device)
    model, tok = loaded.model, loaded.tokenizer
    hf(model, tok, tokens)  # warm-up
    plain = hf(model, tok, tokens)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities) as prof:
        hf(model, tok, tokens)
    events = prof.key_averages()
    tables = [events.table(sort_by="self_cpu_time_total", row_limit=25)]
    if device == "cuda":
        tables.append(events.table(sort_by="self_cuda_time_total", row_limit=15))
    (out / "profile-generate.txt").write_text("\n\n".join(tables))
    cpu = sum(e.self_cpu_time_total for e in events) / 1e6
    device_time = sum(getattr(e, "self_device_time_total", 0) for e in events) / 1e6
    launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cudaLaunchKernelExC"))
    return {"warm_up_ms_per_token": curves, "s_per_token": plain, "op_cpu_s_per_token": cpu / tokens,
            "device_s_per_token": device_time / tokens, "kernel_launches_per_token": launches / tokens}


async def burst_rss(device: str, bursts: int, env: dict[str, str]) -> list[float]:
    """The server's RSS in MiB before the first burst and after each of ``bursts`` bursts of 40 requests."""
    proc, url, _ = start_server(TINY, 1, "--device", device, "--max-waiting", "8", "--max-tokens-in-flight", "4096",
                                env=env)
    body = {"model": TINY, "prompt": "overload", "max_tokens": 300, "temperature": 0}
    rss = [psutil.Process(proc.pid).memory_info().rss / 2**20]
    try:
        async with aiohttp.ClientSession() as http:
            async def request() -> int:
                async with http.post(f"{url}/v1/completions", json=body) as rsp:
                    await rsp.read()
                    return rsp.status

            for _ in range(bursts):
                statuses = await asyncio.gather(*[request() for _ in range(40)])
                rss.append(psutil.Process(proc.pid).memory_info().rss / 2**20)
                print(f"  burst {len(rss) - 1}: {statuses.count(200)} answered, RSS {rss[-1]:.0f} MiB", flush=True)
    finally:
        stop_server(proc)
    return rss


def main(argv: list[str]) -> int:
    """Run the three measurements and write OUT/profile.json."""
    device, out = argv[0], Path(argv[1])
    bursts = int(argv[2]) if len(argv) > 2 else 6
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, object] = {"launch": launch_us(device)}
    print("launch", result["launch"], flush=True)
    result["generate"] = profile_generate(device, out)
    print("generate", result["generate"], flush=True)
    for name, env in {"glibc_default": {}, "malloc_arena_max_2": {"MALLOC_ARENA_MAX": "2"}}.items():
        print(f"bursts, {name}", flush=True)
        result[f"bursts_rss_mib_{name}"] = asyncio.run(burst_rss(device, bursts, env))
    (out / "profile.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
