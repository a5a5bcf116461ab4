"""The OpenAI API of the real server, through the `openai` client and raw HTTP."""

from __future__ import annotations

import json
from typing import Any, Iterator, cast

import openai
import pytest
import requests

from .conftest import API_KEY, MODEL, Server


def test_models_lists_the_served_model(client) -> None:
    assert [m.id for m in client.models.list().data] == [MODEL]


def test_completion_respects_max_tokens_and_reports_usage(client) -> None:
    rsp = client.completions.create(model=MODEL, prompt="The quick brown fox", max_tokens=12, temperature=0)
    choice = rsp.choices[0]
    assert rsp.object == "text_completion"
    assert choice.text
    assert rsp.usage.completion_tokens <= 12
    assert (choice.finish_reason == "length") == (rsp.usage.completion_tokens == 12)
    assert rsp.usage.prompt_tokens > 0
    assert rsp.usage.total_tokens == rsp.usage.prompt_tokens + rsp.usage.completion_tokens


def test_greedy_is_deterministic_and_streaming_gives_the_same_text(client) -> None:
    args = dict(model=MODEL, prompt="Hello there", max_tokens=20, temperature=0)
    first = client.completions.create(**args).choices[0].text
    assert client.completions.create(**args).choices[0].text == first
    chunks = list(client.completions.create(**args, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == first
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])


def test_seed_makes_sampling_reproducible(client) -> None:
    args = dict(model=MODEL, prompt="Tell me a story", max_tokens=24, temperature=1.0)
    a = client.completions.create(**args, seed=7).choices[0].text
    b = client.completions.create(**args, seed=7).choices[0].text
    others = {client.completions.create(**args, seed=s).choices[0].text for s in (8, 9, 10)}
    assert a == b
    assert others - {a}, "different seeds should give some different text"


def test_stop_string_truncates_the_text(client) -> None:
    args = dict(model=MODEL, prompt="Sphinx of black quartz", max_tokens=30, temperature=0)
    full = client.completions.create(**args).choices[0].text
    stop = full[len(full) // 2: len(full) // 2 + 2]
    cut = full.index(stop)
    rsp = client.completions.create(**args, stop=[stop])
    assert rsp.choices[0].text == full[:cut]
    assert rsp.choices[0].finish_reason == "stop"
    streamed = "".join(c.choices[0].text for c in client.completions.create(**args, stop=stop, stream=True))
    assert streamed == full[:cut]


def test_chat_completion_uses_the_chat_template(client) -> None:
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi!"}]
    rsp = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=10, temperature=0)
    assert rsp.object == "chat.completion"
    assert rsp.choices[0].message.role == "assistant"
    assert isinstance(rsp.choices[0].message.content, str)
    # the template wraps each message in <|im_start|>role ... <|im_end|>: more tokens than the text alone
    assert rsp.usage.prompt_tokens > 10


def test_text_content_parts_are_one_text_and_other_parts_are_refused(server: Server) -> None:
    url = f"{server.url}/v1/chat/completions"

    def ask(content: str | list[dict[str, Any]]) -> requests.Response:
        return requests.post(url, headers=server.headers, timeout=30, json={
            "messages": [{"role": "user", "content": content}], "max_tokens": 8, "temperature": 0})

    # vLLM joins a message's text parts with "\n" (vllm/entrypoints/chat_utils.py, _parse_chat_message_content_parts:
    # text_prompt = "\n".join(texts)), and so does the server, so that the same request makes the same prompt
    plain = ask("Hello\nthere")
    parts = ask([{"type": "text", "text": "Hello"}, {"type": "text", "text": "there"}])
    assert plain.status_code == parts.status_code == 200
    assert parts.json()["usage"]["prompt_tokens"] == plain.json()["usage"]["prompt_tokens"]
    assert parts.json()["choices"][0]["message"] == plain.json()["choices"][0]["message"]
    for content in ([{"type": "image_url", "image_url": {"url": "http://x/y.png"}}], [{"type": "text", "text": 5}]):
        rsp = ask(content)
        assert rsp.status_code == 400, content
        assert rsp.json()["error"]["param"] == "messages"
        assert rsp.json()["error"]["message"] == "only text content parts are supported"


