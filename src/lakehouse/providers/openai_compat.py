"""One OpenAI Chat Completions client, shared by OpenRouter, OpenCode and Kimi For Coding.

`POST {base}/chat/completions` with Bearer auth. `format: "json"` becomes
`response_format: {"type": "json_object"}`. An answer without choices is an
upstream error, never an empty success. Streams are server-sent events ending
with `data: [DONE]`; usage is asked for with `stream_options.include_usage`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp

from lakehouse.providers.transport import JSON_HEADERS, Upstream, json_bytes
from lakehouse.providers.types import ChatRequest, Chunk, Completion

# The sentinel `_event` returns for `data: [DONE]`.
DONE: dict[str, Any] = {}

START_HINT = "check its base URL in [chatd] and that this host can reach it"


class OpenAICompatProvider:
    """An OpenAI-compatible Chat Completions endpoint (OpenRouter, OpenCode, Kimi, ...)."""

    kind = "openai_compat"

    def __init__(self, name: str, url: str, key: str) -> None:
        self.name = name
        self.upstream = Upstream(name, url.rstrip("/"), START_HINT, secret=key)
        self._headers = {"Authorization": f"Bearer {key}", **JSON_HEADERS}

    def __repr__(self) -> str:
        return f"OpenAICompatProvider(name={self.name!r}, url={self.upstream.url!r})"

    def _body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        if request.format == "json":
            body["response_format"] = {"type": "json_object"}
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        return body

    async def chat(self, http: aiohttp.ClientSession, request: ChatRequest) -> Completion:
        """The whole answer from `/chat/completions`."""
        body = self._body(request, False)
        answer = await self.upstream.post_json(http, "/chat/completions", body, self._headers)
        choice = _first_choice(answer)
        if choice is None:
            raise self.upstream.unreadable(200, "an answer with no choices")
        message = choice.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if content is not None and not isinstance(content, str):
            raise self.upstream.unreadable(200, "a message whose content is not text")
        tokens_in, tokens_out = _usage(answer)
        return Completion(content or "", str(choice.get("finish_reason") or "stop"), tokens_in, tokens_out)

    async def stream(self, http: aiohttp.ClientSession, request: ChatRequest) -> AsyncIterator[Chunk]:
        """The answer from `/chat/completions` as server-sent events, piece by piece."""
        url = self.upstream.url + "/chat/completions"
        body = json_bytes(self._body(request, True))
        reason: str | None = None
        usage: tuple[int, int] = (0, 0)
        with self.upstream.errors():
            async with http.post(url, data=body, headers=self._headers) as response:
                await self.upstream.check(response)
                status = response.status
                async for line in response.content:
                    event = self._event(line, status)
                    if event is None:
                        continue
                    if event is DONE:
                        break
                    if event.get("usage"):
                        usage = _usage(event)
                    choice = _first_choice(event)
                    if choice is None:
                        continue
                    delta = choice.get("delta")
                    text = delta.get("content") if isinstance(delta, dict) else None
                    if isinstance(text, str) and text:
                        yield Chunk(text)
                    if choice.get("finish_reason"):
                        reason = str(choice["finish_reason"])
        if reason is None:
            raise self.upstream.unreadable(200, "a stream with no choices")
        yield Chunk("", reason, *usage)

    def _event(self, line: bytes, status: int) -> dict[str, Any] | None:
        """The JSON object of one SSE line; None for lines without data, DONE at the end."""
        if not line.startswith(b"data:"):
            return None  # blank separators, comments (": keep-alive"), event names
        data = line[5:].strip()
        if data == b"[DONE]":
            return DONE
        event = self.upstream.decode_line(data, status)
        if not isinstance(event, dict):
            raise self.upstream.unreadable(status, "an event that is not an object")
        if event.get("error"):
            raise self.upstream.unreadable(
                status, f"an error mid-stream: {self.upstream.scrub(str(event['error']))}"
            )
        return event


def _first_choice(answer: Any) -> dict[str, Any] | None:
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    return choices[0]


def _usage(answer: dict[str, Any]) -> tuple[int, int]:
    usage = answer.get("usage")
    if not isinstance(usage, dict):
        return 0, 0
    return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
