"""Local Ollama through its native `POST /api/chat`.

Ollama streams unless told not to, so a whole answer asks `"stream": false`;
`think` defaults to false so that low-budget callers get a direct answer
rather than an empty one spent on reasoning.

OpenAI's shapes are translated both ways: `tools` go as they are (Ollama
takes OpenAI's function tools); an assistant's `tool_calls` go with their
arguments as objects; a `tool` message goes as `{"role": "tool", "content",
"tool_name"}` (the name found from the call it answers); `data:` image URLs go
as `images` (base64); a JSON schema goes as `format`. Ollama's tool calls come
back with their arguments as a JSON string and ids `call_<hex>`, and the
answer's done reason is then `tool_calls`. What Ollama cannot do (a forced
`tool_choice`, `parallel_tool_calls: false`, an image by URL) is
`UnsupportedParameter`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from lakehouse.errors import UnsupportedParameter
from lakehouse.providers.transport import JSON_HEADERS, Upstream, json_bytes
from lakehouse.providers.types import ChatRequest, Chunk, Completion, Message, ToolCall

if TYPE_CHECKING:
    import aiohttp

START_HINT = "start it with `ollama serve`, or point [chatd] ollama_url at a running Ollama"
# OpenAI sampling options and their names in Ollama's `options`.
OPTION_NAMES = {
    "top_p": "top_p",
    "stop": "stop",
    "seed": "seed",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
}
DATA_URL_PREFIX = "data:"


def ollama_body(request: ChatRequest, stream: bool) -> dict[str, Any]:
    """The options every Ollama endpoint shares: stream, think, format, tools and sampling options."""
    body: dict[str, Any] = {
        "model": request.model,
        "stream": stream,
        "think": bool(request.think),
    }
    if request.format is not None:
        body["format"] = request.format
    tools = ollama_tools(request)
    if tools:
        body["tools"] = tools
    options: dict[str, Any] = {}
    if request.max_tokens is not None:
        options["num_predict"] = request.max_tokens
    if request.temperature is not None:
        options["temperature"] = request.temperature
    for name, value in request.options.items():
        if name not in OPTION_NAMES:
            raise UnsupportedParameter(f"Ollama does not take {name!r}", param=name)
        options[OPTION_NAMES[name]] = [value] if name == "stop" and isinstance(value, str) else value
    if options:
        body["options"] = options
    return body


def ollama_tools(request: ChatRequest) -> list[dict[str, Any]]:
    """The tools sent to Ollama, after checking what it cannot honour about them."""
    if request.parallel_tool_calls is False:
        raise UnsupportedParameter(
            "Ollama cannot be held to one tool call at a time: drop 'parallel_tool_calls'",
            param="parallel_tool_calls",
        )
    choice = request.tool_choice
    if choice is None or choice == "auto":
        return list(request.tools)
    if choice == "none":
        return []
    raise UnsupportedParameter(
        'Ollama cannot be made to call a tool: \'tool_choice\' may only be "auto" or "none"',
        param="tool_choice",
    )


def ollama_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """The conversation in Ollama's `/api/chat` shape."""
    names: dict[str, str] = {}
    out: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        doc: dict[str, Any] = {"role": m.role, "content": m.content}
        if m.images:
            doc["images"] = [_image_data(i, url) for url in m.images]
        if m.tool_calls:
            doc["tool_calls"] = [_ollama_call(call, names) for call in m.tool_calls]
        if m.role == "tool":
            name = m.name or names.get(m.tool_call_id or "")
            if name:
                doc["tool_name"] = name
        out.append(doc)
    return out


def _image_data(index: int, url: str) -> str:
    """The base64 payload of a `data:` URL; any other URL cannot reach Ollama."""
    head, sep, data = url.partition(",")
    if not url.startswith(DATA_URL_PREFIX) or not sep or not head.endswith(";base64"):
        raise UnsupportedParameter(
            f"'messages.{index}': Ollama takes images only as base64 data: URLs, not links",
            param="image_url",
        )
    return data


def _ollama_call(call: ToolCall, names: dict[str, str]) -> dict[str, Any]:
    function = call.get("function") or {}
    name = str(function.get("name", ""))
    if call.get("id"):
        names[str(call["id"])] = name
    arguments: Any = function.get("arguments") or {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            arguments = {}
    return {"function": {"name": name, "arguments": arguments}}


def openai_calls(calls: Any, start: int = 0, with_index: bool = False) -> tuple[ToolCall, ...]:
    """Ollama's `message.tool_calls` in OpenAI's shape (arguments as a JSON string, fresh ids)."""
    if not isinstance(calls, list):
        return ()
    out: list[ToolCall] = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        arguments = function.get("arguments")
        text = arguments if isinstance(arguments, str) else json.dumps(arguments or {}, ensure_ascii=False)
        doc: ToolCall = {
            "id": str(call.get("id") or f"call_{uuid.uuid4().hex[:24]}"),
            "type": "function",
            "function": {"name": str(function.get("name", "")), "arguments": text},
        }
        if with_index:
            doc = {"index": start + len(out), **doc}
        out.append(doc)
    return tuple(out)


def ollama_completion(upstream: Upstream, answer: Any, text_of: Callable[[Any], Any]) -> Completion:
    """A Completion from an Ollama answer, whose text `text_of` finds; 502 when it has none."""
    text = text_of(answer) if isinstance(answer, dict) else None
    if not isinstance(text, str):
        raise upstream.unreadable(200, "an answer without content")
    calls = openai_calls(_message_calls(answer))
    reason, tokens_in, tokens_out = _closing(answer)
    return Completion(text, "tool_calls" if calls else reason, tokens_in, tokens_out, calls)


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
    """POST a streaming Ollama call and yield its NDJSON lines as Chunks (tool calls as deltas)."""
    data = json_bytes(body)
    calls_seen = 0
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
                text = text if isinstance(text, str) else ""
                calls = openai_calls(_message_calls(doc), calls_seen, with_index=True)
                calls_seen += len(calls)
                if doc.get("done"):
                    reason, tokens_in, tokens_out = _closing(doc)
                    reason = "tool_calls" if calls_seen else reason
                    yield Chunk(text, reason, tokens_in, tokens_out, calls)
                    return
                if text or calls:
                    yield Chunk(text, tool_calls=calls)
    raise upstream.unreadable(200, "a stream that ended before it was done")


async def ollama_tags(upstream: Upstream, http: aiohttp.ClientSession, headers: dict[str, str]) -> list[str]:
    """The model names Ollama's `GET /api/tags` lists."""
    answer = await upstream.get_json(http, "/api/tags", headers)
    models = answer.get("models") if isinstance(answer, dict) else None
    if not isinstance(models, list):
        raise upstream.unreadable(200, "a model list without `models`")
    names = (m.get("name") or m.get("model") for m in models if isinstance(m, dict))
    return [str(n) for n in names if n]


def _message_calls(answer: Any) -> Any:
    message = answer.get("message") if isinstance(answer, dict) else None
    return message.get("tool_calls") if isinstance(message, dict) else None


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
        body["messages"] = ollama_messages(request.messages)
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

    async def models(self, http: aiohttp.ClientSession) -> list[str]:
        """Ollama's tags as routed: bare names (`ollama/<m>` for one a bare name would send to the cloud)."""
        names = await ollama_tags(self.upstream, http, {})
        return [f"ollama/{n}" if n.endswith(":cloud") else n for n in names]
