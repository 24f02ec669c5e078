"""One OpenAI Chat Completions client, shared by OpenRouter, OpenCode and Kimi For Coding.

`POST {base}/chat/completions` with Bearer auth. `format: "json"` becomes
`response_format: {"type": "json_object"}`. An answer without choices is an
upstream error, never an empty success. Streams are server-sent events ending
with `data: [DONE]`; usage is asked for with `stream_options.include_usage`.

A request that came in through `/v1/chat/completions` carries the caller's
body (`request.openai`): it goes upstream as is, only `model` (the routed
name) and the stream settings replaced, so tools, tool messages, image parts
and response formats reach the provider unchanged. Tool calls come back as
they are, and streamed tool-call deltas are passed on piece by piece.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from lakehouse.providers.transport import JSON_HEADERS, Upstream, json_bytes
from lakehouse.providers.types import ChatRequest, Chunk, Completion, Message, ToolCall

if TYPE_CHECKING:
    import aiohttp

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
        if request.openai is not None:
            body: dict[str, Any] = {**request.openai, "model": request.model, "stream": stream}
            body.pop("stream_options", None)
            if stream:
                body["stream_options"] = {"include_usage": True}
            return body
        body = {
            "model": request.model,
            "messages": [openai_message(m) for m in request.messages],
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        if request.format == "json":
            body["response_format"] = {"type": "json_object"}
        elif isinstance(request.format, dict):
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": request.format},
            }
        if request.max_tokens is not None:
            body["max_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.tools:
            body["tools"] = list(request.tools)
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
        body.update(request.options)
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
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        tool_calls = tuple(c for c in calls if isinstance(c, dict)) if isinstance(calls, list) else ()
        tokens_in, tokens_out = _usage(answer)
        reason = str(choice.get("finish_reason") or ("tool_calls" if tool_calls else "stop"))
        return Completion(content or "", reason, tokens_in, tokens_out, tool_calls)

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
                    delta = delta if isinstance(delta, dict) else {}
                    text = delta.get("content")
                    text = text if isinstance(text, str) else ""
                    calls = _call_deltas(delta.get("tool_calls"))
                    if text or calls:
                        yield Chunk(text, tool_calls=calls)
                    if choice.get("finish_reason"):
                        reason = str(choice["finish_reason"])
        if reason is None:
            raise self.upstream.unreadable(200, "a stream with no choices")
        yield Chunk("", reason, *usage)

    async def models(self, http: aiohttp.ClientSession) -> list[str]:
        """The provider's `GET /models` ids as routed: `<provider>/<id>`."""
        answer = await self.upstream.get_json(http, "/models", self._headers)
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, list):
            raise self.upstream.unreadable(200, "a model list without `data`")
        return [f"{self.name}/{m['id']}" for m in data if isinstance(m, dict) and m.get("id")]

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


def openai_message(message: Message) -> dict[str, Any]:
    """A provider-neutral message in OpenAI's shape."""
    doc: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.images:
        parts: list[dict[str, Any]] = [{"type": "text", "text": message.content}] if message.content else []
        parts.extend({"type": "image_url", "image_url": {"url": url}} for url in message.images)
        doc["content"] = parts
    if message.tool_calls:
        doc["tool_calls"] = list(message.tool_calls)
    if message.tool_call_id is not None:
        doc["tool_call_id"] = message.tool_call_id
    if message.name is not None:
        doc["name"] = message.name
    return doc


def _call_deltas(calls: Any) -> tuple[ToolCall, ...]:
    if not isinstance(calls, list):
        return ()
    return tuple(c for c in calls if isinstance(c, dict))


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
