"""A fake Ollama: a real HTTP server speaking the parts of Ollama's API the lakehouse uses.

    POST /api/embed   {"model", "input": str | [str]} -> {"model", "embeddings": [[...]]}

Its behaviour is steered through `FakeOllama`'s attributes: `models` (name ->
dimension of its vectors), `delay` (seconds before answering), `fail_status`
(answer every request with this status and an Ollama error body). Each request
body is recorded in `requests`; `max_in_flight` is the most requests seen at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

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
        self.delay = 0.0
        self.fail_status: int | None = None
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.server: RunningServer | None = None

    @property
    def url(self) -> str:
        """Base URL of the running server."""
        assert self.server is not None, "the fake is not running"
        return self.server.url

    def app(self) -> Starlette:
        """The ASGI app."""
        return Starlette(routes=[Route("/api/embed", self.embed, methods=["POST"])])

    async def embed(self, request: Request) -> JSONResponse:
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


@contextmanager
def run_fake_ollama(models: dict[str, int] | None = None) -> Iterator[FakeOllama]:
    """Serve a FakeOllama on 127.0.0.1 for the duration of the block."""
    fake = FakeOllama(models)
    with serve_in_thread(fake.app()) as server:
        fake.server = server
        yield fake
