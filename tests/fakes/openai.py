"""A fake OpenAI-compatible server: a real HTTP server on 127.0.0.1.

    POST /v1/embeddings        {"model", "input": [str]}
                               -> {"object": "list", "data": [{"index", "embedding"}]}
    POST /v1/chat/completions  {"model", "messages", "stream"?, "response_format"?, ...}
                               -> {"choices": [{"message", "finish_reason"}], "usage"}; SSE when streaming

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
        fmt = "json" if response_format.get("type") == "json_object" else None
        content = reply_for(messages, fmt, self.reply)
        usage = {
            "prompt_tokens": prompt_tokens(messages),
            "completion_tokens": count_tokens(content),
            "total_tokens": prompt_tokens(messages) + count_tokens(content),
        }
        base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": model}
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            events = self._sse(base, content, usage if include_usage else None)
            return StreamingResponse(events, media_type="text/event-stream")
        choices = (
            []
            if self.zero_choices
            else [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ]
        )
        return JSONResponse({**base, "object": "chat.completion", "choices": choices, "usage": usage})

    async def _sse(
        self, base: dict[str, Any], content: str, usage: dict[str, int] | None
    ) -> AsyncIterator[bytes]:
        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            chunk = {**base, "object": "chat.completion.chunk", "choices": choices, **extra}
            return b"data: " + json.dumps(chunk).encode() + b"\n\n"

        if not self.zero_choices:
            yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
            for i, piece in enumerate(pieces(content)):
                if i and self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
                yield event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
            yield event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if usage is not None:
            yield event([], usage=usage)
        yield b"data: [DONE]\n\n"


@contextmanager
def run_fake_openai(key: str | None = None, models: dict[str, int] | None = None) -> Iterator[FakeOpenAI]:
    """Serve a FakeOpenAI on 127.0.0.1 for the duration of the block."""
    fake = FakeOpenAI(key, models)
    with serve_in_thread(fake.app()) as server:
        fake.server = server
        yield fake
