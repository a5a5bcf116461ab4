"""The server's application and engine in this process, with the tiny model and transformers' real manager: where
prompts are tokenized, what an early-leaving stream gives back, unexpected errors, and the tokens a stop string
counts. (A late reader and a client gone before the headers are set up here, where no timing can decide them.)"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from transformers.generation.continuous_batching import RequestStatus

from foresail_inference.api import ServerState, build_app
from foresail_inference.detokenizer import Detokenizer
from foresail_inference.engine import Engine, EngineError, Generation, Limits, _safe_end
from foresail_inference.metrics import ServerMetrics
from foresail_inference.models import BUILTIN_TINY, load_model
from foresail_inference.sampling import SamplingParams

pytestmark = pytest.mark.timeout(120)
MODEL = BUILTIN_TINY


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    """The tiny model's engine, its generation thread running; 1,024 tokens per request at most."""
    loaded = load_model(BUILTIN_TINY, device="cpu")
    engine = Engine(loaded, Limits(max_waiting=8, max_tokens_in_flight=1024), ServerMetrics(MODEL),
                    "prefill-step-first")
    engine.start()
    yield engine
    engine.stop()


class Tokenizer:
    """The engine's real tokenizer, recording the thread of each call and failing on the prompt ``fail_on``."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.threads: list[int] = []
        self.fail_on: str | None = None

    def __call__(self, text: str, **kwargs: Any) -> Any:
        self.threads.append(threading.get_ident())
        if text == self.fail_on:
            raise RuntimeError("a bug in the tokenizer")
        return self.tokenizer(text, **kwargs)

    def __len__(self) -> int:
        return len(self.tokenizer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tokenizer, name)


@pytest.fixture()
def tokenizer(engine: Engine) -> Iterator[Tokenizer]:
    spy = Tokenizer(engine.tokenizer)
    engine.tokenizer = spy  # type: ignore[assignment]
    yield spy
    engine.tokenizer = spy.tokenizer


@asynccontextmanager
async def serving(engine: Engine, on_prepare: Callable[..., Any] | None = None) -> AsyncIterator[tuple[str, int]]:
    """The application on 127.0.0.1, set up as `foresail serve` sets it up, serving ``engine``."""
    state = ServerState(MODEL, engine.metrics, None, 1 << 20)
    state.engine, state.ready = engine, True
    app = build_app(state)
    if on_prepare is not None:
        app.on_response_prepare.append(on_prepare)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None, shutdown_timeout=5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][:2]
    finally:
        await runner.cleanup()


def sample(engine: Engine, name: str, **labels: str) -> float:
    value = engine.metrics.registry.get_sample_value(name, {"model_name": MODEL, **labels})
    assert value is not None, name
    return value


async def post(host: str, port: int, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"http://{host}:{port}/v1/{path}", json=body) as rsp:
            return rsp.status, await rsp.json()


async def until(condition: Callable[[], bool], timeout: float = 30) -> None:
    for _ in range(int(timeout / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)


async def test_a_stream_whose_client_left_before_its_headers_gives_its_slot_back(engine: Engine) -> None:
    # Admitted, then gone before the headers were written: prepare() raised (closing transport, or the handler's
    # cancellation) before the generation's steps began, so nothing released it: its tokens stayed in flight, the
    # waiting gauge up, and SIGTERM waited out the whole drain timeout. Here prepare() waits until the client leaves.
    held = asyncio.Event()

    async def hold_the_headers(request: web.Request, response: web.StreamResponse) -> None:
        held.set()
        await asyncio.Event().wait()  # until the handler is cancelled

    aborted = sample(engine, "vllm:request_success_total", finished_reason="abort")
    async with serving(engine, on_prepare=hold_the_headers) as (host, port):
        _, writer = await asyncio.open_connection(host, port)
        body = json.dumps({"prompt": "a long story", "max_tokens": 500, "stream": True}).encode()
        writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        await asyncio.wait_for(held.wait(), 30)
        assert len(engine.in_flight) == 1 and engine.tokens_in_flight > 0  # admitted
        writer.close()
        await until(lambda: not engine.in_flight)
    assert not engine.in_flight, "the generation was never released: a drain would wait for it"
    assert engine.tokens_in_flight == 0
    assert sample(engine, "vllm:num_requests_waiting") == 0
    assert sample(engine, "vllm:request_success_total", finished_reason="abort") == aborted + 1


async def test_prompts_are_tokenized_off_the_event_loop_and_an_oversized_one_not_at_all(
        engine: Engine, tokenizer: Tokenizer) -> None:
    loop_thread = threading.get_ident()
    async with serving(engine) as (host, port):
        status, body = await post(host, port, "completions", {"prompt": "Hello there", "max_tokens": 2})
        assert status == 200, body
        assert tokenizer.threads and loop_thread not in tokenizer.threads
        tokenizer.threads.clear()
        # 53,248 characters: 1,024 tokens of at most 13 characters (the longest in the tiny vocabulary), times 4
        oversized = "x" * (engine.max_prompt_chars + 1)
        refusals = [(await post(host, port, "completions", {"prompt": oversized, "max_tokens": 1}), "prompt")]
        assert tokenizer.threads == []  # refused before tokenizing
        refusals.append((await post(host, port, "chat/completions",
                                    {"messages": [{"role": "user", "content": oversized}]}), "messages"))
    for (status, body), param in refusals:
        error = body["error"]
        assert status == 400
        assert error["code"] == "context_length_exceeded"
        assert error["param"] == param
        assert f"prompt's {len(oversized)} characters cannot fit" in error["message"]


async def test_an_unexpected_error_is_a_500_in_openai_shape_counted_and_logged_once(
        engine: Engine, tokenizer: Tokenizer, caplog: pytest.LogCaptureFixture) -> None:
    tokenizer.fail_on = "a prompt the tokenizer fails on"
    errors = sample(engine, "foresail:requests_rejected_total", reason="error")
    with caplog.at_level(logging.ERROR):
        async with serving(engine) as (host, port):
            status, body = await post(host, port, "completions", {"prompt": tokenizer.fail_on, "max_tokens": 2})
            assert (await post(host, port, "completions", {"prompt": "Hello", "max_tokens": 2}))[0] == 200
    assert status == 500
    assert body["error"]["type"] == "server_error" and body["error"]["message"]
    assert "a bug in the tokenizer" not in body["error"]["message"]
    assert sample(engine, "foresail:requests_rejected_total", reason="error") == errors + 1
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "POST /v1/completions failed" in tracebacks[0].getMessage()
    assert "a bug in the tokenizer" in caplog.text
    assert not engine.in_flight


async def generated_before_reading(engine: Engine, prompt_ids: list[int], params: SamplingParams
                                   ) -> tuple[Generation, list[int]]:
    """Admit a request and let the manager finish it before reading it, as a reader late by the whole generation
    would: its steps then get all its tokens in one output."""
    generation = engine.submit(prompt_ids, params)
    output = await asyncio.wait_for(generation.queue.get(), 60)
    while output.status != RequestStatus.FINISHED:
        output = await asyncio.wait_for(generation.queue.get(), 60)
    generation.queue.put_nowait(output)
    return generation, list(output.generated_tokens)


async def test_a_stop_string_counts_only_the_tokens_up_to_the_one_that_completed_it(engine: Engine) -> None:
    # The tokens that came after the stop string in the same output were counted (usage and
    # vllm:generation_tokens_total): the same seeded request reported 8 tokens on an idle server, 21 to 52 on a busy one
    prompt_ids = engine.tokenizer("Sphinx of black quartz")["input_ids"]
    params = SamplingParams(max_tokens=40, temperature=1.0, seed=3)
    generation, tokens = await generated_before_reading(engine, prompt_ids, params)
    text = "".join([step.text async for step in generation.steps(incremental=False)])
    detokenizer = Detokenizer(engine.tokenizer, prompt_ids)
    texts = [detokenizer.update(tokens[:n]) for n in range(1, len(tokens) + 1)]
    # two characters first seen near the middle of the text, where their token is followed by others
    firsts = [i for i in range(len(text) - 1) if text.find(text[i:i + 2]) == i and "\ufffd" not in text[i:i + 2]
              and next(n for n, t in enumerate(texts, 1) if text[i:i + 2] in t) < len(tokens) - 2]
    assert firsts, text
    at = firsts[len(firsts) // 2]
    stop = text[at:at + 2]
    completed_by = next(n for n, t in enumerate(texts, 1) if stop in t)
    generated = sample(engine, "vllm:generation_tokens_total")
    generation, _ = await generated_before_reading(engine, prompt_ids, replace(params, stop=(stop,)))
    steps = [step async for step in generation.steps(incremental=False)]
    assert "".join(step.text for step in steps) == text[:at]
    assert steps[-1].finish_reason == "stop"
    assert steps[-1].completion_tokens == completed_by
    assert sample(engine, "vllm:generation_tokens_total") - generated == completed_by


async def test_a_reader_that_stops_reading_holds_only_the_latest_output(engine: Engine) -> None:
    # Each output of the manager carries a copy of all the tokens so far, and all of them were queued for a handler
    # stalled on a client that stopped reading: O(n^2) memory. One chat stream whose client read nothing (its
    # socket buffers shrunk to 4 KiB) held 557 outputs of 493,502 tokens in all, 4.7 MB, where the latest is enough.
    prompt_ids = engine.tokenizer("Tell me a story")["input_ids"]
    generation = engine.submit(prompt_ids, SamplingParams(max_tokens=200, temperature=0))
    assert engine.manager is not None
    router = engine.manager.output_router
    await until(lambda: generation.request_id not in router.result_handlers)  # the manager finished it, unread
    held = [generation.queue.get_nowait() for _ in range(generation.queue.qsize())]
    assert [output.status for output in held] == [RequestStatus.FINISHED]
    tokens = held[0].generated_tokens
    assert tokens
    generation.queue.put_nowait(held[0])
    steps = [step async for step in generation.steps()]
    assert "".join(step.text for step in steps) == Detokenizer(engine.tokenizer, prompt_ids).update(tokens)
    assert steps[-1].completion_tokens == len(tokens) and steps[-1].finish_reason in ("stop", "length")
    assert not engine.in_flight


async def test_a_request_released_while_a_step_runs_leaves_no_output_behind(engine: Engine) -> None:
    # Its handler went at once, the cancellation applies at the next step, and the output of the step under way went
    # to the manager's shared queue, which nothing reads: one output (all the tokens so far, and the prompt) kept for
    # every client that left while a step ran, for the life of the process. Here the client leaves while the loop is
    # paused after reading its queues, so the step that follows still runs the request.
    assert engine.manager is not None
    router = engine.manager.output_router
    prompt_ids = engine.tokenizer("Tell me a story")["input_ids"]
    generation = engine.submit(prompt_ids, SamplingParams(max_tokens=500, temperature=0))
    await asyncio.wait_for(generation.queue.get(), 30)  # decoding
    paused = engine.manager.pause()
    await asyncio.to_thread(paused.__enter__)
    try:
        generation.release()
    finally:
        paused.__exit__(None, None, None)
    later = engine.submit(prompt_ids, SamplingParams(max_tokens=2, temperature=0))
    steps = [step async for step in later.steps()]  # generated in the steps after that one
    assert steps[-1].finish_reason in ("stop", "length")
    assert router.output_queue.qsize() == 0
    assert not engine.in_flight and generation.request_id not in router.result_handlers


async def test_a_request_still_queued_for_the_generation_loop_when_it_stops_fails_at_once() -> None:
    # After SIGTERM (at once with --drain-timeout 0) the loop is hard-stopped: it fails the requests it runs or has
    # scheduled, but one still in its input queue was dropped without an output: its reader waited for ever (in the
    # server, until the runner's 5-s shutdown timeout cut the client off, with no error). Here a step is held while
    # that request is admitted and the stop asked for.
    loaded = load_model(BUILTIN_TINY, device="cpu")
    engine = Engine(loaded, Limits(), ServerMetrics(MODEL), "prefill-step-first")
    engine.start()
    assert engine.manager is not None
    status = engine.manager.background_thread_status
    in_step, go_on = threading.Event(), threading.Event()
    forward = loaded.model.forward

    def held_forward(*args: Any, **kwargs: Any) -> Any:
        in_step.set()
        go_on.wait(30)
        return forward(*args, **kwargs)

    prompt_ids = engine.tokenizer("Tell me a story")["input_ids"]
    running = engine.submit(prompt_ids, SamplingParams(max_tokens=100, temperature=0))
    loaded.model.forward = held_forward
    assert await asyncio.to_thread(in_step.wait, 30)
    queued = engine.submit(prompt_ids, SamplingParams(max_tokens=100, temperature=0))
    stopping = asyncio.create_task(engine.shutdown())
    await until(lambda: status.can_accept_new_requests() is not None)  # the stop is asked for
    go_on.set()
    await asyncio.wait_for(stopping, 30)
    for generation in (running, queued):
        with pytest.raises(EngineError):
            await asyncio.wait_for(generation.steps().__anext__(), 10)
    assert not engine.in_flight and engine.tokens_in_flight == 0


def _held_back_one_prefix_at_a_time(text: str, stops: tuple[str, ...]) -> int:
    """``_safe_end`` as it was: each prefix of each stop string compared in turn (quadratic in their length)."""
    end = len(text.rstrip("\ufffd"))
    for stop in stops:
        for k in range(min(len(stop) - 1, end), 0, -1):
            if text.endswith(stop[:k], 0, end):
                end -= k
                break
    return end


def test_the_text_held_back_for_stop_strings_is_the_same_when_only_their_first_characters_are_searched() -> None:
    rng = random.Random(0)
    for _ in range(5000):
        text = "".join(rng.choice("ab\ufffd") for _ in range(rng.randint(0, 12)))
        stops = tuple("".join(rng.choice("ab") for _ in range(rng.randint(1, 6))) for _ in range(rng.randint(1, 4)))
        assert _safe_end(text, stops) == _held_back_one_prefix_at_a_time(text, stops), (text, stops)


async def test_a_request_for_a_generation_loop_that_has_stopped_fails_at_once() -> None:
    # the manager's thread dies when it cannot allocate its KV cache (here 4 TB); a request it is handed after that
    # is dropped with a warning: the warm-up waited for it forever, and the process never started nor exited
    loaded = load_model(BUILTIN_TINY, device="cpu")
    engine = Engine(loaded, Limits(max_tokens_in_flight=10**9), ServerMetrics(MODEL), "prefill-step-first")
    engine.start()
    assert engine.manager is not None
    for _ in range(300):
        if not engine.manager.is_running():
            break
        await asyncio.sleep(0.1)
    with pytest.raises(EngineError, match="the generation loop has stopped: Memory footprint"):
        await asyncio.wait_for(engine.warm_up(), 30)
    engine.stop()
