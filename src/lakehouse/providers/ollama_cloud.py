"""Ollama Cloud through its native `POST /api/generate`, with Bearer auth.

`/api/generate` takes one prompt, so the conversation is flattened into
labelled turns ("System: ...", "User: ...", "Assistant: ...") ending with an
open "Assistant:" turn for the model to complete. A conversation a flat prompt
cannot carry (tools, tool calls or results, images) goes to `POST /api/chat`
instead, translated as for local Ollama.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from lakehouse.providers.ollama import (
    ollama_body,
    ollama_completion,
    ollama_messages,
    ollama_post,
    ollama_stream,
    ollama_tags,
)
from lakehouse.providers.transport import Upstream
from lakehouse.providers.types import ChatRequest, Chunk, Completion, Message

if TYPE_CHECKING:
    import aiohttp

START_HINT = "check [chatd] ollama_cloud_url and that this host can reach it"


def flatten_messages(messages: Sequence[Message]) -> str:
    """The conversation as one prompt: a labelled paragraph per turn, then an open assistant turn."""
    turns = [f"{m.role.strip().capitalize()}: {m.content.strip()}" for m in messages]
    return "\n\n".join([*turns, "Assistant:"])


def _response_text(answer: Any) -> Any:
    return answer.get("response")


def _message_text(answer: Any) -> Any:
    message = answer.get("message")
    return message.get("content") if isinstance(message, dict) else None


def needs_chat(request: ChatRequest) -> bool:
    """Whether the request holds what a flat prompt cannot carry: tools, tool turns or images."""
    return bool(request.tools) or any(m.images or m.tool_calls or m.role == "tool" for m in request.messages)


class OllamaCloudProvider:
    """Ollama's hosted models at ollama.com."""

    kind = "ollama_cloud"

    def __init__(self, url: str, key: str, name: str = "ollama_cloud") -> None:
        self.name = name
        self.upstream = Upstream(name, url.rstrip("/"), START_HINT, secret=key)
        self._headers = {"Authorization": f"Bearer {key}"}

    def __repr__(self) -> str:
        return f"OllamaCloudProvider(url={self.upstream.url!r})"

    def _call(self, request: ChatRequest, stream: bool) -> tuple[str, dict[str, Any], Callable[[Any], Any]]:
        """The path, body and text finder of a call: `/api/chat` when needed, else `/api/generate`."""
        body = ollama_body(request, stream)
        if needs_chat(request):
            body["messages"] = ollama_messages(request.messages)
            return "/api/chat", body, _message_text
        body["prompt"] = flatten_messages(request.messages)
        return "/api/generate", body, _response_text

    async def chat(self, http: aiohttp.ClientSession, request: ChatRequest) -> Completion:
        """The whole answer."""
        path, body, text_of = self._call(request, False)
        answer = await ollama_post(self.upstream, http, path, body, self._headers)
        return ollama_completion(self.upstream, answer, text_of)

    async def stream(self, http: aiohttp.ClientSession, request: ChatRequest) -> AsyncIterator[Chunk]:
        """The answer as Ollama Cloud streams it."""
        path, body, text_of = self._call(request, True)
        async for chunk in ollama_stream(self.upstream, http, path, body, self._headers, text_of):
            yield chunk

    async def models(self, http: aiohttp.ClientSession) -> list[str]:
        """Ollama Cloud's tags as routed: `ollama_cloud/<m>`."""
        return [f"ollama_cloud/{n}" for n in await ollama_tags(self.upstream, http, self._headers)]
