"""chatd routes: `POST /v1/chat`, `GET /v1/chat/providers`, `POST /v1/chat/completions`.

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
from lakehouse.providers.types import ChatRequest, Chunk, Message
from lakehouse.services.deps import DepsDep

router = APIRouter(tags=["chat"])


class ChatMessage(BaseModel):
    """One turn of the conversation."""

    role: str = Field(min_length=1, description="system, user, assistant or tool")
    content: str


class ChatBody(BaseModel):
    """A chat call; the model name picks the provider (see the routing table)."""

    model: str = Field(min_length=1, description="Model or `[models]` tier name, e.g. `ollama/qwen3:4b`")
    messages: list[ChatMessage] = Field(min_length=1)
    format: Literal["json"] | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0)
    think: bool | None = Field(default=None, description="Ollama reasoning; false unless set")
    stream: bool = Field(default=False, description="Answer NDJSON pieces as they come")


class ChatAnswer(BaseModel):
    """The whole answer, with token counts and the time the provider took."""

    model: str
    provider: str
    content: str
    done_reason: str
    input_tokens: int
    output_tokens: int
    latency_ms: float


class ProviderInfo(BaseModel):
    """A registered provider."""

    name: str
    kind: str


class ProvidersAnswer(BaseModel):
    """The registered providers and the default one (never a key)."""

    default: str
    providers: list[ProviderInfo]


class TextPart(BaseModel):
    """A text part of an OpenAI message's content."""

    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class CompletionMessage(BaseModel):
    """An OpenAI chat message; only text content is supported."""

    model_config = ConfigDict(extra="allow")
    role: str = Field(min_length=1)
    content: str | list[TextPart] | None = None


class StreamOptions(BaseModel):
    """OpenAI's stream options."""

    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ResponseFormat(BaseModel):
    """OpenAI's response format; `json_object` asks for JSON."""

    model_config = ConfigDict(extra="allow")
    type: str


class CompletionsBody(BaseModel):
    """OpenAI's Chat Completions request; unknown fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1)
    messages: list[CompletionMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    max_completion_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0)
    response_format: ResponseFormat | None = None

    def to_request(self) -> ChatRequest:
        """The provider-neutral chat request."""
        fmt: Literal["json"] | None = None
        if self.response_format is not None and self.response_format.type in ("json_object", "json_schema"):
            fmt = "json"
        return ChatRequest(
            model=self.model,
            messages=tuple(_message(i, m) for i, m in enumerate(self.messages)),
            format=fmt,
            max_tokens=self.max_completion_tokens or self.max_tokens,
            temperature=self.temperature,
        )


def _message(index: int, message: CompletionMessage) -> Message:
    role = "system" if message.role == "developer" else message.role
    if message.content is None:
        if role != "assistant":
            raise InvalidRequest(f"'messages.{index}.content' is required for role {role!r}")
        return Message(role, "")
    if isinstance(message.content, str):
        return Message(role, message.content)
    texts = []
    for part in message.content:
        if part.type != "text" or part.text is None:
            raise InvalidRequest(
                f"'messages.{index}.content': only text parts are supported, got {part.type!r}"
            )
        texts.append(part.text)
    return Message(role, "\n".join(texts))


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
        messages=tuple(Message(m.role, m.content) for m in body.messages),
        format=body.format,
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        think=body.think,
    )
    if body.stream:
        return await _streamed(deps.chat.stream(request), _ndjson, "application/x-ndjson")
    return _answer(await deps.chat.chat(request))


@router.post("/v1/chat/completions", summary="OpenAI-compatible Chat Completions", responses=_ERRORS)
async def completions(body: CompletionsBody, deps: DepsDep) -> Any:
    """OpenAI's Chat Completions shape, so OpenAI clients work unchanged; `stream: true` answers SSE."""
    request = body.to_request()
    if body.stream:
        include_usage = body.stream_options is not None and body.stream_options.include_usage
        render = _sse(body.model, include_usage)
        return await _streamed(deps.chat.stream(request), render, "text/event-stream")
    return JSONResponse(_completion(body.model, await deps.chat.chat(request)))


def _answer(answer: ChatResponse) -> ChatAnswer:
    return ChatAnswer(
        model=answer.model,
        provider=answer.provider,
        content=answer.content,
        done_reason=answer.done_reason,
        input_tokens=answer.input_tokens,
        output_tokens=answer.output_tokens,
        latency_ms=answer.latency_ms,
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
                "message": {"role": "assistant", "content": answer.content},
                "finish_reason": _finish_reason(answer.done_reason),
            }
        ],
        "usage": _usage(answer),
    }
