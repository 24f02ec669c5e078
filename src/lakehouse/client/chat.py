"""`lakehouse.Client`'s models: embeddings, chat (whole or streamed), ask over the data, providers."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from lakehouse.client import models as m
from lakehouse.client.streams import sse_events
from lakehouse.client.transport import Transport
from lakehouse.errors import LakehouseError


class ModelsAPI(Transport):
    """Embedding, chat, ask and provider calls."""

    def embed(self, texts: Sequence[str], model: str | None = None) -> m.Embeddings:
        """One embedding vector per text."""
        body: dict[str, Any] = {"texts": list(texts)}
        if model is not None:
            body["model"] = model
        return self._model(m.Embeddings, "POST", "/v1/embed", json=body)

    def chat(self, model: str, messages: Sequence[Mapping[str, Any]], **opts: Any) -> m.ChatAnswer:
        """One chat turn (`opts`: `format`, `max_tokens`, `temperature`, `think`, ...)."""
        body = {"model": model, "messages": list(messages), **opts, "stream": False}
        return self._model(m.ChatAnswer, "POST", "/v1/chat", json=body)

    def chat_stream(
        self, model: str, messages: Sequence[Mapping[str, Any]], **opts: Any
    ) -> Iterator[dict[str, Any]]:
        """The answer's pieces as they come (`{"content"}`), then the whole answer with `"done": true`.

        An error after the answer started is raised as its typed error.
        """
        body = {"model": model, "messages": list(messages), **opts, "stream": True}
        response = self._send(self._http.build_request("POST", "/v1/chat", json=body), stream=True)
        try:
            for line in response.iter_lines():
                if not line.strip():
                    continue
                piece = json.loads(line)
                if isinstance(piece, dict) and "error" in piece:
                    raise LakehouseError.from_body(response.status_code, piece)
                yield piece
        finally:
            response.close()

    def ask(
        self,
        question: str,
        model: str,
        datasets: Sequence[str] | None = None,
        indexes: Sequence[str] | None = None,
        max_steps: int | None = None,
    ) -> m.AskAnswer:
        """`POST /v1/ask`: the model answers from the data (only `datasets` and `indexes` when named)."""
        body = _ask_body(question, model, datasets, indexes, max_steps, stream=False)
        return self._model(m.AskAnswer, "POST", "/v1/ask", json=body)

    def ask_stream(
        self,
        question: str,
        model: str,
        datasets: Sequence[str] | None = None,
        indexes: Sequence[str] | None = None,
        max_steps: int | None = None,
    ) -> Iterator[m.AskStep | m.AskAnswer]:
        """`POST /v1/ask` streamed: each step as the server runs it, then the whole answer.

        An `error` event (the provider failing after the first step) is raised as its typed error.
        """
        body = _ask_body(question, model, datasets, indexes, max_steps, stream=True)
        request = self._http.build_request(
            "POST", "/v1/ask", json=body, headers={"Accept": "text/event-stream"}
        )
        response = self._send(request, stream=True)
        try:
            for kind, data in sse_events(response.iter_lines()):
                if kind == "error":
                    raise LakehouseError.from_body(response.status_code, data)
                if kind == "step":
                    yield m.AskStep.model_validate(data)
                elif kind == "answer":
                    yield m.AskAnswer.model_validate(data)
        finally:
            response.close()

    def providers(self) -> m.Providers:
        """The registered chat providers (never a key)."""
        return self._model(m.Providers, "GET", "/v1/chat/providers")

    def models(self) -> list[m.ModelInfo]:
        """`GET /v1/models`: the tiers, default models and each provider's models."""
        return self._model(m.ModelList, "GET", "/v1/models").data


def _ask_body(
    question: str,
    model: str,
    datasets: Sequence[str] | None,
    indexes: Sequence[str] | None,
    max_steps: int | None,
    *,
    stream: bool,
) -> dict[str, Any]:
    body: dict[str, Any] = {"question": question, "model": model, "stream": stream}
    if datasets is not None:
        body["datasets"] = list(datasets)
    if indexes:
        body["indexes"] = list(indexes)
    if max_steps is not None:
        body["max_steps"] = max_steps
    return body
