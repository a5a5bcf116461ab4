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


class InvalidRequest(ValueError):
    """A request body the API refuses (400), naming the offending parameter."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class ParsedRequest:
    """A validated request: tokens to generate from and how."""

    prompt_ids: list[int]
    params: SamplingParams
    stream: bool
    include_usage: bool


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
            or not all(isinstance(s, str) and s for s in stops)):
        raise InvalidRequest(f"'stop' must be a non-empty string or a list of up to {MAX_STOP_SEQUENCES}", "stop")
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


def _params(body: dict[str, Any], default_max_tokens: int, max_tokens_key: str, room: int) -> SamplingParams:
    """The sampling parameters; without a limit, up to ``default_max_tokens`` or the ``room`` the prompt leaves
    (at least 1, so that a prompt that fills the context alone is refused for its length)."""
    _refuse_unsupported(body)
    for name in ("n", "best_of"):
        if _get(body, name, int, 1) != 1:
            raise InvalidRequest(f"'{name}' must be 1", name)
    key = max_tokens_key if body.get(max_tokens_key) is not None else "max_tokens"
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


def _streaming(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = _get(body, "stream", bool, False)
    options = _get(body, "stream_options", dict, {})
    return stream, bool(stream and _get(options, "include_usage", bool, False))


def parse_completion(body: dict[str, Any], tokenizer: PreTrainedTokenizerBase, max_request_tokens: int
                     ) -> ParsedRequest:
    """Validate a /v1/completions body; the prompt is a string, or one string or token list in a list.
    ``max_request_tokens`` (prompt + completion) bounds the default completion length."""
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]
    if isinstance(prompt, str):
        prompt_ids = list(tokenizer(prompt)["input_ids"])
    elif isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        if any(not 0 <= t < len(tokenizer) for t in prompt):
            raise InvalidRequest("'prompt' holds a token id outside the vocabulary", "prompt")
        prompt_ids = list(prompt)
    else:
        raise InvalidRequest("'prompt' must be a string or a list of token ids (one prompt per request)", "prompt")
    if not prompt_ids:
        raise InvalidRequest("the prompt is empty", "prompt")
    stream, include_usage = _streaming(body)
    params = _params(body, COMPLETION_DEFAULT_MAX_TOKENS, "max_tokens", max_request_tokens - len(prompt_ids))
    return ParsedRequest(prompt_ids, params, stream, include_usage)


def _message_text(message: Any) -> dict[str, str]:
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise InvalidRequest("each message must be an object with a 'role'", "messages")
    content = message.get("content")
    if isinstance(content, list):
        parts: list[str] = [p["text"] for p in content
                            if isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)]
        if len(parts) != len(content):
            raise InvalidRequest("only text content parts are supported", "messages")
        content = "".join(parts)
    if not isinstance(content, str):
        raise InvalidRequest("each message needs a string 'content'", "messages")
    return {"role": message["role"], "content": content}


def parse_chat(body: dict[str, Any], tokenizer: PreTrainedTokenizerBase, max_request_tokens: int) -> ParsedRequest:
    """Validate a /v1/chat/completions body and apply the tokenizer's chat template. ``max_request_tokens``
    (prompt + completion) bounds the default completion length."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty list", "messages")
    conversation = [_message_text(m) for m in messages]
    try:
        encoded = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True)
    except Exception as exc:  # the template is user-facing Jinja: any failure is the request's fault
        raise InvalidRequest(f"the chat template rejected the messages: {exc}", "messages") from exc
    prompt_ids = list(encoded["input_ids"] if isinstance(encoded, dict) or hasattr(encoded, "keys") else encoded)
    stream, include_usage = _streaming(body)
    params = _params(body, CHAT_DEFAULT_MAX_TOKENS, "max_completion_tokens", max_request_tokens - len(prompt_ids))
    return ParsedRequest(prompt_ids, params, stream, include_usage)


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

    def chunk(self, text: str, finish_reason: str | None, first: bool = False) -> dict[str, Any]:
        """One streamed chunk."""
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant", "content": text} if first else {"content": text}
            if finish_reason and not text:
                delta = {}
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            return self._envelope("chat.completion.chunk", [choice])
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        return self._envelope("text_completion", [choice])

    def usage_chunk(self, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        """The final chunk of a stream that asked for usage."""
        body = self._envelope("chat.completion.chunk" if self.chat else "text_completion", [])
        body["usage"] = usage(prompt_tokens, completion_tokens)
        return body