def test_a_message_without_text_is_empty_text(server: Server) -> None:
    # an assistant turn of tool calls has "content": null (and may leave it out): vLLM reads no text, this server
    # answered 400
    def ask(assistant: dict[str, Any]) -> requests.Response:
        messages = [{"role": "user", "content": "Hi"}, {"role": "assistant", **assistant},
                    {"role": "user", "content": "Hello"}]
        return requests.post(f"{server.url}/v1/chat/completions", headers=server.headers, timeout=30,
                             json={"messages": messages, "max_tokens": 4, "temperature": 0})

    empty = ask({"content": ""})
    assert empty.status_code == 200, empty.text
    for assistant in ({"content": None}, {}):
        rsp = ask(assistant)
        assert rsp.status_code == 200, rsp.text
        assert rsp.json()["usage"] == empty.json()["usage"]
        assert rsp.json()["choices"] == empty.json()["choices"]
    assert ask({"content": 5}).status_code == 400


def test_boolean_fields_are_read_as_vllm_reads_them(server: Server) -> None:
    # vLLM's pydantic models read "true", "off", 1 or 0 as booleans: {"include_usage": "true"} was a 400 here, and a
    # no-op "echo": "false" was refused as an echo
    def post(path: str, **body: Any) -> requests.Response:
        base: dict[str, Any] = {"model": MODEL, "max_tokens": 4, "temperature": 0, "prompt": "Hello there",
                                "messages": [{"role": "user", "content": "Hello there"}]}
        return requests.post(f"{server.url}/v1/{path}", headers=server.headers, json={**base, **body}, timeout=30)

    def usages(rsp: requests.Response) -> list[dict[str, int] | None]:
        assert rsp.status_code == 200, rsp.text
        return [json.loads(line[6:]).get("usage") for line in rsp.text.splitlines() if line.startswith("data: {")]

    for path in ("completions", "chat/completions"):
        plain = post(path)
        assert plain.status_code == 200, plain.text
        with_usage = usages(post(path, stream="true", stream_options={"include_usage": "true"}))
        assert not any(with_usage[:-1]) and with_usage[-1] == plain.json()["usage"]
        assert not any(usages(post(path, stream=1, stream_options={"include_usage": "False"})))
        assert all(usages(post(path, stream="on", stream_options={"continuous_usage_stats": 1})))
        no_ops = {"stream": "false", "echo": "0", "ignore_eos": "off", "skip_special_tokens": "yes",
                  "include_stop_str_in_output": 0.0, "use_beam_search": "f"}
        if path == "chat/completions":
            no_ops.update(logprobs="false", add_generation_prompt="true", continue_final_message="n")
        same = post(path, **no_ops)
        assert same.status_code == 200, same.text
        assert same.json()["choices"] == plain.json()["choices"]
        for param, value in (("echo", "true"), ("ignore_eos", 1), ("skip_special_tokens", "no")):
            rsp = post(path, **{param: value})
            assert rsp.status_code == 400 and rsp.json()["error"]["param"] == param, rsp.text
            assert "not supported" in rsp.json()["error"]["message"]
        # what vLLM refuses too: any other value
        for param, body in (("stream", {"stream": "maybe"}), ("stream", {"stream": 2}), ("echo", {"echo": []}),
                            ("stream_options", {"stream": True, "stream_options": {"include_usage": "sure"}})):
            rsp = post(path, **body)
            assert rsp.status_code == 400, body
            assert rsp.json()["error"]["param"] == param
            assert "must be a boolean" in rsp.json()["error"]["message"]


def test_chat_streaming_with_usage(client) -> None:
    stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hello"}],
                                            max_tokens=15, temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage.completion_tokens == 15 or chunks[-2].choices[0].finish_reason == "stop"
    plain = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hello"}],
                                           max_tokens=15, temperature=0)
    assert text == plain.choices[0].message.content
    assert chunks[-1].usage.total_tokens == plain.usage.total_tokens


