"""Incremental detokenization gives the text that decoding all tokens at once gives, at every step."""

from __future__ import annotations

import copy
from itertools import pairwise

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from foresail_inference.detokenizer import Detokenizer
from foresail_inference.models import build_tiny_tokenizer

TEXT = "Ünïcödé 日本語 ⛵ sailors' café — «quotes» 🚢🌊 done.\n  indented <|im_end|> tail"


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


def _texts(detokenizer: Detokenizer, ids: list[int], stride: int) -> list[str]:
    """The text after each call, feeding ``stride`` more tokens each time."""
    return [detokenizer.update(ids[:end]) for end in range(stride, len(ids) + stride, stride)]


@pytest.mark.parametrize("stride", [1, 3])
def test_incremental_text_equals_full_decoding(tokenizer, stride: int) -> None:
    ids = tokenizer(TEXT)["input_ids"] + [tokenizer.eos_token_id]
    full = tokenizer.decode(ids, skip_special_tokens=True)
    detokenizer = Detokenizer(tokenizer)
    texts = _texts(detokenizer, ids, stride)
    assert detokenizer.incremental
    assert texts[-1] == full
    assert "<|im_end|>" not in full and "日本語 ⛵" in full
    for before, after in pairwise(texts):  # only ever grows, never with half a character
        assert after.startswith(before) and "\ufffd" not in after


def test_text_at_each_step_is_the_decoded_prefix_where_that_is_whole(tokenizer) -> None:
    ids = tokenizer(TEXT)["input_ids"]
    detokenizer = Detokenizer(tokenizer)
    for end in range(1, len(ids) + 1):
        text = detokenizer.update(ids[:end])
        whole = tokenizer.decode(ids[:end], skip_special_tokens=True)
        if "\ufffd" not in whole:
            assert text == whole


def test_tokenizers_that_clean_up_spaces_are_decoded_in_full(tokenizer) -> None:
    cleaning = copy.deepcopy(tokenizer)
    cleaning.clean_up_tokenization_spaces = True
    cleaning.clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output = True  # really clean
    ids = cleaning("a , b .")["input_ids"]
    detokenizer = Detokenizer(cleaning)
    assert not detokenizer.incremental
    assert _texts(detokenizer, ids, 1)[-1] == cleaning.decode(ids, skip_special_tokens=True) == "a, b."


def test_text_after_a_prompt_continues_it(tokenizer) -> None:
    ids = tokenizer(TEXT)["input_ids"]
    full = tokenizer.decode(ids, skip_special_tokens=True)
    for cut in range(1, len(ids)):
        prompt_text = tokenizer.decode(ids[:cut], skip_special_tokens=True)
        text = Detokenizer(tokenizer, ids[:cut]).update(ids[cut:])
        if prompt_text.endswith("\ufffd"):  # the prompt ends inside a character: the rest of it is replaced too
            assert full[len(prompt_text.rstrip("\ufffd")):].endswith(text.lstrip("\ufffd")), cut
        else:
            assert prompt_text + text == full, cut


def _metaspace_tokenizer() -> PreTrainedTokenizerFast:
    """A SentencePiece-style tokenizer (as Llama-2's and Mistral's): its decoder drops the first token's space."""
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
    backend.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=200, special_tokens=["<unk>", "</s>"], show_progress=False)
    backend.train_from_iterator(["The capital of France is Paris. Paris is nice."] * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="</s>")


@pytest.mark.parametrize("cleans_up", [False, True])
def test_the_first_generated_token_keeps_its_space_after_the_prompt(cleans_up: bool) -> None:
    metaspace = _metaspace_tokenizer()
    metaspace.clean_up_tokenization_spaces = cleans_up
    prompt = metaspace("The capital of France is")["input_ids"]
    generated = metaspace("The capital of France is Paris.")["input_ids"][len(prompt):]
    detokenizer = Detokenizer(metaspace, prompt)
    assert detokenizer.incremental != cleans_up
    assert metaspace.decode(generated) == "Paris."  # alone, the decoder drops the space
    assert _texts(detokenizer, generated, 1)[-1] == " Paris."
