"""Model loading: the builtin tiny model, a local folder, a Hugging Face id or a GGUF file."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from .sources import BUILTIN_TINY, ModelLoadError, ModelSource, check_fits, hub_offline, resolve_source

__all__ = ["BUILTIN_TINY", "LoadedModel", "ModelLoadError", "load_model"]

log = logging.getLogger(__name__)

# ChatML, the format of SmolLM2 and many others; the tiny model's tokenizer carries it.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

# A few KB of text to train the tiny model's byte-level BPE on (its merges only shape token counts).
_CORPUS = """\
Foresail runs language model inference servers on Kubernetes and scales them ahead of demand.
A model owner applies an LLMDeployment; the operator starts pods, reads their metrics from Prometheus,
forecasts the load and adds replicas before the traffic arrives, because a pod takes minutes to load.
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.
How vexingly quick daft zebras jump! Sphinx of black quartz, judge my vow.
Continuous batching lets requests join and leave the running batch at every step of generation.
Each request holds its prompt and the tokens generated so far in a paged key-value cache.
When the queue is full the server answers 429 and asks the client to retry after a while.
Hello! How can I help you today? Tell me a story about a sailor, a lighthouse and the sea.
The weather is calm, the wind is fair, and the ship leaves the harbour at dawn.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 3.14 2.71 42. Punctuation: , . ; : ! ? ( ) [ ] { } " ' - _ / \\
def main(): return 0  # code, JSON {"key": "value", "list": [1, 2, 3]} and URLs http://example.com/path
"""


@dataclass
class LoadedModel:
    """A model ready to serve, with where it came from and how long loading took."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    load_seconds: float

    @property
    def max_context(self) -> int:
        """The longest sequence (prompt + completion) the model accepts."""
        return int(getattr(self.model.config, "max_position_embeddings", 2048) or 2048)


def pick_device(device: str) -> torch.device:
    """Resolve ``auto|cpu|cuda`` to a torch device; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("--device cuda was asked for but no CUDA GPU is available")
    return torch.device(device)


def avoid_cudnn_attention() -> None:
    """Keep torch's SDPA off its cuDNN backend, which Hopper GPUs get by default.

    cuDNN builds a graph for each new sequence length, and decoding meets a new length at every step: on
    an H200, where torch.profiler showed cuDNN attention, a step at a length not seen before cost 40 to
    70 ms more than a warm one. Flash and memory-efficient attention need no such plan.
    """
    torch.backends.cuda.enable_cudnn_sdp(False)
    log.info("attention: torch SDPA without its cuDNN backend (it builds a graph for each sequence length)")


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on the embedded corpus (deterministic, ~20 ms)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS], trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", bos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(vocab_size: int, eos_token_id: int, pad_token_id: int) -> LlamaForCausalLM:
    """A random-weight Llama (~1.1M parameters) seeded so every process builds the same weights."""
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=128,
        intermediate_size=512,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        eos_token_id=eos_token_id,
        bos_token_id=pad_token_id,
        pad_token_id=pad_token_id,
        tie_word_embeddings=True,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(0)
    try:
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    return model


def _load_builtin_tiny() -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    tokenizer = build_tiny_tokenizer()
    model = build_tiny_model(len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id)
    return model, tokenizer


def _load_pretrained(source: ModelSource, revision: str | None, cache_dir: str | None,
                     dtype: torch.dtype) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    check_fits(source, dtype.itemsize)
    kwargs: dict[str, Any] = {}
    location = source.location
    if source.kind == "gguf":
        location, kwargs["gguf_file"] = str(Path(location).parent), Path(location).name
    elif source.kind == "hub":
        kwargs.update(revision=revision, cache_dir=cache_dir)
    try:
        tokenizer = _from_local_or_hub(AutoTokenizer, location, source.kind == "hub", kwargs)
        loaded = _from_local_or_hub(AutoModelForCausalLM, location, source.kind == "hub", {**kwargs, "dtype": dtype})
    except (torch.OutOfMemoryError, MemoryError) as exc:
        raise ModelLoadError(f"model {source.location} does not fit in memory: {exc}") from exc
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot load model {source.location}: {exc}") from exc
    return loaded, tokenizer


def _from_local_or_hub(cls: Any, location: str, hub: bool, kwargs: dict[str, Any]) -> Any:
    """Load from local files first (offline); reach the Hub only for a Hub id whose files are missing."""
    try:
        return cls.from_pretrained(location, local_files_only=True, **kwargs)
    except OSError:
        if not hub or hub_offline():
            raise
    return cls.from_pretrained(location, **kwargs)


def load_model(
    model: str,
    *,
    revision: str | None = None,
    cache_dir: str | None = None,
    device: str = "auto",
) -> LoadedModel:
    """Load ``model`` (``builtin:tiny``, folder, Hub id or .gguf) on the chosen device (bf16 on CUDA)."""
    start = time.perf_counter()
    source = resolve_source(model)
    target = pick_device(device)
    dtype = torch.bfloat16 if target.type == "cuda" else torch.float32
    if target.type == "cuda":
        avoid_cudnn_attention()
    if source.kind == "builtin":
        loaded, tokenizer = _load_builtin_tiny()
    else:
        loaded, tokenizer = _load_pretrained(source, revision, cache_dir, dtype)
    try:
        loaded = loaded.to(device=target, dtype=dtype).eval()
    except torch.OutOfMemoryError as exc:
        raise ModelLoadError(f"model {model} does not fit on {target}: {exc}") from exc
    if tokenizer.chat_template is None:
        tokenizer.chat_template = CHAT_TEMPLATE
    seconds = time.perf_counter() - start
    log.info("loaded %s on %s in %s in %.2f s", model, target, str(dtype).removeprefix("torch."), seconds)
    return LoadedModel(loaded, tokenizer, target, seconds)