def test_continuous_usage_stats_puts_the_usage_in_every_chunk(server: Server) -> None:
    # vLLM's stream_options.continuous_usage_stats (include_usage defaults to true there) was ignored: a client
    # that reads the usage from each chunk got none at all
    def usages(path: str, options: dict[str, bool]) -> list[dict[str, int] | None]:
        body: dict[str, Any] = {"model": MODEL, "max_tokens": 6, "temperature": 0, "stream": True,
                                "stream_options": options, "messages": [{"role": "user", "content": "Hello"}],
                                "prompt": "Hello"}
        rsp = requests.post(f"{server.url}{path}", headers=server.headers, json=body, timeout=30)
        assert rsp.status_code == 200, rsp.text
        return [json.loads(line[6:]).get("usage") for line in rsp.text.splitlines() if line.startswith("data: {")]

    for path in ("/v1/chat/completions", "/v1/completions"):
        chunks = usages(path, {"continuous_usage_stats": True})
        every = [u for u in chunks if u]
        assert len(every) == len(chunks) >= 2, chunks
        completion = [u["completion_tokens"] for u in every]
        assert completion == sorted(completion) and completion[-1] == completion[-2]  # the last: the final usage
        assert {u["total_tokens"] - u["completion_tokens"] for u in every} == {every[-1]["prompt_tokens"]}
        assert not any(usages(path, {"include_usage": False, "continuous_usage_stats": True}))
    assert not any(usages("/v1/completions", {"include_usage": True})[:-1])
    # an empty stream_options without a stream is no stream option (vLLM accepts it)
    rsp = requests.post(f"{server.url}/v1/completions", headers=server.headers, timeout=30,
                        json={"model": MODEL, "prompt": "Hi", "max_tokens": 2, "stream_options": {}})
    assert rsp.status_code == 200, rsp.text


def test_a_chat_stream_whose_first_step_is_its_last_names_the_role(client) -> None:
    # A stop string at the very start made the first chunk the last, an empty delta without the role
    args: dict[str, Any] = dict(model=MODEL, messages=[{"role": "user", "content": "Hello"}], max_tokens=8,
                                temperature=0)
    text = client.chat.completions.create(**args).choices[0].message.content
    assert text
    chunks = list(client.chat.completions.create(**args, stop=[text[0]], stream=True))
    assert [c.choices[0].finish_reason for c in chunks] == ["stop"]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""


def test_sse_ends_with_done(server: Server) -> None:
    rsp = requests.post(f"{server.url}/v1/completions", headers=server.headers, stream=True, timeout=30,
                        json={"model": MODEL, "prompt": "Hi", "max_tokens": 3, "stream": True})
    assert rsp.headers["Content-Type"].startswith("text/event-stream")
    # str, not bytes: requests decodes a text/* body without a charset as ISO-8859-1
    events = [line for line in cast(Iterator[str], rsp.iter_lines(decode_unicode=True)) if line]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events)


@pytest.mark.parametrize("body, param", [
    ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
    ({"prompt": "x", "temperature": 5}, "temperature"),
    ({"prompt": "x", "max_tokens": "ten"}, "max_tokens"),
    ({"prompt": "x", "n": 3}, "n"),
    ({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"prompt": 42}, "prompt"),
    ({"prompt": [99999999]}, "prompt"),
    ({"prompt": "x", "model": ["builtin:tiny"]}, "model"),  # not a model that does not exist (404)
    ({"prompt": "x", "temperature": 10**400}, "temperature"),  # an int too large for a float
    ({"prompt": "x", "top_p": 10**400}, "top_p"),
    ({"prompt": ""}, "prompt"),  # not a context length exceeded on max_tokens
    ({"prompt": "x", "logprobs": 0}, "logprobs"),  # 0 asks for the sampled tokens' logprobs, which are not served
    ({"prompt": "x", "stream_options": {"include_usage": True}}, "stream_options"),  # without "stream": true
    ({"prompt": "x", "stop": "#" * 257}, "stop"),  # each stop string: 256 characters at most
])
def test_bad_parameters_are_400_in_openai_shape(server: Server, body: dict, param: str) -> None:
    rsp = requests.post(f"{server.url}/v1/completions", headers=server.headers, json=body, timeout=10)
    assert rsp.status_code == 400
    error = rsp.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]


def test_text_that_is_not_unicode_is_a_400_in_openai_shape(server: Server) -> None:
    # JSON can escape a lone surrogate, which no tokenizer encodes: the completion prompt was a plain-text 500
    invalid = server.metric("foresail:requests_rejected_total", reason="invalid")
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("completions", {"prompt": "caf\udce9", "max_tokens": 2}, "prompt"),
        ("completions", {"prompt": ["\ud83d"], "max_tokens": 2}, "prompt"),
        ("chat/completions", {"messages": [{"role": "user", "content": "caf\udce9"}], "max_tokens": 2}, "messages"),
    ]
    for path, body, param in cases:
        rsp = requests.post(f"{server.url}/v1/{path}", headers=server.headers, json=body, timeout=30)
        assert rsp.status_code == 400, rsp.text
        assert rsp.json()["error"]["param"] == param
        assert "not valid Unicode: a lone surrogate" in rsp.json()["error"]["message"]
    assert server.metric("foresail:requests_rejected_total", reason="invalid") == invalid + 3


