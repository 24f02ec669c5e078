"""The chat router: the registry of usable providers and dispatch by model name.

A model name (or a `[models]` tier name) resolves through
`lakehouse.providers.routing.resolve` to a provider and the upstream model
name. A provider is registered only when usable: local Ollama when
`[chatd] ollama_url` is set; the others when their key resolves (the
environment variable named in `[chatd]`, else the `.env` file named there).
A name that routes to an unregistered provider is `ProviderNotRegistered`,
never a silent fall-through to the default.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from lakehouse.config import ChatdConfig, Settings
from lakehouse.errors import LakehouseError, ProviderNotRegistered
from lakehouse.providers.keys import resolve_key
from lakehouse.providers.ollama import OllamaProvider
from lakehouse.providers.ollama_cloud import OllamaCloudProvider
from lakehouse.providers.openai_compat import OpenAICompatProvider
from lakehouse.providers.routing import DEFAULT_PROVIDER, Route, resolve
from lakehouse.providers.transport import LazySession
from lakehouse.providers.types import ChatProvider, ChatRequest, ChatResponse, Chunk, ToolCall

if TYPE_CHECKING:
    import aiohttp

__all__ = ["ChatRequest", "ChatResponse", "ChatRouter", "Chunk", "build_providers"]

log = logging.getLogger("lakehouse.chat")

# Providers chat can reach; `openai/` and `local/` route only embeddings.
CHAT_PROVIDERS = ("ollama", "ollama_cloud", "openrouter", "opencode", "kimi")
OPENAI_COMPAT = ("openrouter", "opencode", "kimi")


def build_providers(config: ChatdConfig, environ: Mapping[str, str] | None = None) -> dict[str, ChatProvider]:
    """The usable providers by name, in the contract's order."""
    providers: dict[str, ChatProvider] = {}
    if config.ollama_url.strip():
        providers["ollama"] = OllamaProvider(config.ollama_url)
    key = resolve_key(config.ollama_cloud_key_env, config.ollama_cloud_key_file, environ)
    if key and config.ollama_cloud_url.strip():
        providers["ollama_cloud"] = OllamaCloudProvider(config.ollama_cloud_url, key)
    for name in OPENAI_COMPAT:
        url: str = getattr(config, f"{name}_url")
        key = resolve_key(getattr(config, f"{name}_key_env"), getattr(config, f"{name}_key_file"), environ)
        if key and url.strip():
            providers[name] = OpenAICompatProvider(name, url, key)
    return providers


