"""OpenAI request parsing and response bodies for /v1/completions and /v1/chat/completions."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from transformers import PreTrainedTokenizerBase

from .sampling import SamplingParams

COMPLETION_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
CHAT_DEFAULT_MAX_TOKENS = 256  # a chat request without a limit generates up to this, or what the context leaves
MAX_STOP_SEQUENCES = 4
# Longest stop string: the end of the text is compared with each stop's beginning at every step, on the event loop
# (four stops of 200,000 characters cost 19 ms a step). Stops are short delimiters ("\n\n", "###", "</s>").
MAX_STOP_CHARS = 256
# A token covers at most as many characters as its longest vocabulary entry (byte-level entries have one character
# per byte; SentencePiece's and WordPiece's markers only add characters). Unicode normalization (NFC/NFKC, e.g.
# Qwen's) can compose up to 4 characters into one before tokenizing: the bound allows for that.
NORMALIZATION_SLACK = 4
# vLLM's own request parameters that would change the output, with their no-op values: a client written for vLLM
# (its benchmark's ignore_eos, a top_k, a guided_choice) gets a 400 rather than an output that silently ignores them.
VLLM_EXTRAS: dict[str, tuple[Any, ...]] = {
    "top_k": (0, -1), "min_p": (0,), "repetition_penalty": (1,), "length_penalty": (1,), "min_tokens": (0,),
    "ignore_eos": (False,), "use_beam_search": (False,), "include_stop_str_in_output": (False,),
    "skip_special_tokens": (True,), "stop_token_ids": ([],), "bad_words": ([],), "allowed_token_ids": (),
    "prompt_logprobs": (), "truncate_prompt_tokens": (), "guided_json": (), "guided_regex": (), "guided_choice": (),
    "guided_grammar": (), "structured_outputs": (), "chat_template": (), "continue_final_message": (False,),
    "add_generation_prompt": (True,),
}
# vLLM's boolean request fields (and chat's "logprobs"): its pydantic models read them in lax mode, where "true",
# "off", 1 or 0.0 are booleans too; the same values mean the same here, in the no-op checks included.
BOOL_FIELDS = ("stream", "echo", "use_beam_search", "include_stop_str_in_output", "ignore_eos", "skip_special_tokens",
               "continue_final_message", "add_generation_prompt")
_BOOL_WORDS = {**dict.fromkeys(("true", "t", "yes", "y", "on", "1"), True),
               **dict.fromkeys(("false", "f", "no", "n", "off", "0"), False)}


class InvalidRequest(ValueError):
    """A request body the API refuses (400), naming the offending parameter (and an OpenAI error code)."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param, self.code = param, code


def max_chars_per_token(tokenizer: PreTrainedTokenizerBase) -> int:
    """More characters than one token of ``tokenizer`` can stand for: a prompt with more characters than a limit
    of tokens times this cannot fit it, and is refused without being tokenized."""
    return NORMALIZATION_SLACK * max(map(len, tokenizer.get_vocab()))


@dataclass(frozen=True)
class ParsedRequest:
    """A validated request: tokens to generate from and how."""

    prompt_ids: list[int]
    params: SamplingParams
    stream: bool
    include_usage: bool
    continuous_usage: bool = False  # vLLM's stream_options.continuous_usage_stats: usage in every chunk


def error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error shape."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _get(body: dict[str, Any], name: str, types: type | tuple[type, ...], default: Any = None) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise InvalidRequest(f"'{name}' has the wrong type", name)
    if not isinstance(value, types):
        raise InvalidRequest(f"'{name}' has the wrong type", name)
    return value


