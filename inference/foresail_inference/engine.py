"""The batching engine: transformers' ContinuousBatchingManager plus admission control.

The paged KV cache, the join-and-leave-at-every-step batching and the scheduler's machinery are
transformers' own (``ContinuousBatchingManager``), with one scheduling rule of ours (``scheduling.py``: a
waiting request's prefill runs in a step of its own). This module adds what a server needs around it: a
bounded waiting queue and a cap on tokens in flight (the cache is sized to that cap, so an admitted request
always fits and memory stays flat), stop strings, cancellation, draining and the metrics.

With ``prefix_cache`` the manager keeps the full pages of finished requests (transformers' block sharing)
and a new prompt that starts with the same tokens reads them instead of computing them again; they are
evicted when live requests need the room, so admission is unchanged and they do not count as in use.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import queue
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from transformers import ContinuousBatchingConfig, GenerationConfig
from transformers.generation.continuous_batching import ContinuousBatchingManager, RequestStatus
from transformers.generation.continuous_batching.requests import GenerationOutput

from .detokenizer import Detokenizer
from .metrics import ServerMetrics
from .models import LoadedModel
from .protocol import max_chars_per_token
from .sampling import SamplingParams, build_processors
from .scheduling import SCHEDULERS

PAGE_SIZE = 16  # tokens per KV-cache page; admission rounds each request up to whole pages
# Tokens per forward pass (transformers' chunked prefill budget). Kept small for time to first token: with
# SDPA on CPU the manager packs every request of a step into one attention masked block-diagonally, so a
# step costs the square of its tokens (1024 prompt tokens: ~100 ms on one core, 45% of it attention, vs
# ~13 ms for 272). Requests arrive over HTTP a few at a time; one that lands while a large prefill runs
# waits for all of it. 256 keeps each step short and the total prefill work low, and still leaves room
# for 256 decoding requests per step. Measured over HTTP, 32 concurrent 34-token prompts, one torch thread,
# servers side by side on a shared machine, best of 6: median TTFT 68 ms at 256 vs 121 at 1024 (one run),
# 73 ms at 256 vs 86 at 128 and 89 at 512 (another), same throughput.
MAX_BATCH_TOKENS = 256


@dataclass(frozen=True)
class Limits:
    """Admission limits: past either, a request is refused with 429."""

    max_waiting: int = 256
    max_tokens_in_flight: int = 8192


class Overloaded(Exception):
    """The waiting queue or the token budget is full: retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Draining(Exception):
    """The server is shutting down and takes no new requests."""


class EngineError(RuntimeError):
    """Generation failed inside the manager."""


@dataclass(frozen=True)
class Step:
    """One update of a generation: the new text, the tokens generated so far, and why it ended."""

    text: str
    completion_tokens: int
    finish_reason: str | None = None


