"""Write a model folder with a real model's shape and tokenizer but random weights, for speed benchmarks.

A benchmark of throughput and time to first token needs a model's architecture, not its answers: the
work per token is the same with random weights. This lets a GPU machine that cannot download or receive
a checkpoint serve a real model's shape: the config and tokenizer travel (a few MB), the weights are
drawn there (seeded, so every run draws the same).

    python -m bench.random_model SOURCE OUT [--shape-only]

SOURCE is a model folder or a .gguf file (its config and tokenizer are read, never its weights); OUT gets
config.json, the tokenizer and, unless ``--shape-only``, model.safetensors in bfloat16.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _source_kwargs(source: Path) -> tuple[str, dict[str, Any]]:
    """from_pretrained's location and arguments for a folder or a GGUF file."""
    if source.suffix == ".gguf":
        return str(source.parent), {"gguf_file": source.name}
    return str(source), {}


def write_random_model(source: Path, out: Path, shape_only: bool = False, seed: int = 0) -> int:
    """Write ``source``'s config and tokenizer to ``out`` and, unless ``shape_only``, seeded random weights.

    Returns the number of parameters of the model the config describes.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    location, kwargs = _source_kwargs(source)
    config = AutoConfig.from_pretrained(location, local_files_only=True, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(location, local_files_only=True, **kwargs)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    torch.manual_seed(seed)
    with torch.device("meta") if shape_only else torch.device("cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    if shape_only:
        config.save_pretrained(out)
    else:
        model.save_pretrained(out)
    return sum(p.numel() for p in model.parameters())


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a model folder or .gguf file: its config and tokenizer")
    parser.add_argument("out", type=Path, help="the folder to write")
    parser.add_argument("--shape-only", action="store_true", help="write the config and tokenizer, no weights")
    args = parser.parse_args(argv)
    if not args.source.exists():
        parser.error(f"{args.source} does not exist")
    params = write_random_model(args.source, args.out, args.shape_only)
    what = "config and tokenizer" if args.shape_only else "config, tokenizer and random bf16 weights"
    print(f"wrote {args.out}: {what} of a {params / 1e6:.1f}M-parameter {args.source.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