def _as_bool(value: Any, name: str, param: str) -> bool | None:
    """A boolean field as pydantic's lax mode reads it: a bool, 0 or 1, or one of its words in any case ("true",
    "off", "y"...); None stays None, anything else is refused."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in _BOOL_WORDS:
        return _BOOL_WORDS[value.lower()]
    raise InvalidRequest(f"'{name}' must be a boolean", param)


def _with_bools(body: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    """``body`` with its boolean fields ``names`` read as booleans."""
    return {**body, **{name: _as_bool(body[name], name, name) for name in names if name in body}}


def _number(body: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = _get(body, name, (int, float), default)
    if not low <= value <= high:  # before float(): an int of 400 digits overflows it
        raise InvalidRequest(f"'{name}' must be between {low} and {high}", name)
    return float(value)


def _stop(body: dict[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if (not isinstance(stops, list) or len(stops) > MAX_STOP_SEQUENCES
            or not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in stops)):
        raise InvalidRequest(f"'stop' must be a string or a list of up to {MAX_STOP_SEQUENCES}, each of 1 to "
                             f"{MAX_STOP_CHARS} characters", "stop")
    return tuple(stops)


def _refuse_unsupported(body: dict[str, Any]) -> None:
    """Parameters that would change the output are refused unless they hold their no-op value (0, {}, "", [])."""
    for unsupported in ("logprobs", "echo", "top_logprobs", "suffix", "logit_bias", "frequency_penalty",
                        "presence_penalty", "tools", "functions"):
        if body.get(unsupported):
            raise InvalidRequest(f"'{unsupported}' is not supported by this server", unsupported)
    if body.get("response_format") not in (None, {"type": "text"}):
        raise InvalidRequest("'response_format' is not supported by this server (only {\"type\": \"text\"})",
                             "response_format")
    for choice in ("tool_choice", "function_call"):  # function_call: tool_choice's deprecated name
        if body.get(choice) not in (None, "none", "auto"):
            raise InvalidRequest(f"'{choice}' is not supported by this server", choice)
    for name, no_ops in VLLM_EXTRAS.items():
        if body.get(name) is not None and body[name] not in no_ops:
            raise InvalidRequest(f"'{name}' (vLLM's) is not supported by this server", name)


def _max_tokens_key(body: dict[str, Any], preferred: str) -> str:
    """The key that limits the completion: ``preferred`` (chat's max_completion_tokens) when given."""
    return preferred if body.get(preferred) is not None else "max_tokens"


def _params(body: dict[str, Any], default_max_tokens: int, max_tokens_key: str, room: int) -> SamplingParams:
    """The sampling parameters; without a limit, up to ``default_max_tokens`` or the ``room`` the prompt leaves
    (at least 1, so that a prompt that fills the context alone is refused for its length)."""
    _refuse_unsupported(body)
    for name in ("n", "best_of"):
        if _get(body, name, int, 1) != 1:
            raise InvalidRequest(f"'{name}' must be 1", name)
    key = _max_tokens_key(body, max_tokens_key)
    max_tokens = _get(body, key, int)
    if max_tokens is None:
        max_tokens = min(default_max_tokens, max(room, 1))
    elif max_tokens < 1:
        raise InvalidRequest(f"'{key}' must be at least 1", key)
    seed = _get(body, "seed", int)
    return SamplingParams(
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0),
        top_p=_number(body, "top_p", 1.0, 1e-6, 1.0),
        seed=seed,
        stop=_stop(body),
    )


def _streaming(body: dict[str, Any]) -> tuple[bool, bool, bool]:
    """``stream``, and whether the stream ends with a usage chunk and carries usage in every chunk. vLLM's
    ``continuous_usage_stats`` asks for both, unless ``include_usage`` is false (vLLM's default is true)."""
    stream = _get(body, "stream", bool, False)
    options = _get(body, "stream_options", dict, {})
    if options and not stream:  # an empty object passes, as in vLLM
        raise InvalidRequest("'stream_options' is only allowed when 'stream' is true", "stream_options")
    include_usage = _as_bool(options.get("include_usage"), "stream_options.include_usage", "stream_options")
    continuous = bool(_as_bool(options.get("continuous_usage_stats"), "stream_options.continuous_usage_stats",
                               "stream_options") and include_usage is not False)
    return stream, bool(include_usage) or continuous, continuous


def _unicode(text: str, param: str) -> str:
    """``text``, refused if it holds a lone surrogate (JSON allows the escape; no tokenizer can encode it)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidRequest(f"'{param}' is not valid Unicode: a lone surrogate at character {exc.start}",
                             param) from None
    return text


def _refuse_too_many_chars(chars: int, max_request_tokens: int, max_prompt_chars: int, param: str) -> None:
    if chars > max_prompt_chars:
        raise InvalidRequest(f"the prompt's {chars} characters cannot fit in this server's limit of "
                             f"{max_request_tokens} tokens per request (at most {max_prompt_chars} characters)",
                             param, "context_length_exceeded")


def _check_length(prompt_tokens: int, params: SamplingParams, max_request_tokens: int, prompt_param: str,
                  max_tokens_key: str) -> None:
    """Refuse a request that can never fit, naming the prompt when it leaves no room on its own."""
    if prompt_tokens >= max_request_tokens:
        raise InvalidRequest(f"the prompt ({prompt_tokens} tokens) leaves no room for a completion within this "
                             f"server's limit of {max_request_tokens} tokens per request", prompt_param,
                             "context_length_exceeded")
    need = prompt_tokens + params.max_tokens
    if need > max_request_tokens:
        raise InvalidRequest(f"prompt ({prompt_tokens} tokens) + {max_tokens_key} ({params.max_tokens}) = {need} "
                             f"exceeds this server's limit of {max_request_tokens} tokens per request",
                             max_tokens_key, "context_length_exceeded")


def _prompt_ids(prompt: Any, tokenizer: PreTrainedTokenizerBase, max_request_tokens: int,
                max_prompt_chars: int) -> list[int]:
    """The token ids of a completion prompt: a string, or one string or token list in a list."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]
    if isinstance(prompt, str):
        _refuse_too_many_chars(len(prompt), max_request_tokens, max_prompt_chars, "prompt")
        return list(tokenizer(_unicode(prompt, "prompt"))["input_ids"])
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        if any(not 0 <= t < len(tokenizer) for t in prompt):
            raise InvalidRequest("'prompt' holds a token id outside the vocabulary", "prompt")
        return list(prompt)
    raise InvalidRequest("'prompt' must be a string or a list of token ids (one prompt per request)", "prompt")


