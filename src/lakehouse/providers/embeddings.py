"""Text to vectors: model names routed like chat, batched, limited and checked.

    bare name, ollama/<m>   Ollama's POST /api/embed         ([embedd] ollama_url)
    openai/<m>              any OpenAI-compatible /embeddings ([embedd] openai_url + key)
    local/<m>               an in-process sentence-transformers model (lakehouse[local])

A request is split into batches of `[embedd] provider_batch` texts that run
concurrently, at most `[embedd] concurrency` at a time; the vectors come back
in the order of the texts.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from lakehouse.config import Settings
from lakehouse.errors import InvalidRequest, LakehouseError, ProviderNotRegistered, UpstreamError
from lakehouse.providers.keys import resolve_key
from lakehouse.providers.local import LocalProvider
from lakehouse.providers.routing import resolve
from lakehouse.providers.transport import (
    JSON_HEADERS,
    LazySession,
    Reply,
    Upstream,
    error_text,
    json_bytes,
)

if TYPE_CHECKING:
    import aiohttp

EMBEDDING_PROVIDERS = ("ollama", "openai", "local")


@dataclass
class EmbedResult:
    """Vectors for a list of texts, one per text, in order, all of length `dim`."""

    model: str
    dim: int
    vectors: list[list[float]]


class EmbedProvider(Protocol):
    """One provider's way of turning a batch of texts into vectors."""

    # True when the provider batches a whole request better itself (the local model
    # sorts texts by length before batching, which cuts padding).
    batches_internally: bool

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        """Vectors for `texts` (one per text, in order) from `model`."""
        ...

    async def close(self) -> None:
        """Release connections or models."""
        ...


def _vector_list(value: Any, count: int, provider: str) -> list[list[float]]:
    """`count` finite vectors of one length from an upstream answer, as lists of floats.

    Raises:
        UpstreamError: the wrong number of vectors, ragged or empty ones, or values that
            are not finite numbers.
    """
    if not isinstance(value, list) or len(value) != count:
        got = len(value) if isinstance(value, list) else type(value).__name__
        raise UpstreamError(f"{provider} returned {got} vectors for {count} texts")
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise UpstreamError(
            f"{provider} returned vectors that are not lists of numbers of one length"
        ) from None
    if array.ndim != 2 or array.shape[1] == 0:
        raise UpstreamError(f"{provider} returned vectors that are not lists of numbers of one length")
    if not np.isfinite(array).all():
        raise UpstreamError(f"{provider} returned vectors holding NaN or infinite values")
    vectors: list[list[float]] = array.tolist()
    return vectors