def test_a_request_that_cannot_fit_names_what_is_too_long(server: Server) -> None:
    # every such refusal named max_tokens, even when the chat request gave max_completion_tokens or none
    hello = [{"role": "user", "content": "Hello"}]
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("chat/completions", {"messages": hello, "max_completion_tokens": 4000}, "max_completion_tokens"),
        ("chat/completions", {"messages": hello, "max_tokens": 4000}, "max_tokens"),
        ("chat/completions", {"messages": [{"role": "user", "content": "hi " * 3000}]}, "messages"),
        ("completions", {"prompt": [1] * 2048, "max_tokens": 1}, "prompt"),  # the prompt alone fills the context
        ("completions", {"prompt": [1] * 2000, "max_tokens": 100}, "max_tokens"),
    ]
    for path, body, param in cases:
        rsp = requests.post(f"{server.url}/v1/{path}", headers=server.headers, json=body, timeout=30)
        assert rsp.status_code == 400, rsp.text
        error = rsp.json()["error"]
        assert (error["code"], error["param"]) == ("context_length_exceeded", param), error
        assert "2048 tokens per request" in error["message"]


def test_parameters_that_would_change_the_output_are_refused_unless_they_are_no_ops(server: Server) -> None:
    bodies: dict[str, dict[str, Any]] = {
        "completions": {"model": MODEL, "prompt": "Hello there", "max_tokens": 8, "temperature": 0},
        "chat/completions": {"model": MODEL, "messages": [{"role": "user", "content": "Hello there"}],
                             "max_tokens": 8, "temperature": 0},
    }

    def post(path: str, **extra: Any) -> requests.Response:
        return requests.post(f"{server.url}/v1/{path}", headers=server.headers, json={**bodies[path], **extra},
                             timeout=30)

    refused: list[tuple[str, str, Any]] = [
        ("completions", "logit_bias", {"5": -100}), ("completions", "suffix", "!"),
        ("completions", "frequency_penalty", 1.5), ("chat/completions", "presence_penalty", -0.5),
        ("chat/completions", "response_format", {"type": "json_object"}),
        ("chat/completions", "tools", [{"type": "function", "function": {"name": "f"}}]),
        ("chat/completions", "tool_choice", "required"),
        ("chat/completions", "functions", [{"name": "f", "parameters": {}}]),  # OpenAI's deprecated names
        ("chat/completions", "function_call", {"name": "f"}),
    ]
    for path, param, value in refused:
        rsp = post(path, **{param: value})
        assert rsp.status_code == 400, param
        assert rsp.json()["error"]["param"] == param
    no_ops = {"logit_bias": {}, "suffix": "", "frequency_penalty": 0, "presence_penalty": 0.0,
              "response_format": {"type": "text"}, "tools": [], "tool_choice": "none", "functions": [],
              "function_call": "none"}
    for path in bodies:
        plain, same = post(path), post(path, **no_ops)
        assert plain.status_code == same.status_code == 200, same.text
        assert same.json()["choices"] == plain.json()["choices"]


def test_vllms_own_parameters_are_refused_unless_they_are_no_ops(server: Server) -> None:
    # a client written for vLLM got an output that silently ignored its top_k, ignore_eos or guided_choice
    url = f"{server.url}/v1/completions"
    body: dict[str, Any] = {"model": MODEL, "prompt": "Hello there", "max_tokens": 8, "temperature": 0}
    refused: list[tuple[str, Any]] = [("top_k", 1), ("repetition_penalty", 1.3), ("ignore_eos", True),
                                      ("min_tokens", 4), ("guided_choice", ["yes", "no"]),
                                      ("skip_special_tokens", False)]
    for param, value in refused:
        rsp = requests.post(url, headers=server.headers, json={**body, param: value}, timeout=30)
        assert rsp.status_code == 400, param
        assert rsp.json()["error"]["param"] == param
    chat: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4,
                            "continue_final_message": True}
    rsp = requests.post(f"{server.url}/v1/chat/completions", headers=server.headers, json=chat, timeout=30)
    assert rsp.status_code == 400 and rsp.json()["error"]["param"] == "continue_final_message"
    no_ops: dict[str, Any] = {"top_k": -1, "min_p": 0.0, "repetition_penalty": 1.0, "ignore_eos": False,
                              "min_tokens": 0, "stop_token_ids": [], "skip_special_tokens": True, "guided_json": None}
    plain = requests.post(url, headers=server.headers, json=body, timeout=30)
    same = requests.post(url, headers=server.headers, json={**body, **no_ops}, timeout=30)
    assert plain.status_code == same.status_code == 200, same.text
    assert same.json()["choices"] == plain.json()["choices"]