class ChatRouter:
    """Resolves model names to registered providers and calls them over one pooled HTTP client."""

    def __init__(self, settings: Settings, environ: Mapping[str, str] | None = None) -> None:
        self.providers = build_providers(settings.chatd, environ)
        self.tiers = dict(settings.models)
        self.timeout = settings.chatd.timeout_secs
        self._http = LazySession(self.timeout, connect=min(self.timeout, 10.0))

    async def http(self) -> aiohttp.ClientSession:
        """The pooled session every provider call goes through, made on first use (in the loop).

        aiohttp is imported off the loop first if a start has not loaded it yet.
        """
        return await self._http.get()

    def listing(self) -> dict[str, Any]:
        """The contract's `/v1/chat/providers` body: the registered providers, never a key."""
        return {
            "default": DEFAULT_PROVIDER,
            "providers": [{"name": p.name, "kind": p.kind} for p in self.providers.values()],
        }

    def route(self, model: str) -> tuple[ChatProvider, Route]:
        """The registered provider for a model (or tier) name and the model sent upstream."""
        route = resolve(model, self.tiers, CHAT_PROVIDERS)
        provider = self.providers.get(route.provider)
        if provider is None:
            raise ProviderNotRegistered(
                f"model {model!r} routes to provider {route.provider!r}, which is not registered; "
                + _how_to_register(route.provider),
                provider=route.provider,
                registered=list(self.providers),
            )
        return provider, route

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """Send a chat to the provider its model routes to and return the whole answer."""
        request.check()
        provider, route = self.route(request.model)
        started = time.perf_counter()
        try:
            done = await provider.chat(await self.http(), dataclasses.replace(request, model=route.model))
        except LakehouseError as exc:
            log.info("chat %s via %s failed: %s", request.model, provider.name, exc.code)
            raise
        latency_ms = round((time.perf_counter() - started) * 1000, 2)
        log.info(
            "chat %s via %s: %d+%d tokens in %.1fms",
            request.model,
            provider.name,
            done.input_tokens,
            done.output_tokens,
            latency_ms,
        )
        return ChatResponse(
            model=request.model,
            provider=provider.name,
            content=done.content,
            done_reason=done.done_reason,
            input_tokens=done.input_tokens,
            output_tokens=done.output_tokens,
            latency_ms=latency_ms,
            upstream_model=route.model,
            tool_calls=done.tool_calls,
        )

    def stream(self, request: ChatRequest) -> ChatStream:
        """Start a streamed chat; routing errors raise here, upstream errors on the first `next()`."""
        request.check()
        provider, route = self.route(request.model)
        chunks = self._streamed(provider, dataclasses.replace(request, model=route.model))
        return ChatStream(request.model, provider.name, route.model, chunks)

    async def _streamed(self, provider: ChatProvider, request: ChatRequest) -> AsyncIterator[Chunk]:
        # The provider's stream, opened on the first `next()` (the session made then), closed with this one.
        chunks = provider.stream(await self.http(), request)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            closer = getattr(chunks, "aclose", None)
            if closer is not None:
                await closer()

    async def close(self) -> None:
        """Close the pooled HTTP session."""
        await self._http.close()


class ChatStream:
    """A streamed answer: async-iterate its Chunks; `response()` summarises it once done."""

    def __init__(self, model: str, provider: str, upstream_model: str, chunks: AsyncIterator[Chunk]) -> None:
        self.model = model
        self.provider = provider
        self.upstream_model = upstream_model
        self._chunks = chunks
        self._started = time.perf_counter()
        self._parts: list[str] = []
        self._calls: dict[int, ToolCall] = {}
        self._last: Chunk | None = None

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> Chunk:
        chunk = await self._chunks.__anext__()
        self._parts.append(chunk.content)
        for delta in chunk.tool_calls:
            _merge_call(self._calls, delta)
        if chunk.done:
            self._last = chunk
        return chunk

    async def aclose(self) -> None:
        """Stop reading from the upstream and release its connection."""
        closer = getattr(self._chunks, "aclose", None)
        if closer is not None:
            await closer()

    def response(self) -> ChatResponse:
        """The whole answer as `/v1/chat` would have given it (after the closing chunk)."""
        last = self._last or Chunk(done_reason="incomplete")
        return ChatResponse(
            model=self.model,
            provider=self.provider,
            content="".join(self._parts),
            done_reason=last.done_reason or "incomplete",
            input_tokens=last.input_tokens or 0,
            output_tokens=last.output_tokens or 0,
            latency_ms=round((time.perf_counter() - self._started) * 1000, 2),
            upstream_model=self.upstream_model,
            tool_calls=tuple(self._calls[i] for i in sorted(self._calls)),
        )


def _merge_call(calls: dict[int, ToolCall], delta: ToolCall) -> None:
    """Fold one streamed tool-call delta into the whole calls, as OpenAI clients do."""
    index = int(delta.get("index") or 0)
    call = calls.setdefault(index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
    if delta.get("id"):
        call["id"] = str(delta["id"])
    function = delta.get("function")
    if isinstance(function, dict):
        if function.get("name"):
            call["function"]["name"] += str(function["name"])
        if function.get("arguments"):
            call["function"]["arguments"] += str(function["arguments"])


def _how_to_register(provider: str) -> str:
    if provider == "ollama":
        return "set [chatd] ollama_url"
    if provider in CHAT_PROVIDERS:
        return f"set its key in the variable named by [chatd] {provider}_key_env or in {provider}_key_file"
    return "chat cannot use this provider"
