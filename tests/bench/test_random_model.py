"""bench.random_model: a real model's shape and tokenizer with seeded random weights, servable as a folder."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from bench.random_model import write_random_model
from foresail_inference.models import BUILTIN_TINY, load_model


def _tiny_folder(path: Path) -> Path:
    tiny = load_model(BUILTIN_TINY, device="cpu")
    tiny.model.save_pretrained(path)
    tiny.tokenizer.save_pretrained(path)
    return path


def test_shape_only_writes_config_and_tokenizer_without_weights(tmp_path: Path) -> None:
    source = _tiny_folder(tmp_path / "tiny")
    params = write_random_model(source, tmp_path / "shape", shape_only=True)
    written = {p.name for p in (tmp_path / "shape").iterdir()}
    assert "config.json" in written and "tokenizer.json" in written
    assert not any(name.endswith(".safetensors") for name in written)
    assert params == sum(p.numel() for p in load_model(str(source), device="cpu").model.parameters())


def test_random_weights_are_seeded_bfloat16_and_load_like_the_source(tmp_path: Path) -> None:
    shape = tmp_path / "shape"
    write_random_model(_tiny_folder(tmp_path / "tiny"), shape, shape_only=True)
    write_random_model(shape, tmp_path / "a")
    write_random_model(shape, tmp_path / "b")
    a, b = load_model(str(tmp_path / "a"), device="cpu"), load_model(str(tmp_path / "b"), device="cpu")
    source = load_model(str(tmp_path / "tiny"), device="cpu")
    assert a.tokenizer("Hello, sailor")["input_ids"] == source.tokenizer("Hello, sailor")["input_ids"]
    assert a.model.config.num_hidden_layers == source.model.config.num_hidden_layers
    pairs = list(zip(a.model.state_dict().values(), b.model.state_dict().values(), strict=True))
    assert all(x.equal(y) for x, y in pairs)
    assert a.model.model.embed_tokens.weight.std() > 0
    with safe_open(str(tmp_path / "a" / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
