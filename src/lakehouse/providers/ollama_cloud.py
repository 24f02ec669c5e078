"""Ollama Cloud through its native `POST /api/generate`, with Bearer auth.

`/api/generate` takes one prompt, so the conversation is flattened into
labelled turns ("System: ...", "User: ...", "Assistant: ...") ending with an
open "Assistant:" turn for the model to complete.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp

from lakehouse.providers.ollama import ollama_body, ollama_completion, ollama_post, ollama_stream
from lakehouse.providers.transport import Upstream
from lakehouse.providers.types import ChatRequest, Chunk, Completion, Message

START_HINT = "check [chatd] ollama_cloud_url and that this host can reach it"


def flatten_messages(messages: Sequence[Message]) -> str:
    """The conversation as one prompt: a labelled paragraph per turn, then an open assistant turn."""
    turns = [f"{m.role.strip().capitalize()}: {m.content.strip()}" for m in messages]
    return "\n\n".join([*turns, "Assistant:"])


def _response_text(answer: Any) -> Any:
    return answer.get("response")


class OllamaCloudProvider:
    """Ollama's hosted models at ollama.com."""

    kind = "ollama_cloud"

    def __init__(self, url: str, key: str, name: str = "ollama_cloud") -> None:
        self.name = name
        self.upstream = Upstream(name, url.rstrip("/"), START_HINT, secret=key)
        self._headers = {"Authorization": f"Bearer {key}"}

    def __repr__(self) -> str:
        return f"OllamaCloudProvider(url={self.upstream.url!r})"

    def _body(self, request: ChatRequest, stream: bool) -> dict[str, Any]:
        body = ollama_body(request, stream)
        body["prompt"] = flatten_messages(request.messages)
        return body

    async def chat(self, http: aiohttp.ClientSession, request: ChatRequest) -> Completion:
        """The whole answer from `/api/generate`."""
        body = self._body(request, False)
        answer = await ollama_post(self.upstream, http, "/api/generate", body, self._headers)
        return ollama_completion(self.upstream, answer, _response_text)

    async def stream(self, http: aiohttp.ClientSession, request: ChatRequest) -> AsyncIterator[Chunk]:
        """The answer from `/api/generate` as Ollama Cloud streams it."""
        body = self._body(request, True)
        chunks = ollama_stream(self.upstream, http, "/api/generate", body, self._headers, _response_text)
        async for chunk in chunks:
            yield chunk
