"""The aiohttp application: OpenAI routes, server-sent events, errors, auth, health and metrics."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .engine import Draining, Engine, EngineError, Generation, Overloaded
from .metrics import ServerMetrics
from .protocol import InvalidRequest, ParsedRequest, ResponseBuilder, error_body, parse_chat, parse_completion, usage

OPEN_PATHS = frozenset({"/health", "/ready", "/metrics"})  # never behind the API key
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ADMITTED = web.RequestKey("admitted", bool)  # set once a request holds a generation (counted when it ends)
log = logging.getLogger(__name__)


class ServerState:
    """What the routes share: the engine once loaded, readiness, limits and the key."""

    def __init__(self, model_name: str, metrics: ServerMetrics, api_key: str | None, max_body_bytes: int) -> None:
        self.model_name, self.metrics = model_name, metrics
        self.api_key, self.max_body_bytes = api_key, max_body_bytes
        self.engine: Engine | None = None
        self.ready = False

    @property
    def serving(self) -> bool:
        """True once the model is loaded and warmed, and until draining starts."""
        return self.ready and self.engine is not None and self.engine.alive and not self.engine.draining


STATE = web.AppKey("state", ServerState)


def json_error(status: int, message: str, type_: str, code: str | None = None, param: str | None = None,
               headers: dict[str, str] | None = None) -> web.Response:
    """An error response in OpenAI's shape."""
    return web.json_response(error_body(message, type_, code, param), status=status, headers=headers)


@web.middleware
async def errors_and_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check the bearer token (never logged) and turn every error into OpenAI's shape."""
    state = request.app[STATE]
    if state.api_key and request.path not in OPEN_PATHS:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        # surrogateescape: the header's bytes that are not UTF-8 (aiohttp keeps them as surrogates) compare as bytes
        given, key = token.strip().encode(errors="surrogateescape"), state.api_key.encode(errors="surrogateescape")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given, key):
            state.metrics.rejected["unauthorized"].inc()
            return json_error(401, "invalid or missing API key", "authentication_error", "invalid_api_key")
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return json_error(exc.status, exc.reason, "invalid_request_error" if exc.status < 500 else "server_error")
    except Exception:
        if request.writer.output_size > 0:
            raise  # a stream is under way: aiohttp logs it and closes the connection
        log.exception("%s %s failed", request.method, request.path)
        if not request.get(ADMITTED, False):  # an admitted request is counted when its generation ends (abort)
            state.metrics.rejected["error"].inc()
        return json_error(500, "the server had an error while processing the request", "server_error")


class BodyTooLarge(Exception):
    """The request body is larger than ``--max-body-bytes``."""


async def read_body(request: web.Request) -> dict[str, Any]:
    """The JSON object of a request, refused at once if too large or malformed."""
    limit = request.app[STATE].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(f"the request body exceeds {limit} bytes")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise BodyTooLarge(f"the request body exceeds {limit} bytes") from None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("the request body is not valid JSON") from None
    except RecursionError:
        raise InvalidRequest("the request body's JSON is nested too deeply") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return body


async def health(request: web.Request) -> web.Response:
    """Liveness: the process answers and its generation thread, once started, is running."""
    engine = request.app[STATE].engine
    alive = engine is None or engine.alive
    return web.json_response({"status": "ok" if alive else "generation loop died"}, status=200 if alive else 503)