class Generation:
    """One admitted request; iterate ``steps()`` (inside ``contextlib.aclosing``) to read it."""

    def __init__(self, engine: Engine, request_id: str, prompt_ids: list[int], params: SamplingParams,
                 budget: int) -> None:
        self.engine, self.request_id, self.prompt_ids, self.params = engine, request_id, prompt_ids, params
        self.budget = budget
        self.detokenizer = Detokenizer(engine.tokenizer, prompt_ids)
        self.arrival = time.perf_counter()
        self.queue: asyncio.Queue[GenerationOutput] = asyncio.Queue(maxsize=1)  # the latest output (``deliver``)
        self.first_token_at: float | None = None
        self.last_token_at = self.arrival
        self.tokens_seen = 0
        self.finished_in_manager = False
        self.finish_reason: str | None = None

    @property
    def prompt_tokens(self) -> int:
        """Number of tokens in the prompt."""
        return len(self.prompt_ids)

    async def steps(self, incremental: bool = True) -> AsyncGenerator[Step, None]:
        """Yield the text as it is generated (only at the end unless ``incremental`` or stop strings apply);
        cancel the request if the reader stops early."""
        sent = 0
        try:
            while True:
                output = await self.queue.get()
                if output.error is not None:
                    raise EngineError(output.error)
                tokens = output.generated_tokens
                finished = self.finished_in_manager = output.status == RequestStatus.FINISHED
                if not (finished or incremental or self.params.stop):
                    self._observe(len(tokens))
                    continue
                text, cut, counted = self._decode(tokens, sent)
                self._observe(counted)
                if self.finish_reason is None and finished:
                    self.finish_reason = "stop" if tokens and tokens[-1] in self.engine.eos_ids else "length"
                elif self.finish_reason is None:
                    cut = _safe_end(text, self.params.stop)
                if cut > sent or self.finish_reason:
                    yield Step(text[sent:cut], counted, self.finish_reason)
                    sent = max(sent, cut)
                if self.finish_reason:
                    return
        finally:
            self.release()

    def deliver(self, output: GenerationOutput) -> None:
        """Keep only the latest output (on the event loop, as the manager hands each over): each carries a copy of
        all the tokens so far, and a reader stalled on its client (who stopped reading) would hold one per step."""
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(output)

    def release(self) -> None:
        """Forget this request, cancelling it in the manager if it has not finished (done once; again is a no-op)."""
        self.engine._release(self)

    def _decode(self, tokens: list[int], sent: int) -> tuple[str, int, int]:
        """The text of ``tokens``, where it ends (before the first stop string after ``sent``) and how many tokens
        count. With stop strings the new tokens are decoded one at a time, and those after the one that completed a
        stop string are not counted (the reader may have been late: several tokens came in one output)."""
        if not self.params.stop:
            text = self.detokenizer.update(tokens)
            return text, len(text), len(tokens)
        text = self.detokenizer.text
        for end in range(self.detokenizer.decoded + 1, len(tokens) + 1):
            text = self.detokenizer.update(tokens, end)
            cut, stopped = _find_stop(text, self.params.stop, sent)
            if stopped:
                self.finish_reason = "stop"
                return text, cut, end
        return text, len(text), len(tokens)

    def _observe(self, total: int) -> None:
        """Count new tokens and their latencies as they arrive."""
        metrics, now, new = self.engine.metrics, time.perf_counter(), total - self.tokens_seen
        if new <= 0:
            return
        if self.first_token_at is None:
            self.first_token_at = now
            metrics.time_to_first_token.observe(now - self.arrival)
            metrics.prompt_tokens.inc(self.prompt_tokens)
            if self.engine.prefix_cache:
                metrics.prefix_cache_queries.inc(self.prompt_tokens)
                metrics.prefix_cache_hits.inc(self.engine.prefix_hit(self.request_id))
            gaps = [0.0] * (new - 1)  # tokens that arrived together with the first one
        else:
            gaps = [(now - self.last_token_at) / new] * new
        for gap in gaps:
            metrics.inter_token_latency.observe(gap)
        metrics.generation_tokens.inc(new)
        self.tokens_seen, self.last_token_at = total, now


def _find_stop(text: str, stops: tuple[str, ...], start: int) -> tuple[int, bool]:
    """Where the text ends: before the earliest stop string at or after ``start``, or at its end. (Text before
    what was sent holds no stop string: ``_safe_end`` holds back any prefix of one.)"""
    hits = [i for i in (text.find(s, start) for s in stops) if i >= 0]
    return (min(hits), True) if hits else (len(text), False)


def _safe_end(text: str, stops: tuple[str, ...]) -> int:
    """How much text can be sent now: hold back a partial UTF-8 character and a possible stop prefix."""
    end = len(text.rstrip("\ufffd"))
    for stop in stops:
        end = _stop_prefix_start(text, end, stop)
    return end


def _stop_prefix_start(text: str, end: int, stop: str) -> int:
    """Where the longest end of ``text[:end]`` that begins ``stop`` (shorter than it) starts; ``end`` if none.
    Only the places where ``stop``'s first character occurs are compared."""
    start = text.find(stop[0], max(0, end - len(stop) + 1), end)
    while start >= 0 and not stop.startswith(text[start:end]):
        start = text.find(stop[0], start + 1, end)
    return end if start < 0 else start


class _Dropped(queue.Queue[GenerationOutput]):
    """The manager's queue for outputs that no handler takes, which nothing here reads: only the output of the step
    under way when a request is released (its handler is gone by then, and the cancellation applies at the next
    step). Kept, each would hold the request's tokens for the life of the process."""

    def put(self, item: GenerationOutput, block: bool = True, timeout: float | None = None) -> None:
        """Drop the output."""


