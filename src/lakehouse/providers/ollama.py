"""Local Ollama through its native `POST /api/chat`.

Ollama streams unless told not to, so a whole answer asks `"stream": false`;
`think` defaults to false so that low-budget callers get a direct answer
rather than an empty one spent on reasoning.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp

from lakehouse.providers.transport import JSON_HEADERS, Upstream, json_bytes
from lakehouse.providers.types import ChatRequest, Chunk, Completion

START_HINT = "start it with `ollama serve`, or point [chatd] ollama_url at a running Ollama"


def ollama_body(request: ChatRequest, stream: bool) -> dict[str, Any]:
    """The options every Ollama endpoint shares: stream, think, format and sampling options."""
    body: dict[str, Any] = {
        "model": request.model,
        "stream": stream,
        "think": bool(request.think),
    }
    if request.format is not None:
        body["format"] = request.format
    options: dict[str, Any] = {}
    if request.max_tokens is not None:
        options["num_predict"] = request.max_tokens
    if request.temperature is not None:
        options["temperature"] = request.temperature
    if options:
        body["options"] = options
    return body


def ollama_completion(upstream: Upstream, answer: Any, text_of: Callable[[Any], Any]) -> Completion:
    """A Completion from an Ollama answer, whose text `text_of` finds; 502 when it has none."""
    text = text_of(answer) if isinstance(answer, dict) else None
    if not isinstance(text, str):
        raise upstream.unreadable(200, "an answer without content")
    return Completion(text, *_closing(answer))


def _closing(answer: dict[str, Any]) -> tuple[str, int, int]:
    """The done reason and the input and output token counts of a finished Ollama answer."""
    return (
        str(answer.get("done_reason") or "stop"),
        int(answer.get("prompt_eval_count") or 0),
        int(answer.get("eval_count") or 0),
    )


async def ollama_post(
    upstream: Upstream, http: aiohttp.ClientSession, path: str, body: dict[str, Any], headers: dict[str, str]
) -> Any:
    """POST a non-streaming Ollama call and return its parsed JSON."""
    return await upstream.post_json(http, path, body, headers)


async def ollama_stream(
    upstream: Upstream,
    http: aiohttp.ClientSession,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str],
    text_of: Callable[[Any], Any],
) -> AsyncIterator[Chunk]:
    """POST a streaming Ollama call and yield its NDJSON lines as Chunks."""
    data = json_bytes(body)
    with upstream.errors():
        async with http.post(upstream.url + path, data=data, headers={**JSON_HEADERS, **headers}) as response:
            await upstream.check(response)
            status = response.status
            async for line in response.content:
                if not line.strip():
                    continue
                doc = upstream.decode_line(line, status)
                if not isinstance(doc, dict):
                    raise upstream.unreadable(status, "a streamed chunk that is not an object")
                if doc.get("error"):
                    problem = upstream.scrub(str(doc["error"]))
                    raise upstream.unreadable(status, f"an error mid-stream: {problem}")
                text = text_of(doc)
                if doc.get("done"):
                    reason, tokens_in, tokens_out = _closing(doc)
                    yield Chunk(text if isinstance(text, str) else "", reason, tokens_in, tokens_out)
                    return
                if isinstance(text, str) and text:
                    yield Chunk(text)
    raise upstream.unreadable(200, "a stream that ended before it was done")


def _message_text(answer: Any) -> Any:
    message = answer.get("message")
    return message.get("content") if isinstance(message, dict) else None


class OllamaProvider:
    """A local (or self-hosted) Ollama server."""

    kind = "ollama"

    def __init__(self, url: str, name: str = "ollama") -> None:
        self.name = name
        self.upstream = Upstream(name, url.rstrip("/"), START_HINT)

    def _body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        body = ollama_body(request, stream)
        body["messages"] = [{"role": m.role, "content": m.content} for m in request.messages]
        return body

    async def chat(self, http: aiohttp.ClientSession, request: ChatRequest) -> Completion:
        """The whole answer from `/api/chat`."""
        answer = await ollama_post(self.upstream, http, "/api/chat", self._body(request, False), {})
        return ollama_completion(self.upstream, answer, _message_text)

    async def stream(self, http: aiohttp.ClientSession, request: ChatRequest) -> AsyncIterator[Chunk]:
        """The answer from `/api/chat` as Ollama streams it."""
        body = self._body(request, True)
        async for chunk in ollama_stream(self.upstream, http, "/api/chat", body, {}, _message_text):
            yield chunk