def test_a_temperature_too_small_to_divide_by_is_greedy(server: Server) -> None:
    url = f"{server.url}/v1/completions"
    body: dict[str, Any] = {"model": MODEL, "prompt": "The sea", "max_tokens": 12}
    greedy = requests.post(url, headers=server.headers, json={**body, "temperature": 0}, timeout=30)
    tiny = requests.post(url, headers=server.headers, json={**body, "temperature": 1e-300}, timeout=30)
    assert tiny.status_code == 200, tiny.text
    assert tiny.json()["choices"] == greedy.json()["choices"]
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 200  # the generation loop lives


def test_chat_without_a_limit_generates_up_to_what_the_context_leaves(server: Server) -> None:
    url = f"{server.url}/v1/chat/completions"
    # ~1,800 prompt tokens: the 256-token default would pass the tiny model's 2,048-token context
    long: dict[str, Any] = {"model": MODEL, "temperature": 0,
                            "messages": [{"role": "user", "content": "Hello! How can I help you today? " * 95}]}
    rsp = requests.post(url, headers=server.headers, json=long, timeout=60)
    assert rsp.status_code == 200, rsp.text
    usage = rsp.json()["usage"]
    assert 2048 - 256 < usage["prompt_tokens"] < 2048
    assert usage["total_tokens"] <= 2048
    assert (rsp.json()["choices"][0]["finish_reason"] == "length") == (usage["total_tokens"] == 2048)
    too_long = {**long, "messages": [{"role": "user", "content": "Hello! How can I help you today? " * 120}]}
    rsp = requests.post(url, headers=server.headers, json=too_long, timeout=60)
    assert rsp.status_code == 400
    assert rsp.json()["error"]["code"] == "context_length_exceeded"
    rsp = requests.post(url, headers=server.headers, json={**long, "max_completion_tokens": 0}, timeout=60)
    assert rsp.status_code == 400
    assert rsp.json()["error"]["param"] == "max_completion_tokens"


def test_bad_bodies_are_refused_at_once(server: Server) -> None:
    url = f"{server.url}/v1/chat/completions"
    nested = b'{"prompt": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"  # past json's recursion limit
    for data in (b"{not json", b"[1, 2]", b"\xff\xfe", nested):
        rsp = requests.post(url, headers=server.headers, data=data, timeout=10)
        assert rsp.status_code == 400, data
        assert rsp.json()["error"]["type"] == "invalid_request_error"
    huge = json.dumps({"messages": [{"role": "user", "content": "x" * 100_000}]})
    rsp = requests.post(url, headers=server.headers, data=huge, timeout=10)
    assert rsp.status_code == 413
    assert rsp.json()["error"]["code"] == "request_too_large"
    rsp = requests.post(url, headers=server.headers, timeout=10,
                        json={"messages": [{"role": "user", "content": "x"}], "max_tokens": 100_000})
    assert rsp.status_code == 400
    assert rsp.json()["error"]["code"] == "context_length_exceeded"
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 200


def test_openai_client_sees_typed_errors(client) -> None:
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-model", prompt="x", max_tokens=2)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[], max_tokens=2)


def test_api_key_is_required_but_not_on_health_and_metrics(server: Server) -> None:
    url = f"{server.url}/v1/models"
    assert requests.get(url, timeout=5).status_code == 401
    wrong = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5)
    assert wrong.status_code == 401
    assert wrong.json()["error"]["type"] == "authentication_error"
    unauthorized = server.metric("foresail:requests_rejected_total", reason="unauthorized")
    not_utf8 = requests.get(url, headers={"Authorization": "Bearer caf\xe9"}, timeout=5)  # sent as Latin-1
    assert not_utf8.status_code == 401
    assert not_utf8.json()["error"]["type"] == "authentication_error"
    assert server.metric("foresail:requests_rejected_total", reason="unauthorized") == unauthorized + 1
    assert requests.get(url, headers=server.headers, timeout=5).status_code == 200
    for path in ("/health", "/ready", "/metrics"):
        assert requests.get(f"{server.url}{path}", timeout=5).status_code == 200, path
    assert API_KEY not in server.log()


def test_unknown_route_is_404_in_openai_shape(server: Server) -> None:
    rsp = requests.get(f"{server.url}/v1/nothing", headers=server.headers, timeout=5)
    assert rsp.status_code == 404
    assert "error" in rsp.json()
