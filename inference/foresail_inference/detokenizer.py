"""The text of a request's tokens as they are generated, decoded incrementally.

Decoding every generated token again at each step costs O(n) per step, O(n^2) over a completion: 200 us per
step at 1,000 tokens with the tiny model's tokenizer, for every running request. tokenizers' ``DecodeStream``
(what vLLM and TGI also use) decodes only the new token against a short window of the previous ones, and
holds back a token that ends inside a UTF-8 character until it is complete. Tokenizers without a Rust
backend, or that clean up spaces after decoding (``DecodeStream`` does not), are decoded in full each time.
Both start from the last few prompt tokens, as vLLM does: a SentencePiece (Metaspace) decoder drops the leading
space of the first token it decodes, which would otherwise be the first generated one ("isParis").
"""

from __future__ import annotations

from collections.abc import Sequence

from tokenizers import Tokenizer
from tokenizers.decoders import DecodeStream
from transformers import PreTrainedTokenizerBase

PROMPT_CONTEXT = 4  # at most this many prompt tokens are decoded before the generated ones


def _context(tokenizer: PreTrainedTokenizerBase, prompt_ids: Sequence[int]) -> tuple[list[int], str]:
    """The last ``PROMPT_CONTEXT`` prompt tokens and their text; none when the prompt ends inside a UTF-8
    character (its replacement character would change under the generated tokens, and the text after it shift)."""
    ids = list(prompt_ids[-PROMPT_CONTEXT:])
    text = tokenizer.decode(ids, skip_special_tokens=True)
    return ([], "") if text.endswith("\ufffd") else (ids, text)


class Detokenizer:
    """The text of a growing list of token ids that follow ``prompt_ids``, special tokens left out."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, prompt_ids: Sequence[int] = ()) -> None:
        self.tokenizer = tokenizer
        self.context, self.context_text = _context(tokenizer, prompt_ids)
        backend = getattr(tokenizer, "_tokenizer", None)
        cleans_up = getattr(tokenizer, "clean_up_tokenization_spaces", False)
        # the Rust tokenizer and its stream, where decoding only the new tokens is exact
        self.stream: tuple[Tokenizer, DecodeStream] | None = (
            (backend, DecodeStream(self.context, skip_special_tokens=True))
            if isinstance(backend, Tokenizer) and not cleans_up else None)
        self.decoded = 0  # tokens already decoded
        self.text = ""

    @property
    def incremental(self) -> bool:
        """True when each call decodes only the new tokens."""
        return self.stream is not None

    def update(self, tokens: list[int], end: int | None = None) -> str:
        """The text of ``tokens[:end]``, which extend those of the previous call."""
        end = len(tokens) if end is None else end
        if self.stream is None:
            self.text = self.tokenizer.decode(self.context + tokens[:end],
                                              skip_special_tokens=True)[len(self.context_text):]
        else:
            backend, stream = self.stream
            pieces = [stream.step(backend, tokens[i]) for i in range(self.decoded, end)]
            self.text += "".join(piece for piece in pieces if piece)
        self.decoded = end
        return self.text
