"""The `/v1/ask` route, served by chatd: a question answered by a model calling the lakehouse's tools.

chatd owns it because the loop's every round is a chat call. The tools reach
the catalog, queryd and vectord through their public routes: in-process when
this app serves them (embedded), else at `[gateway] <service>_url` (split),
with the caller's token passed on.

`stream: true` answers server-sent events: `event: step` (`{"tool",
"input", "output"}`) per tool call as it is done, then `event: answer` (the
whole answer body); a failure after the first event is `event: error` with
the contract's error body. A failure before it (an unknown dataset or index:
404, an unregistered provider, the provider failing its first round) keeps
its HTTP status.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.routing import Match

from lakehouse.ask import AskAnswer, AskEvent, AskLoop, AskRequest, HttpLakehouse, connect, open_toolbox
from lakehouse.ask.backend import SERVICES
from lakehouse.ask.loop import DEFAULT_STEPS, MAX_NAMES, MAX_QUESTION_CHARS, MAX_STEPS
from lakehouse.errors import LakehouseError
from lakehouse.services.deps import DepsDep

router = APIRouter(tags=["ask"])

# A route each service the tools call serves, to tell whether this app serves it.
PROBES = {
    "catalogd": ("GET", "/v1/catalog/datasets"),
    "queryd": ("POST", "/v1/sql"),
    "vectord": ("GET", "/v1/vectors/index"),
}


class AskBody(BaseModel):
    """A question, the model to answer it, and what it may read."""

    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    model: str = Field(min_length=1, description="A tool-capable model, e.g. `qwen3:4b` or `kimi/<m>`")
    datasets: list[str] | None = Field(
        default=None, max_length=MAX_NAMES, description="Only these datasets may be read (default: all)"
    )
    indexes: list[str] = Field(
        default_factory=list, max_length=MAX_NAMES, description="Indexes it may search"
    )
    max_steps: int = Field(default=DEFAULT_STEPS, ge=1, le=MAX_STEPS, description="Tool rounds at most")
    stream: bool = Field(default=False, description="Answer server-sent events: each step, then the answer")


class StepOut(BaseModel):
    """One tool call."""

    tool: str
    input: Any
    output: dict[str, Any]


class AskOut(BaseModel):
    """The answer, its steps and citations (dataset + version + row ids, SQL run, index + item ids)."""

    answer: str
    model: str
    provider: str
    steps: list[StepOut]
    citations: list[dict[str, Any]]
    finish: str = Field(description='"answer", or "max_steps" when the tool rounds ran out first')
    rounds: int
    input_tokens: int
    output_tokens: int
    elapsed_ms: float


_ERRORS: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "JSON, or server-sent events with stream"},
    400: {"description": "Empty or oversized question, or an invalid field"},
    404: {
        "description": "A named dataset or index does not exist, or the model's provider is not registered"
    },
    429: {"description": "The provider is rate limiting"},
    502: {"description": "The provider failed, or the model cannot call tools"},
    503: {"description": "The provider is unreachable"},
    504: {"description": "The provider, or the whole question, ran past its time"},
}


@router.post("/v1/ask", response_model=AskOut, summary="Answer a question from the data", responses=_ERRORS)
async def ask(body: AskBody, request: Request, deps: DepsDep) -> Any:
    """A server-side tool loop: list datasets, schemas, read-only SQL, search; then the answer."""
    question = AskRequest(
        question=body.question,
        model=body.model,
        datasets=tuple(body.datasets) if body.datasets is not None else None,
        indexes=tuple(body.indexes),
        max_steps=body.max_steps,
    )
    question.check()
    served = _served(request.app)
    upstreams = {s: getattr(deps.settings.gateway, f"{s}_url") for s in SERVICES}
    timeout = deps.settings.chatd.ask_timeout_secs
    lakehouse = connect(request.app, served, upstreams, request.headers, timeout)
    streaming = False
    try:
        toolbox, context = await open_toolbox(lakehouse, question.datasets, question.indexes)
        loop = AskLoop(deps.chat, toolbox, timeout_secs=timeout, context=context)
        if not body.stream:
            return JSONResponse((await loop.answer(question)).to_dict())
        events = loop.events(question)
        first = await events.__anext__()
        streaming = True
    finally:
        if not streaming:
            await lakehouse.aclose()
    return StreamingResponse(
        _sse(first, events, lakehouse),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _sse(
    first: AskEvent, events: AsyncGenerator[AskEvent], lakehouse: HttpLakehouse
) -> AsyncIterator[bytes]:
    """The events as SSE: the first (already made), the rest as they come, an error event on failure."""
    try:
        yield _event(first)
        if isinstance(first, AskAnswer):
            return
        try:
            async for event in events:
                yield _event(event)
        except LakehouseError as exc:
            yield b"event: error\ndata: " + _dumps(exc.body()) + b"\n\n"
    finally:
        await events.aclose()
        await lakehouse.aclose()


def _served(app: Any) -> frozenset[str]:
    """The services the tools call that this app serves itself (all of them when embedded)."""
    served: frozenset[str] | None = getattr(app.state, "ask_served", None)
    if served is None:
        served = frozenset(
            name
            for name, (method, path) in PROBES.items()
            if any(
                route.matches({"type": "http", "method": method, "path": path, "root_path": ""})[0]
                == Match.FULL
                for route in app.router.routes
            )
        )
        app.state.ask_served = served
    return served


def _event(event: AskEvent) -> bytes:
    kind = "answer" if isinstance(event, AskAnswer) else "step"
    return f"event: {kind}\ndata: ".encode() + _dumps(event.to_dict()) + b"\n\n"


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), default=str).encode()
