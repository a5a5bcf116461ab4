"""Per-request sampling (temperature, top_p, greedy, seed) inside transformers' continuous batching.

transformers' manager applies per-request temperature and top_p (``per_request_processors=True``)
but draws every token from one global generator and has no per-request greedy switch. The
``RequestSampler`` below is the one piece we add: it picks the token itself for greedy requests
(argmax) and for seeded ones (inverse-CDF with a uniform number derived from seed and position), and
leaves only that token possible, so the manager's own draw returns it. A seeded request thus gives
the same tokens whatever else shares its batch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from transformers.generation.continuous_batching.cb_logits_processors import (
    ContinuousBatchingLogitsProcessor,
    ContinuousBatchingLogitsProcessorList,
    ContinuousBatchingTopPLogitsWarper,
)
from transformers.generation.continuous_batching.requests import FutureRequestState
from transformers.generation.logits_process import LogitsProcessorList, TemperatureLogitsWarper, TopPLogitsWarper

_GREEDY = 2.0  # per-row argument: argmax
_FREE = -1.0  # per-row argument: let the manager draw
# Below this temperature a request is greedy, as in vLLM: dividing the logits by a smaller one overflows them to
# inf and NaN, and torch.multinomial then raises in the generation thread, which ends it for every request.
GREEDY_BELOW = 1e-5


@dataclass(frozen=True)
class SamplingParams:
    """What one request asks for, already validated."""

    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def processor_kwargs(self) -> dict[str, float | int]:
        """Keyword arguments for the manager's per-request logits processors."""
        greedy = self.temperature < GREEDY_BELOW
        kwargs: dict[str, float | int] = {
            "temperature": 1.0 if greedy else float(self.temperature),
            "top_p": float(self.top_p),
            "greedy": int(greedy),
        }
        if self.seed is not None:
            kwargs["seed"] = int(self.seed)
        return kwargs


class RequestSampler(ContinuousBatchingLogitsProcessor):
    """Pins the next token of greedy and seeded requests; unseeded sampled rows pass through."""

    supported_kwargs = {"greedy": int, "seed": int}
    ignored_kwargs = ()

    def fill_defaults(self, int32_tensor: torch.Tensor) -> None:
        """Rows without a request draw freely."""
        int32_tensor.copy_(torch.full_like(int32_tensor, _FREE, dtype=torch.float32).view(torch.int32))

    def prepare_tensor_args(self, requests_with_new_token: list[FutureRequestState]) -> torch.Tensor:
        """One float per row: the uniform number to invert, the greedy marker, or the free marker."""
        values = []
        for request in requests_with_new_token:
            kwargs = request.state.logit_processor_kwargs
            if kwargs.get("greedy"):
                values.append(_GREEDY)
            elif "seed" in kwargs:
                values.append(random.Random(f"{kwargs['seed']}:{request.state.generated_len()}").random())
            else:
                values.append(_FREE)
        return torch.tensor(values, dtype=torch.float32).view(torch.int32)

    def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
        """Replace pinned rows by a row where only the chosen token is possible."""
        u = tensor_arg[: scores.size(0)].view(torch.float32).unsqueeze(-1)
        if bool((u < 0).all()):
            return scores
        chosen = scores.argmax(-1, keepdim=True)
        if bool(((u >= 0) & (u < 1)).any()):
            cdf = scores.float().softmax(-1).cumsum(-1)
            drawn = torch.searchsorted(cdf, (u.clamp(0, 1) * cdf[:, -1:]).contiguous())
            chosen = torch.where(u >= 1, chosen, drawn.clamp_max(scores.size(-1) - 1))
        pinned = torch.full_like(scores, float("-inf")).scatter(-1, chosen, 0.0)
        return torch.where(u >= 0, pinned, scores)


class TopP(ContinuousBatchingTopPLogitsWarper):
    """transformers' per-request top_p, skipping its sort over the vocabulary when no row needs it."""

    def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
        """Filter only when some row asks for top_p < 1."""
        if bool((tensor_arg[: scores.size(0)].view(torch.float32) >= 1.0).all()):
            return scores
        return super().__call__(scores, tensor_arg)


def build_processors() -> ContinuousBatchingLogitsProcessorList:
    """Per-request temperature and top_p (transformers' own), then the ``RequestSampler``."""
    processors = ContinuousBatchingLogitsProcessorList(
        LogitsProcessorList([TemperatureLogitsWarper(1.0), TopP(TopPLogitsWarper(1.0)), RequestSampler()]),
        per_request_processors=True,
    )
    processors.tensors_required += 2  # the list only counts the processors it converted itself
    return processors
