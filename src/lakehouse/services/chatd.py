"""chatd routes: `POST /v1/chat`, `GET /v1/chat/providers`, `POST /v1/chat/completions`, `/v1/models`.

Streaming: `POST /v1/chat` with `"stream": true` answers NDJSON
(`application/x-ndjson`): one `{"content": "<piece>"}` line per piece, then
one line with the whole answer in the contract's shape plus `"done": true`.
`POST /v1/chat/completions` with `"stream": true` answers server-sent events
in OpenAI's `chat.completion.chunk` shape, ending with `data: [DONE]`.
Errors before the first piece keep their HTTP status; an error after it
arrives as a last line (or event) `{"error": {"code", "message"}}`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.types import Receive, Scope, Send

from lakehouse.errors import InvalidRequest, LakehouseError
from lakehouse.providers.chat import ChatResponse, ChatStream
from lakehouse.providers.models import find_model, list_models
from lakehouse.providers.openai_shape import parse_message, parse_tools, to_chat_request
from lakehouse.providers.types import ChatRequest, Chunk, Message
from lakehouse.services.askd import router as ask_router
from lakehouse.services.deps import DepsDep

router = APIRouter(tags=["chat"])
# `/v1/ask` is chatd's too: its every round is a chat call (see askd.py).
router.include_router(ask_router)


class ChatMessage(BaseModel):
    """One turn of the conversation; an assistant's may carry tool calls, a tool's answers one."""

    role: str = Field(min_length=1, description="system, user, assistant or tool")
    content: str | None = Field(default=None, description="Required, except beside an assistant's tool calls")
    tool_calls: list[dict[str, Any]] | None = Field(default=None, description="OpenAI-shaped tool calls")
    tool_call_id: str | None = None
    name: str | None = None


class ChatBody(BaseModel):
    """A chat call; the model name picks the provider (see the routing table)."""

    model: str = Field(min_length=1, description="Model or `[models]` tier name, e.g. `ollama/qwen3:4b`")
    messages: list[ChatMessage] = Field(min_length=1)
    format: Literal["json"] | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0)
    think: bool | None = Field(default=None, description="Ollama reasoning; false unless set")
    stream: bool = Field(default=False, description="Answer NDJSON pieces as they come")
    tools: list[dict[str, Any]] | None = Field(default=None, description="OpenAI function tools")
    tool_choice: str | dict[str, Any] | None = None


class ChatAnswer(BaseModel):
    """The whole answer, with token counts and the time the provider took."""

    model: str
    provider: str
    content: str
    done_reason: str
    input_tokens: int
    output_tokens: int
    latency_ms: float
    tool_calls: list[dict[str, Any]] = Field(default_factory=list, description="OpenAI-shaped tool calls")


class ProviderInfo(BaseModel):
    """A registered provider."""

    name: str
    kind: str


class ProvidersAnswer(BaseModel):
    """The registered providers and the default one (never a key)."""

    default: str
    providers: list[ProviderInfo]


class CompletionsBody(BaseModel):
    """OpenAI's Chat Completions request. A field not honoured is 400 `unsupported_parameter`."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    messages: list[dict[str, Any]] = Field(min_length=1, description="OpenAI messages, tool turns included")
    stream: bool = False
    stream_options: dict[str, bool] | None = Field(default=None, description="Only include_usage")
    max_tokens: int | None = Field(default=None, gt=0)
    max_completion_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    response_format: dict[str, Any] | None = Field(
        default=None, description="text, json_object or json_schema (reaches Ollama as its format)"
    )
    tools: list[dict[str, Any]] | None = Field(default=None, description="OpenAI function tools")
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    n: int | None = Field(default=None, description="Only 1")


class ModelInfo(BaseModel):
    """One model in OpenAI's list shape."""

    model_config = ConfigDict(extra="allow")
    id: str
    object: str = "model"
    created: int
    owned_by: str