async def ready(request: web.Request) -> web.Response:
    """Readiness: the model is loaded and warmed, and the server is not draining."""
    state = request.app[STATE]
    return web.json_response({"ready": state.serving}, status=200 if state.serving else 503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format."""
    body = generate_latest(request.app[STATE].metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def not_serving(state: ServerState) -> web.Response:
    """The 503 of an API request before the model is loaded and warmed, or while draining (counted)."""
    state.metrics.rejected["unavailable"].inc()
    return json_error(503, "the server is not ready", "service_unavailable", headers={"Retry-After": "1"})


async def models(request: web.Request) -> web.Response:
    """The one served model, once it serves (vLLM answers nothing before its model is loaded)."""
    state = request.app[STATE]
    if not state.serving:
        return not_serving(state)
    card = {"id": state.model_name, "object": "model", "created": 0, "owned_by": "foresail"}
    return web.json_response({"object": "list", "data": [card]})


async def completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/completions."""
    return await _generate(request, chat=False)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    """POST /v1/chat/completions."""
    return await _generate(request, chat=True)


async def _generate(request: web.Request, chat: bool) -> web.StreamResponse:
    state = request.app[STATE]
    admitted = await _admit(request, state, chat)
    if isinstance(admitted, web.StreamResponse):
        return admitted
    parsed, generation = admitted
    request[ADMITTED] = True
    builder = ResponseBuilder(chat, state.model_name)
    try:
        if parsed.stream:
            return await _stream(request, builder, generation, parsed)
        return await _complete(builder, generation)
    finally:
        generation.release()  # whatever ended the handler: a client gone before the headers, a cancellation


async def _admit(request: web.Request, state: ServerState, chat: bool
                 ) -> tuple[ParsedRequest, Generation] | web.StreamResponse:
    """Read, tokenize (in a worker thread: a long prompt takes a second) and admit a request, or the error that
    refuses it."""
    if not state.serving or state.engine is None:
        return not_serving(state)
    engine = state.engine
    try:
        body = await read_body(request)
        model = body.get("model")
        if model is not None and not isinstance(model, str):
            raise InvalidRequest("'model' must be a string naming the model (GET /v1/models lists it)", "model")
        if model is not None and model != state.model_name:
            state.metrics.rejected["invalid"].inc()
            return json_error(404, f"the model '{model}' does not exist", "invalid_request_error",
                              "model_not_found", "model")
        parsed = await asyncio.to_thread(parse_chat if chat else parse_completion, body, engine.tokenizer,
                                         engine.max_request_tokens, engine.max_prompt_chars)
        return parsed, engine.submit(parsed.prompt_ids, parsed.params)
    except BodyTooLarge as exc:
        state.metrics.rejected["too_large"].inc()
        return json_error(413, str(exc), "invalid_request_error", "request_too_large")
    except InvalidRequest as exc:
        state.metrics.rejected["invalid"].inc()
        return json_error(400, str(exc), "invalid_request_error", exc.code, exc.param)
    except Overloaded as exc:
        state.metrics.rejected["overloaded"].inc()
        return json_error(429, f"the server is overloaded ({exc}); retry later", "rate_limit_error",
                          "overloaded", headers={"Retry-After": str(exc.retry_after)})
    except (Draining, EngineError) as exc:
        state.metrics.rejected["unavailable"].inc()
        return json_error(503, str(exc), "service_unavailable", headers={"Retry-After": "1"})


async def _complete(builder: ResponseBuilder, generation: Generation) -> web.StreamResponse:
    text, finish, completion_tokens = [], None, 0
    try:
        async with aclosing(generation.steps(incremental=False)) as steps:
            async for step in steps:
                text.append(step.text)
                finish, completion_tokens = step.finish_reason, step.completion_tokens
    except EngineError as exc:
        return json_error(500, f"generation failed: {exc}", "server_error")
    return web.json_response(builder.full("".join(text), finish, generation.prompt_tokens, completion_tokens))


async def _stream(request: web.Request, builder: ResponseBuilder, generation: Generation,
                  parsed: ParsedRequest) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    completion_tokens, first = 0, True
    try:
        await response.prepare(request)
        async with aclosing(generation.steps()) as steps:
            async for step in steps:
                so_far = usage(generation.prompt_tokens, step.completion_tokens) if parsed.continuous_usage else None
                await _send(response, builder.chunk(step.text, step.finish_reason, first, so_far))
                first, completion_tokens = False, step.completion_tokens
        if parsed.include_usage:
            await _send(response, builder.usage_chunk(generation.prompt_tokens, completion_tokens))
    except EngineError as exc:
        await _send(response, error_body(f"generation failed: {exc}", "server_error"))
    except ConnectionResetError:
        return response  # the client left, before the headers or during the stream
    await response.write(b"data: [DONE]\n\n")
    await response.write_eof()
    return response


async def _send(response: web.StreamResponse, payload: dict[str, Any]) -> None:
    await response.write(f"data: {json.dumps(payload, separators=(',', ':'))}\n\n".encode())


def build_app(state: ServerState) -> web.Application:
    """The application with every route."""
    app = web.Application(middlewares=[errors_and_auth], client_max_size=state.max_body_bytes)
    app[STATE] = state
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/chat/completions", chat_completions)
    return app
