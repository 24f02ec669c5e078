"""A fake Ollama: a real HTTP server speaking the parts of Ollama's API the lakehouse uses.

    POST /api/embed     {"model", "input": str | [str]} -> {"model", "embeddings": [[...]]}
    POST /api/chat      {"model", "messages", "stream"?, "think"?, "format"?, "options"?}
                        -> {"model", "message": {"role", "content"}, "done", "done_reason",
                            "prompt_eval_count", "eval_count"}; NDJSON chunks unless "stream": false
    POST /api/generate  {"model", "prompt", ...} -> {"model", "response", "done", ...} (Ollama Cloud)
    GET  /api/tags      -> {"models": [{"name", "model", ...}]}: the chat and embedding models

With `tools` in a chat whose last message is not a tool result, the answer is a
call of the first tool with arguments `{"query": <last user text>}` (streamed:
one chunk holding the call, then the closing one); after a tool result, the
answer is `tool said: <its content>`. `format` (a schema or "json") makes the
answer `{"echo": ...}`; images are recorded with the request like everything.

Its behaviour is steered through `FakeOllama`'s attributes: `models` (name ->
dimension of its vectors), `chat_models` (names /api/chat and /api/generate
know; others get Ollama's 404), `delay` (seconds before answering), `fail_status`
(answer every request with this status and an Ollama error body; 429 carries
`Retry-After: 7`), `reply` (fixed chat content instead of an echo), `chunk_delay`
(seconds between streamed chunks), `garbage` (answer chat with 200 and a body that
is not JSON), `embed_answer` (answer /api/embed with 200 and these `embeddings`,
however malformed), `key` (require `Authorization: Bearer <key>`, as Ollama Cloud does).
Each request body is recorded in `requests` (its path in `paths`, its
Authorization header in `auth`); `max_in_flight` is the most requests seen at once;
`streams_open` counts streamed answers still being written.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes.chat import count_tokens, pieces, prompt_tokens, reply_for
from tests.fakes.server import RunningServer, serve_in_thread


def fake_vector(text: str, dim: int) -> list[float]:
    """The deterministic unit vector the fakes return for `text`."""
    seed = hashlib.sha256(text.encode()).digest()
    raw = [(seed[i % len(seed)] + i) % 97 - 48.0 for i in range(dim)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [x / norm for x in raw]


class FakeOllama:
    """State and handlers of the fake Ollama server."""

    def __init__(self, models: dict[str, int] | None = None) -> None:
        self.models: dict[str, int] = dict(models or {"nomic-embed-text": 768})
        self.chat_models: set[str] = {"qwen3:4b", "llama3.2", "kimi-k2.6", "gpt-oss:120b"}
        self.delay = 0.0
        self.fail_status: int | None = None
        self.reply: str | None = None
        self.chunk_delay = 0.0
        self.garbage = False
        self.embed_answer: Any = None
        self.key: str | None = None
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.auth: list[str | None] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.streams_open = 0
        self.server: RunningServer | None = None

    def reset(self) -> None:
        """Back to the behaviours of a new fake (its embedding models kept), for reuse across tests.

        The counts of requests and streams still open are live state, not behaviour: an answer
        a previous test left streaming still ends (and counts down) later, so they are kept.
        """
        server, in_flight, streams_open = self.server, self.in_flight, self.streams_open
        self.__init__(self.models)  # type: ignore[misc]
        self.server, self.in_flight, self.streams_open = server, in_flight, streams_open

    @property
    def url(self) -> str:
        """Base URL of the running server."""
        assert self.server is not None, "the fake is not running"
        return self.server.url

    def app(self) -> Starlette:
        """The ASGI app."""
        return Starlette(
            routes=[
                Route("/api/embed", self.embed, methods=["POST"]),
                Route("/api/chat", self.chat, methods=["POST"]),
                Route("/api/generate", self.generate, methods=["POST"]),
                Route("/api/tags", self.tags, methods=["GET"]),
            ]
        )

    async def embed(self, request: Request) -> Response:
        """Ollama's `/api/embed`, including its error answers."""
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            body = await request.json()
            self.requests.append(body)
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.fail_status is not None:
                return JSONResponse({"error": "llama runner process has terminated"}, self.fail_status)
            if self.embed_answer is not None:
                # json.dumps, not JSONResponse: the answer may hold NaN or Infinity on purpose.
                text = json.dumps({"model": body.get("model"), "embeddings": self.embed_answer})
                return Response(text, media_type="application/json")
            model = str(body.get("model", ""))
            dim = self.models.get(model) or self.models.get(model.removesuffix(":latest"))
            if dim is None:
                return JSONResponse({"error": f'model "{model}" not found, try pulling it first'}, 404)
            texts = body.get("input")
            texts = [texts] if isinstance(texts, str) else texts
            if not isinstance(texts, list):
                return JSONResponse({"error": "invalid input type"}, 400)
            vectors = [fake_vector(str(t), dim) for t in texts]
            return JSONResponse({"model": model, "embeddings": vectors, "prompt_eval_count": len(texts)})
        finally:
            self.in_flight -= 1

    async def tags(self, request: Request) -> Response:
        """Ollama's `/api/tags`: every model it has."""
        self.paths.append(request.url.path)
        self.auth.append(request.headers.get("authorization"))
        if self.key is not None and request.headers.get("authorization") != f"Bearer {self.key}":
            return JSONResponse({"error": "unauthorized"}, 401)
        if self.fail_status is not None:
            return JSONResponse({"error": "llama runner process has terminated"}, self.fail_status)
        names = sorted(self.chat_models | set(self.models))
        return JSONResponse({"models": [{"name": n, "model": n, "size": 1} for n in names]})

    async def chat(self, request: Request) -> Response:
        """Ollama's `/api/chat`, streamed as NDJSON unless `"stream": false`."""
        return await self._answer(request, "message")

    async def generate(self, request: Request) -> Response:
        """Ollama's `/api/generate` (what Ollama Cloud's native API serves)."""
        return await self._answer(request, "response")

    async def _answer(self, request: Request, field: str) -> Response:
        body = await request.json()
        self.requests.append(body)
        self.paths.append(request.url.path)
        self.auth.append(request.headers.get("authorization"))
        if self.key is not None and request.headers.get("authorization") != f"Bearer {self.key}":
            return JSONResponse({"error": "unauthorized"}, 401)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_status is not None:
            headers = {"Retry-After": "7"} if self.fail_status == 429 else None
            return JSONResponse({"error": "llama runner process has terminated"}, self.fail_status, headers)
        model = str(body.get("model", ""))
        if model not in self.chat_models and model.removesuffix(":latest") not in self.chat_models:
            return JSONResponse({"error": f"model '{model}' not found"}, 404)
        if self.garbage:
            return Response("<html>upstream proxy error</html>", 200, media_type="text/html")
        if field == "message":
            messages = body.get("messages") or []
        else:
            messages = [{"role": "user", "content": str(body.get("prompt", ""))}]
        content = reply_for(messages, body.get("format"), self.reply)
        calls = tool_calls_for(body.get("tools"), messages) if field == "message" else []
        if calls:
            content = ""
        elif messages and messages[-1].get("role") == "tool":
            content = f"tool said: {messages[-1].get('content', '')}"
        final = {
            "model": model,
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": prompt_tokens(messages),
            "eval_count": count_tokens(content),
            "total_duration": 1000,
        }
        if body.get("stream") is False:
            piece = _piece(field, content)
            if calls:
                piece["tool_calls"] = calls
            return JSONResponse({**final, field: piece})
        chunks = self._ndjson(model, field, content, final, calls)
        return StreamingResponse(chunks, media_type="application/x-ndjson")

    async def _ndjson(
        self, model: str, field: str, content: str, final: dict[str, Any], calls: list[dict[str, Any]]
    ) -> AsyncIterator[bytes]:
        self.streams_open += 1
        try:
            if calls:
                chunk = {"model": model, field: {**_piece(field, ""), "tool_calls": calls}, "done": False}
                yield json.dumps(chunk).encode() + b"\n"
            for i, piece in enumerate(pieces(content) if content else []):
                if i and self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
                chunk = {"model": model, field: _piece(field, piece), "done": False}
                yield json.dumps(chunk).encode() + b"\n"
            yield json.dumps({**final, field: _piece(field, "")}).encode() + b"\n"
        finally:
            self.streams_open -= 1


def tool_calls_for(tools: Any, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ollama-shaped calls of the first tool (arguments an object), unless a tool just answered."""
    if not isinstance(tools, list) or not tools or (messages and messages[-1].get("role") == "tool"):
        return []
    name = tools[0].get("function", {}).get("name", "")
    last = next((str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), "")
    return [{"function": {"name": name, "arguments": {"query": last}}}]


def _piece(field: str, text: str) -> Any:
    return {"role": "assistant", "content": text} if field == "message" else text


@contextmanager
def run_fake_ollama(models: dict[str, int] | None = None) -> Iterator[FakeOllama]:
    """Serve a FakeOllama on 127.0.0.1 for the duration of the block."""
    fake = FakeOllama(models)
    with serve_in_thread(fake.app()) as server:
        fake.server = server
        yield fake