class ModelList(BaseModel):
    """OpenAI's model list: tiers, default models and what each registered provider reports."""

    object: str = "list"
    data: list[ModelInfo]


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Missing or empty model or messages, or an invalid option"},
    404: {"description": "The model routes to a provider that is not registered"},
    429: {"description": "The provider is rate limiting; Retry-After passed on"},
    502: {"description": "The provider answered with an error, an unreadable body or no choices"},
    503: {"description": "The provider is unreachable"},
    504: {"description": "The provider did not answer within [chatd] timeout_secs"},
}


@router.get("/v1/chat/providers", response_model=ProvidersAnswer, summary="Registered chat providers")
async def providers(deps: DepsDep) -> dict[str, Any]:
    """The providers that are configured and usable, and the default one."""
    return deps.chat.listing()


@router.post("/v1/chat", response_model=ChatAnswer, summary="Chat with a model", responses=_ERRORS)
async def chat(body: ChatBody, deps: DepsDep) -> Any:
    """One chat turn, routed by model name; `stream: true` answers NDJSON."""
    request = ChatRequest(
        model=body.model,
        messages=tuple(_native_message(i, m) for i, m in enumerate(body.messages)),
        format=body.format,
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        think=body.think,
        tools=parse_tools(body.tools),
        tool_choice=body.tool_choice,
    )
    if body.stream:
        return await _streamed(deps.chat.stream(request), _ndjson, "application/x-ndjson")
    return _answer(await deps.chat.chat(request))


@router.post("/v1/chat/completions", summary="OpenAI-compatible Chat Completions", responses=_ERRORS)
async def completions(body: CompletionsBody, deps: DepsDep) -> Any:
    """OpenAI's Chat Completions shape, so OpenAI clients work unchanged; `stream: true` answers SSE."""
    request = to_chat_request(body.model_dump(exclude_unset=True))
    if body.stream:
        include_usage = bool((body.stream_options or {}).get("include_usage"))
        render = _sse(body.model, include_usage)
        return await _streamed(deps.chat.stream(request), render, "text/event-stream")
    return JSONResponse(_completion(body.model, await deps.chat.chat(request)))


@router.get("/v1/models", response_model=ModelList, summary="OpenAI-compatible model list")
async def models(deps: DepsDep) -> dict[str, Any]:
    """The `[models]` tiers, the default models and each registered provider's models (those that answer)."""
    return {"object": "list", "data": await list_models(deps.chat, deps.settings)}


@router.get(
    "/v1/models/{id:path}",
    response_model=ModelInfo,
    summary="One model of the list",
    responses={404: {"description": "No such model"}},
)
async def model(id: str, deps: DepsDep) -> dict[str, Any]:
    """One entry of `GET /v1/models` by id (ids may hold `/` and `:`)."""
    return await find_model(deps.chat, deps.settings, id)


def _native_message(index: int, m: ChatMessage) -> Message:
    doc = {"role": m.role, "content": m.content, "tool_calls": m.tool_calls, "tool_call_id": m.tool_call_id}
    message = parse_message(index, {**doc, "name": m.name})
    if m.content is None and not message.tool_calls:
        raise InvalidRequest(f"'messages.{index}.content' is required")
    return message


def _answer(answer: ChatResponse) -> ChatAnswer:
    return ChatAnswer(
        model=answer.model,
        provider=answer.provider,
        content=answer.content,
        done_reason=answer.done_reason,
        input_tokens=answer.input_tokens,
        output_tokens=answer.output_tokens,
        latency_ms=answer.latency_ms,
        tool_calls=list(answer.tool_calls),
    )


Render = Callable[[ChatStream, Chunk | LakehouseError], list[bytes]]


async def _streamed(stream: ChatStream, render: Render, media_type: str) -> StreamedAnswer:
    """Wait for the first piece (so early errors keep their status), then stream the rest."""
    try:
        first = await stream.__anext__()
    except BaseException:
        await stream.aclose()
        raise
    return StreamedAnswer(stream, first, render, media_type)