def parse_completion(body: dict[str, Any], tokenizer: PreTrainedTokenizerBase, max_request_tokens: int,
                     max_prompt_chars: int) -> ParsedRequest:
    """Validate a /v1/completions body. A request that cannot fit in ``max_request_tokens`` (prompt + completion)
    is refused, without tokenizing a prompt longer than ``max_prompt_chars`` characters."""
    body = _with_bools(body, BOOL_FIELDS)
    prompt_ids = _prompt_ids(body.get("prompt"), tokenizer, max_request_tokens, max_prompt_chars)
    if not prompt_ids:
        raise InvalidRequest("the prompt is empty", "prompt")
    if body.get("logprobs") is not None:  # even 0, which asks for the sampled tokens' logprobs
        raise InvalidRequest("'logprobs' is not supported by this server", "logprobs")
    stream, include_usage, continuous_usage = _streaming(body)
    params = _params(body, COMPLETION_DEFAULT_MAX_TOKENS, "max_tokens", max_request_tokens - len(prompt_ids))
    _check_length(len(prompt_ids), params, max_request_tokens, "prompt", "max_tokens")
    return ParsedRequest(prompt_ids, params, stream, include_usage, continuous_usage)


def _message_text(message: Any) -> dict[str, str]:
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise InvalidRequest("each message must be an object with a 'role'", "messages")
    content = message.get("content")
    if content is None:  # null or left out (an assistant turn of tool calls): no text, as vLLM reads it
        content = ""
    elif isinstance(content, list):
        parts: list[str] = [p["text"] for p in content
                            if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)]
        if len(parts) != len(content):
            raise InvalidRequest("only text content parts are supported", "messages")
        content = "\n".join(parts)  # as vLLM joins them (entrypoints/chat_utils.py, for string chat templates)
    if not isinstance(content, str):
        raise InvalidRequest("each message needs a string 'content'", "messages")
    return {"role": _unicode(message["role"], "messages"), "content": _unicode(content, "messages")}


def parse_chat(body: dict[str, Any], tokenizer: PreTrainedTokenizerBase, max_request_tokens: int,
               max_prompt_chars: int) -> ParsedRequest:
    """Validate a /v1/chat/completions body and apply the tokenizer's chat template. A request that cannot fit in
    ``max_request_tokens`` (prompt + completion) is refused, without rendering messages of more than
    ``max_prompt_chars`` characters."""
    body = _with_bools(body, (*BOOL_FIELDS, "logprobs"))  # chat's logprobs is a boolean, completions' a number
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty list", "messages")
    conversation = [_message_text(m) for m in messages]
    _refuse_too_many_chars(sum(len(m["content"]) for m in conversation), max_request_tokens, max_prompt_chars,
                           "messages")
    try:
        encoded = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True)
    except Exception as exc:  # the template is user-facing Jinja: any failure is the request's fault
        raise InvalidRequest(f"the chat template rejected the messages: {exc}", "messages") from exc
    prompt_ids = list(encoded["input_ids"] if isinstance(encoded, dict) or hasattr(encoded, "keys") else encoded)
    if not prompt_ids:
        raise InvalidRequest("the chat template made an empty prompt of the messages", "messages")
    stream, include_usage, continuous_usage = _streaming(body)
    params = _params(body, CHAT_DEFAULT_MAX_TOKENS, "max_completion_tokens", max_request_tokens - len(prompt_ids))
    _check_length(len(prompt_ids), params, max_request_tokens, "messages",
                  _max_tokens_key(body, "max_completion_tokens"))
    return ParsedRequest(prompt_ids, params, stream, include_usage, continuous_usage)


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """OpenAI's usage object."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


class ResponseBuilder:
    """Builds the response or stream chunks of one request, completion or chat."""

    def __init__(self, chat: bool, model: str) -> None:
        self.chat, self.model = chat, model
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())

    def _envelope(self, obj: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.id, "object": obj, "created": self.created, "model": self.model, "choices": choices}

    def full(self, text: str, finish_reason: str | None, prompt_tokens: int, completion_tokens: int) -> dict:
        """The non-streaming response."""
        if self.chat:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                      "finish_reason": finish_reason}
            body = self._envelope("chat.completion", [choice])
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
            body = self._envelope("text_completion", [choice])
        body["usage"] = usage(prompt_tokens, completion_tokens)
        return body

    def chunk(self, text: str, finish_reason: str | None, first: bool = False,
              usage_so_far: dict[str, int] | None = None) -> dict[str, Any]:
        """One streamed chunk, with the usage so far if given."""
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant", "content": text} if first else {"content": text}
            if finish_reason and not text and not first:  # the first chunk names the role, even as the last
                delta = {}
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            body = self._envelope("chat.completion.chunk", [choice])
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
            body = self._envelope("text_completion", [choice])
        if usage_so_far is not None:
            body["usage"] = usage_so_far
        return body

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        """The final chunk of a stream that asked for usage."""
        body = self._envelope("chat.completion.chunk" if self.chat else "text_completion", [])
        body["usage"] = usage(prompt_tokens, completion_tokens)
        return body
