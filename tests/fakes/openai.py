"""A fake OpenAI-compatible server: a real HTTP server on 127.0.0.1.

    POST /v1/embeddings        {"model", "input": [str]}
                               -> {"object": "list", "data": [{"index", "embedding"}]}
    POST /v1/chat/completions  {"model", "messages", "stream"?, "response_format"?, ...}
                               -> {"choices": [{"message", "finish_reason"}], "usage"}; SSE when streaming
    GET  /v1/models            -> {"object": "list", "data": [{"id", "object", "created", "owned_by"}]}

With `tools` in a chat whose last message is not a tool result, the answer is a
call of the first tool, `{"query": <last user text>}`, finish_reason
`tool_calls` (streamed: the id and name first, then the arguments in two
pieces, as OpenAI does); after a tool result, `tool said: <its content>`.
`chat_models` are the ids `/v1/models` lists besides the embedding models.

Behaviours: `fail_status` (every request answered with it; 429 carries
`Retry-After: 7`), `zero_choices` (a chat answer with `"choices": []`), `reply`
(fixed chat content instead of an echo), `delay` (seconds before answering),
`chunk_delay` (seconds between streamed chunks). Request bodies are recorded in
`requests`, their Authorization headers in `auth`.

When `key` is set, requests without `Authorization: Bearer <key>` get 401.
The `data` items come back in reverse order, as the API allows, so clients
must order them by `index`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.chat import count_tokens, pieces, prompt_tokens, reply_for
from tests.fakes.ollama import fake_vector
from tests.fakes.server import RunningServer, serve_in_thread


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": None}}, status)


class FakeOpenAI:
    """State and handlers of the fake OpenAI-compatible server."""

    def __init__(self, key: str | None = None, models: dict[str, int] | None = None) -> None:
        self.key = key
        self.models: dict[str, int] = dict(models or {"text-embedding-3-small": 1536})
        self.fail_status: int | None = None
        self.zero_choices = False
        self.reply: str | None = None
        self.delay = 0.0
        self.chunk_delay = 0.0
        self.chat_models: list[str] = ["meta/llama-3.1-8b", "moonshot/kimi-k2"]
        self.requests: list[dict[str, Any]] = []
        self.auth: list[str | None] = []
        self.server: RunningServer | None = None

    def reset(self) -> None:
        """Back to the behaviours of a new fake (models and key kept), for reuse across tests."""
        server = self.server
        self.__init__(self.key, self.models)  # type: ignore[misc]
        self.server = server

    @property
    def url(self) -> str:
        """Base URL of the running server (without `/v1`)."""
        assert self.server is not None, "the fake is not running"
        return self.server.url

    def app(self) -> Starlette:
        """The ASGI app."""
        return Starlette(
            routes=[
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
                Route("/v1/models", self.list_models, methods=["GET"]),
            ]
        )

    def authorized(self, request: Request) -> bool:
        """Whether the request carries the expected bearer key (always, when no key is set)."""
        return self.key is None or request.headers.get("authorization") == f"Bearer {self.key}"

    async def embeddings(self, request: Request) -> JSONResponse:
        """OpenAI's `/v1/embeddings`."""
        if not self.authorized(request):
            return _error(401, "Incorrect API key provided.", "invalid_request_error")
        body = await request.json()
        self.requests.append(body)
        if self.fail_status == 429:
            resp = _error(429, "Rate limit reached for requests", "requests")
            resp.headers["Retry-After"] = "7"
            return resp
        if self.fail_status is not None:
            message = "The server had an error processing your request."
            return _error(self.fail_status, message, "server_error")
        model = str(body.get("model", ""))
        dim = self.models.get(model)
        if dim is None:
            return _error(404, f"The model `{model}` does not exist", "invalid_request_error")
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        data = [
            {"object": "embedding", "index": i, "embedding": fake_vector(str(t), dim)}
            for i, t in enumerate(texts)
        ]
        data.reverse()
        usage = {"prompt_tokens": len(texts), "total_tokens": len(texts)}
        return JSONResponse({"object": "list", "data": data, "model": model, "usage": usage})

    async def list_models(self, request: Request) -> JSONResponse:
        """OpenAI's `/v1/models`."""
        self.auth.append(request.headers.get("authorization"))
        if not self.authorized(request):
            return _error(401, "Incorrect API key provided.", "invalid_request_error")
        if self.fail_status is not None:
            return _error(self.fail_status, "The server had an error.", "server_error")
        ids = [*self.chat_models, *self.models]
        data = [{"id": i, "object": "model", "created": 1700000000, "owned_by": "fake"} for i in ids]
        return JSONResponse({"object": "list", "data": data})

    async def chat_completions(self, request: Request) -> Response:
        """OpenAI's `/v1/chat/completions`, as JSON or as server-sent events."""
        self.auth.append(request.headers.get("authorization"))
        if not self.authorized(request):
            return _error(401, "Incorrect API key provided.", "invalid_request_error")
        body = await request.json()
        self.requests.append(body)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_status == 429:
            resp = _error(429, "Rate limit reached for requests", "requests")
            resp.headers["Retry-After"] = "7"
            return resp
        if self.fail_status is not None:
            return _error(
                self.fail_status, "The server had an error processing your request.", "server_error"
            )
        model = str(body.get("model", ""))
        messages = body.get("messages") or []
        response_format = body.get("response_format") or {}
        fmt = "json" if response_format.get("type") in ("json_object", "json_schema") else None
        content = reply_for(messages, fmt, self.reply)
        call = _tool_call(body.get("tools"), messages)
        if call is not None:
            content = ""
        elif messages and messages[-1].get("role") == "tool":
            content = f"tool said: {messages[-1].get('content', '')}"
        usage = {
            "prompt_tokens": prompt_tokens(messages),
            "completion_tokens": count_tokens(content),
            "total_tokens": prompt_tokens(messages) + count_tokens(content),
        }
        base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": model}
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = self._sse(base, content, usage if include_usage else None, call)
            return StreamingResponse(events, media_type="text/event-stream")
        choices = (
            []
            if self.zero_choices
            else [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content or None, "tool_calls": [call]}
                    if call
                    else {"role": "assistant", "content": content},
                    "finish_reason": "tool_calls" if call else "stop",
                }
            ]
        )
        return JSONResponse({**base, "object": "chat.completion", "choices": choices, "usage": usage})

    async def _sse(
        self, base: dict[str, Any], content: str, usage: dict[str, int] | None, call: dict[str, Any] | None
    ) -> AsyncIterator[bytes]:
        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            chunk = {**base, "object": "chat.completion.chunk", "choices": choices, **extra}
            return b"data: " + json.dumps(chunk).encode() + b"\n\n"

        if not self.zero_choices and call is not None:
            head = {"index": 0, "id": call["id"], "type": "function"}
            head["function"] = {"name": call["function"]["name"], "arguments": ""}
            yield event(
                [{"index": 0, "delta": {"role": "assistant", "tool_calls": [head]}, "finish_reason": None}]
            )
            arguments = call["function"]["arguments"]
            for part in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :]):
                delta = {"tool_calls": [{"index": 0, "function": {"arguments": part}}]}
                yield event([{"index": 0, "delta": delta, "finish_reason": None}])
            yield event([{"index": 0, "delta": {}, "finish_reason": "tool_calls"}])
        elif not self.zero_choices:
            yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
            for i, piece in enumerate(pieces(content)):
                if i and self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
                yield event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
            yield event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if usage is not None:
            yield event([], usage=usage)
        yield b"data: [DONE]\n\n"


def _tool_call(tools: Any, messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """An OpenAI-shaped call of the first tool, unless a tool just answered."""
    if not isinstance(tools, list) or not tools or (messages and messages[-1].get("role") == "tool"):
        return None
    last = next((str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), "")
    name = tools[0].get("function", {}).get("name", "")
    arguments = json.dumps({"query": last})
    return {"id": "call_fake1", "type": "function", "function": {"name": name, "arguments": arguments}}


@contextmanager
def run_fake_openai(key: str | None = None, models: dict[str, int] | None = None) -> Iterator[FakeOpenAI]:
    """Serve a FakeOpenAI on 127.0.0.1 for the duration of the block."""
    fake = FakeOpenAI(key, models)
    with serve_in_thread(fake.app()) as server:
        fake.server = server
        yield fake