class StreamedAnswer(Response):
    """A streamed answer written to ASGI `send` from the request's own task, one write per piece.

    Leaner than StreamingResponse, which spawns an anyio task group per answer: here
    one small task waits for the client to leave and, if it does, cancels the
    writing, which releases the upstream connection.
    """

    def __init__(self, stream: ChatStream, first: Chunk, render: Render, media_type: str) -> None:
        self.stream = stream
        self.first = first
        self._render = render
        self.status_code = 200
        self.media_type = media_type
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        writing = True

        def client_left(watcher: asyncio.Future[None]) -> None:
            if writing and not watcher.cancelled() and task is not None:
                task.cancel()

        watcher = asyncio.ensure_future(_disconnected(receive))
        watcher.add_done_callback(client_left)
        try:
            await self._write(send)
        except asyncio.CancelledError:
            if not (watcher.done() and not watcher.cancelled()) or task is None:
                raise  # cancelled from outside (shutdown), not by the client leaving
            task.uncancel()
        finally:
            writing = False
            watcher.cancel()

    async def _write(self, send: Send) -> None:
        stream, render = self.stream, self._render
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await _send_lines(send, render(stream, self.first))
            if not self.first.done:
                try:
                    async for chunk in stream:
                        await _send_lines(send, render(stream, chunk))
                except LakehouseError as exc:
                    await _send_lines(send, render(stream, exc))
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await stream.aclose()


async def _send_lines(send: Send, lines: list[bytes]) -> None:
    if lines:
        await send({"type": "http.response.body", "body": b"".join(lines), "more_body": True})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _ndjson(stream: ChatStream, item: Chunk | LakehouseError) -> list[bytes]:
    if isinstance(item, LakehouseError):
        return [_json_line(item.body())]
    lines = [_json_line({"content": item.content})] if item.content else []
    if item.tool_calls:
        lines.append(_json_line({"tool_calls": list(item.tool_calls)}))
    if item.done:
        lines.append(_json_line({**_answer(stream.response()).model_dump(), "done": True}))
    return lines


def _json_line(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode() + b"\n"


def _sse(model: str, include_usage: bool) -> Render:
    """An SSE renderer of OpenAI `chat.completion.chunk` events for one answer."""
    meta = {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
    }
    meta["model"] = model
    started = False

    def render(stream: ChatStream, item: Chunk | LakehouseError) -> list[bytes]:
        nonlocal started
        if isinstance(item, LakehouseError):
            return [_event(item.body()), b"data: [DONE]\n\n"]
        events = []
        delta: dict[str, Any] = {"content": item.content} if item.content else {}
        if item.tool_calls:
            delta["tool_calls"] = list(item.tool_calls)
        if not started:
            delta = {"role": "assistant", **delta}
            started = True
        if delta:
            events.append(_event({**meta, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}))
        if item.done:
            finish = _finish_reason(item.done_reason)
            events.append(_event({**meta, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}))
            if include_usage:
                events.append(_event({**meta, "choices": [], "usage": _usage(stream.response())}))
            events.append(b"data: [DONE]\n\n")
        return events

    return render


def _event(doc: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(doc, ensure_ascii=False).encode() + b"\n\n"


def _finish_reason(reason: str | None) -> str:
    # OpenAI clients know these; Ollama's other reasons (load, unload) mean the answer stopped.
    return reason if reason in ("stop", "length", "tool_calls", "content_filter") else "stop"


def _usage(answer: ChatResponse) -> dict[str, int]:
    return {
        "prompt_tokens": answer.input_tokens,
        "completion_tokens": answer.output_tokens,
        "total_tokens": answer.input_tokens + answer.output_tokens,
    }


def _message_of(answer: ChatResponse) -> dict[str, Any]:
    if not answer.tool_calls:
        return {"role": "assistant", "content": answer.content}
    return {"role": "assistant", "content": answer.content or None, "tool_calls": list(answer.tool_calls)}


def _completion(model: str, answer: ChatResponse) -> dict[str, Any]:
    """A whole answer in OpenAI's `chat.completion` shape, with the contract's fields alongside."""
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "provider": answer.provider,
        "latency_ms": answer.latency_ms,
        "choices": [
            {
                "index": 0,
                "message": _message_of(answer),
                "finish_reason": _finish_reason(answer.done_reason),
            }
        ],
        "usage": _usage(answer),
    }