class Engine:
    """Runs one model with continuous batching and admits requests within ``Limits``; ``scheduler`` is a
    key of ``scheduling.SCHEDULERS``; ``prefix_cache`` keeps finished requests' pages for prompts that
    start the same way."""

    def __init__(self, loaded: LoadedModel, limits: Limits, metrics: ServerMetrics, scheduler: str,
                 prefix_cache: bool = False) -> None:
        self.loaded, self.limits, self.metrics, self.scheduler = loaded, limits, metrics, scheduler
        self.prefix_cache = prefix_cache
        self.tokenizer = loaded.tokenizer
        self.chars_per_token = max_chars_per_token(loaded.tokenizer)
        self.eos_ids = _eos_ids(loaded)
        self.manager: ContinuousBatchingManager | None = None
        self.in_flight: dict[str, Generation] = {}
        self.tokens_in_flight = 0
        self.draining = False
        self._ids = itertools.count()

    @property
    def alive(self) -> bool:
        """False once the generation thread has died (the process should be restarted)."""
        return self.manager is None or self.manager.is_running() or self.draining

    @property
    def max_request_tokens(self) -> int:
        """The most tokens (prompt + completion) one request may hold."""
        return min(self.loaded.max_context, self.limits.max_tokens_in_flight)

    @property
    def max_prompt_chars(self) -> int:
        """More characters than a prompt within ``max_request_tokens`` can have: longer ones are not tokenized."""
        return self.max_request_tokens * self.chars_per_token

    @property
    def cache_tokens(self) -> int:
        """The KV cache's size: ``max_tokens_in_flight`` rounded up to whole pages. Admission counts each request
        in whole pages against it, so a request within ``max_request_tokens`` always fits an idle server."""
        return math.ceil(self.limits.max_tokens_in_flight / PAGE_SIZE) * PAGE_SIZE

    @property
    def running(self) -> int:
        """Requests producing tokens."""
        return sum(1 for g in self.in_flight.values() if g.first_token_at is not None)

    @property
    def waiting(self) -> int:
        """Admitted requests still waiting for their first token."""
        return len(self.in_flight) - self.running

    def kv_cache_usage(self) -> float:
        """Fraction of the paged KV cache in use by requests (pages kept only for the prefix cache are free,
        as in vLLM)."""
        processor = self.manager.batch_processor if self.manager else None
        if processor is None:
            return 0.0
        cache = processor.cache
        kept = sum(len(a.ledger.cached_blocks) * a.bytes_per_block for a in cache.cache_allocators.values())
        free = cache.compute_free_capacity(relative=False) + kept
        return max(0.0, 1.0 - free / (cache.num_sectors * cache.bytes_per_sector))

    def prefix_hit(self, request_id: str) -> int:
        """Prompt tokens of a request that the prefix cache served (read once; 0 before it was scheduled)."""
        processor = self.manager.batch_processor if self.manager else None
        return 0 if processor is None else processor.scheduler.prefix_hits.pop(request_id, 0)

    def start(self) -> None:
        """Build the manager with a cache sized to the token budget and start its thread."""
        model = self.loaded.model
        generation_config = GenerationConfig(do_sample=True, eos_token_id=self.eos_ids or -1)
        config = ContinuousBatchingConfig(
            page_size=PAGE_SIZE,
            num_blocks=self.cache_tokens // PAGE_SIZE,
            max_batch_tokens=MAX_BATCH_TOKENS,
            allow_block_sharing=self.prefix_cache,  # else a finished request's pages are freed at once
            per_request_processors=True,
            scheduler_type=SCHEDULERS[self.scheduler],
        )
        manager = model.init_continuous_batching(generation_config=generation_config,
                                                 continuous_batching_config=config)
        manager.logit_processor = build_processors()
        manager.output_router.output_queue = _Dropped()
        manager.start()
        self.manager = manager
        self.metrics.track_state(lambda: self.running, lambda: self.waiting, self.kv_cache_usage)

    async def warm_up(self) -> None:
        """Run one short greedy request through the manager, outside the metrics and the limits."""
        assert self.manager is not None
        done: asyncio.Future[GenerationOutput] = asyncio.get_running_loop().create_future()
        self.manager.register_result_handler("warm-up", done.set_result)
        self._add(self.tokenizer("Hello")["input_ids"], "warm-up", SamplingParams(4, temperature=0), streaming=False)
        output = await done
        if output.error is not None:
            raise EngineError(f"warm-up failed: {output.error}")

    def submit(self, prompt_ids: list[int], params: SamplingParams) -> Generation:
        """Admit a request or raise ``Overloaded``, ``Draining`` or ``ValueError`` (it can never fit)."""
        if self.draining:
            raise Draining("the server is shutting down")
        if self.manager is None or not self.manager.is_running():
            raise EngineError("the generation loop is not running")
        need = len(prompt_ids) + params.max_tokens
        if not prompt_ids:
            raise ValueError("the prompt is empty")
        if need > self.max_request_tokens:
            raise ValueError(f"prompt ({len(prompt_ids)} tokens) + max_tokens ({params.max_tokens}) = {need} "
                             f"exceeds this server's limit of {self.max_request_tokens} tokens per request")
        if self.waiting >= self.limits.max_waiting:
            raise Overloaded(f"{self.waiting} requests are already waiting")
        budget = math.ceil(need / PAGE_SIZE) * PAGE_SIZE
        if self.tokens_in_flight + budget > self.cache_tokens:
            raise Overloaded(f"{self.tokens_in_flight} tokens are already in flight")
        request_id = f"req-{next(self._ids)}"
        generation = Generation(self, request_id, prompt_ids, params, budget)
        self.manager.register_result_handler(request_id, generation.deliver)
        self._add(prompt_ids, request_id, params, streaming=True)
        self.in_flight[request_id] = generation  # its outputs are delivered on this event loop, after this
        self.tokens_in_flight += budget
        return generation

    def _add(self, prompt_ids: list[int], request_id: str, params: SamplingParams, streaming: bool) -> None:
        """Hand a request to the manager, or raise ``EngineError`` when its thread has stopped (the manager then
        drops the request with only a warning, and its reader would wait forever)."""
        assert self.manager is not None
        if self.manager.add_request(prompt_ids, request_id=request_id, max_new_tokens=params.max_tokens,
                                    streaming=streaming, eos_token_id=self.eos_ids or -1,
                                    **params.processor_kwargs()) is None:
            error = self.manager.background_thread_status.fatal_error
            raise EngineError(f"the generation loop has stopped{f': {error}' if error else ''}")

    def _release(self, generation: Generation) -> None:
        """Forget a request; cancel it in the manager if it has not finished."""
        if self.in_flight.pop(generation.request_id, None) is None:
            return
        self.tokens_in_flight -= generation.budget
        self.prefix_hit(generation.request_id)  # forget a hit of a request cancelled before its first token
        if not generation.finished_in_manager:
            self._cancel(generation.request_id)
        reason = generation.finish_reason or "abort"
        self.metrics.request_success[reason].inc()
        self.metrics.e2e_request_latency.observe(time.perf_counter() - generation.arrival)

    def _cancel(self, request_id: str) -> None:
        """Stop generating for a request and drop its handler (the output of a step under way is then dropped)."""
        assert self.manager is not None
        self.manager.cancel_request(request_id)
        router = self.manager.output_router
        with router._lock:  # no public way to unregister a handler of a request that will not finish
            router.result_handlers.pop(request_id, None)

    async def drain(self, timeout: float) -> bool:
        """Refuse new requests and wait up to ``timeout`` s for those in flight; True if all finished."""
        self.draining = True
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return not self.in_flight

    def stop(self) -> None:
        """Stop the generation thread (pending requests are failed)."""
        if self.manager is not None and self.manager.is_running():
            self.manager.stop(block=True, timeout=5, hard_stop=True)

    async def shutdown(self) -> None:
        """Stop the generation thread, then fail the requests it dropped: a hard stop fails those it runs or
        schedules, but not those still in its input queue, whose readers would wait until the server closed."""
        await asyncio.to_thread(self.stop)
        if self.manager is None or self.manager.is_running():  # not stopped within the time given: it may still answer
            return
        router = self.manager.output_router  # by now the failed requests' handlers went, with their outputs
        for generation in [g for g in self.in_flight.values() if g.request_id in router.result_handlers]:
            generation.deliver(GenerationOutput(generation.request_id, status=RequestStatus.FAILED,
                                                error="the server stopped before this request started"))


def _eos_ids(loaded: LoadedModel) -> list[int]:
    """End-of-sequence ids from the generation config, the model config and the tokenizer."""
    ids: set[int] = set()
    for source in (getattr(loaded.model, "generation_config", None), loaded.model.config, loaded.tokenizer):
        value = getattr(source, "eos_token_id", None)
        ids.update([value] if isinstance(value, int) else value or [])
    return sorted(ids)