class HttpEmbeddings:
    """Shared plumbing of the HTTP providers: one pooled client, errors mapped by `transport`."""

    name = "provider"
    batches_internally = False

    def __init__(self, url: str, timeout: float, key: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.key = key
        self._client = LazySession(self.timeout, limit=100)
        self._headers = {**JSON_HEADERS, **({"Authorization": f"Bearer {self.key}"} if self.key else {})}

    async def client(self) -> aiohttp.ClientSession:
        """The pooled session, made on first use (in the running loop, aiohttp imported off it)."""
        return await self._client.get()

    def upstream(self, model: str) -> Upstream:
        """How errors describe this provider when asked for `model`."""
        return Upstream(self.name, self.url, secret=self.key)

    def status_error(self, model: str, response: Reply) -> LakehouseError:
        """The typed error for an upstream error status."""
        return self.upstream(model).status_error(response)

    async def post(self, path: str, payload: dict[str, Any], model: str) -> Any:
        """POST JSON and return the decoded answer, mapping failures to typed errors.

        Raises:
            ProviderUnavailable: the provider cannot be reached.
            UpstreamTimeout: it did not answer within `timeout`.
            RateLimited: it answered 429.
            UpstreamError: any other error status, or an answer that is not JSON.
        """
        upstream = self.upstream(model)
        response = await upstream.post(await self.client(), path, json_bytes(payload), self._headers)
        if response.status >= 400:
            raise self.status_error(model, response)
        return upstream.json(response)

    async def close(self) -> None:
        """Close the pooled client."""
        await self._client.close()


class OllamaEmbeddings(HttpEmbeddings):
    """Ollama's `POST /api/embed`: `{"model", "input": [...]}` -> `{"embeddings": [...]}`."""

    name = "Ollama"

    def upstream(self, model: str) -> Upstream:
        """Say how to start Ollama and fetch the model."""
        hint = f"start it with `ollama serve` and fetch the model with `ollama pull {model}`"
        return Upstream(self.name, self.url, start_hint=hint)

    def status_error(self, model: str, response: Reply) -> LakehouseError:
        """Name `ollama pull` when Ollama lacks the model."""
        text = error_text(response)
        if response.status == 404 and "not found" in text:
            return UpstreamError(
                f"Ollama has no model {model!r}; fetch it with `ollama pull {model}` ({text[:300]})",
                upstream_status=404,
            )
        return super().status_error(model, response)

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        """Vectors for `texts` from an Ollama model."""
        body = await self.post("/api/embed", {"model": model, "input": texts}, model)
        embeddings = body.get("embeddings") if isinstance(body, dict) else None
        return _vector_list(embeddings, len(texts), self.name)


class OpenAIEmbeddings(HttpEmbeddings):
    """Any OpenAI-compatible `POST <base>/embeddings` server."""

    name = "the OpenAI-compatible server"

    async def embed(self, model: str, texts: list[str]) -> list[list[float]]:
        """Vectors for `texts`, put back in input order by each item's `index`."""
        payload = {"model": model, "input": texts, "encoding_format": "float"}
        body = await self.post("/embeddings", payload, model)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not all(isinstance(item, dict) for item in data):
            raise UpstreamError(f"{self.name} answered without a `data` list of embeddings")
        try:
            ordered = sorted(data, key=lambda item: int(item.get("index", 0)))
        except (TypeError, ValueError):
            raise UpstreamError(f"{self.name} answered with a non-numeric embedding index") from None
        return _vector_list([item.get("embedding") for item in ordered], len(texts), self.name)


class Embedder:
    """Routes embedding requests to providers, enforcing the `[embedd]` limits."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.config = settings.embedd
        self._providers: dict[str, EmbedProvider] = {}

    def provider(self, name: str) -> EmbedProvider:
        """The provider called `name`, built on first use.

        Raises:
            InvalidRequest: the provider offers no embeddings.
            ProviderNotRegistered: `openai` without `[embedd] openai_url`.
        """
        if name not in self._providers:
            self._providers[name] = self._build(name)
        return self._providers[name]

    def _build(self, name: str) -> EmbedProvider:
        timeout = self.config.timeout_secs
        if name == "ollama":
            return OllamaEmbeddings(self.config.ollama_url, timeout)
        if name == "local":
            return LocalProvider(batch_size=self.config.provider_batch, threads=self.config.local_threads)
        if name == "openai":
            if not self.config.openai_url:
                raise ProviderNotRegistered(
                    "openai/<model> needs an OpenAI-compatible server: set [embedd] openai_url "
                    "(and its key in the variable named by [embedd] openai_key_env)"
                )
            key = resolve_key(self.config.openai_key_env, self.config.openai_key_file)
            return OpenAIEmbeddings(self.config.openai_url, timeout, key)
        offered = ", ".join(f"{p}/<model>" for p in EMBEDDING_PROVIDERS)
        raise InvalidRequest(
            f"embeddings are not offered through {name}; use {offered} (a bare name is Ollama)",
            provider=name,
        )

    def check(self, texts: list[str], field: str = "texts") -> None:
        """Reject an empty list, empty texts, and anything over the configured limits.

        `field` is the request field the texts came in, for the messages.

        Raises:
            InvalidRequest: with the offending index and the limit where one applies.
        """
        if not texts:
            raise InvalidRequest(f"'{field}' must hold at least one text")
        if len(texts) > self.config.max_texts:
            raise InvalidRequest(
                f"'{field}' holds {len(texts)} texts, more than the limit of {self.config.max_texts}",
                limit=self.config.max_texts,
            )
        for index, text in enumerate(texts):
            if not text:
                raise InvalidRequest(f"{field}[{index}] is empty", index=index)
            if len(text) > self.config.max_text_chars:
                raise InvalidRequest(
                    f"{field}[{index}] is {len(text)} characters long, "
                    f"more than the limit of {self.config.max_text_chars}",
                    index=index,
                    limit=self.config.max_text_chars,
                )

    async def embed(self, texts: list[str], model: str | None = None, field: str = "texts") -> EmbedResult:
        """Vectors for `texts` from `model` (default `[embedd] default_model`), in order.

        Raises:
            InvalidRequest: empty or over-limit input, or a provider without embeddings.
            ProviderNotRegistered, ProviderUnavailable, UpstreamError, UpstreamTimeout,
            RateLimited: from the provider.
        """
        name = self.config.default_model if model is None else model
        if not name.strip():
            raise InvalidRequest("'model' must not be empty")
        self.check(texts, field)
        route = resolve(name, self.settings.models)
        provider = self.provider(route.provider)
        size = len(texts) if provider.batches_internally else self.config.provider_batch
        batches = [texts[i : i + size] for i in range(0, len(texts), size)]
        vectors = await self._run(provider, route.model, batches)
        dims = {len(v) for v in vectors}
        if len(dims) != 1:
            raise UpstreamError(f"{route.provider} returned vectors of different lengths: {sorted(dims)}")
        return EmbedResult(model=name, dim=dims.pop(), vectors=vectors)

    async def _run(self, provider: EmbedProvider, model: str, batches: list[list[str]]) -> list[list[float]]:
        """Embed every batch, at most `concurrency` at once; the first failure cancels the rest."""
        gate = asyncio.Semaphore(self.config.concurrency)

        async def one(batch: list[str]) -> list[list[float]]:
            async with gate:
                return await provider.embed(model, batch)

        if len(batches) == 1:
            return await provider.embed(model, batches[0])
        tasks = [asyncio.ensure_future(one(batch)) for batch in batches]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return [vector for batch in results for vector in batch]

    async def close(self) -> None:
        """Close every provider built so far."""
        for provider in self._providers.values():
            await provider.close()
        self._providers.clear()
