"""A fake OpenAI-compatible server: a real HTTP server on 127.0.0.1.

    POST /v1/embeddings  {"model", "input": [str]} -> {"object": "list", "data": [{"index", "embedding"}]}

When `key` is set, requests without `Authorization: Bearer <key>` get 401.
The `data` items come back in reverse order, as the API allows, so clients
must order them by `index`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.ollama import fake_vector
from tests.fakes.server import RunningServer, serve_in_thread


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "code": None}}, status)


class FakeOpenAI:
    """State and handlers of the fake OpenAI-compatible server."""

    def __init__(self, key: str | None = None, models: dict[str, int] | None = None) -> None:
        self.key = key
        self.models: dict[str, int] = dict(models or {"text-embedding-3-small": 1536})
        self.fail_status: int | None = None
        self.requests: list[dict[str, Any]] = []
        self.server: RunningServer | None = None

    @property
    def url(self) -> str:
        """Base URL of the running server (without `/v1`)."""
        assert self.server is not None, "the fake is not running"
        return self.server.url

    def app(self) -> Starlette:
        """The ASGI app."""
        return Starlette(routes=[Route("/v1/embeddings", self.embeddings, methods=["POST"])])

    def authorized(self, request: Request) -> bool:
        """Whether the request carries the expected bearer key (always, when no key is set)."""
        return self.key is None or request.headers.get("authorization") == f"Bearer {self.key}"

    async def embeddings(self, request: Request) -> JSONResponse:
        """OpenAI's `/v1/embeddings`."""
        if not self.authorized(request):
            return _error(401, "Incorrect API key provided.", "invalid_request_error")
        body = await request.json()
        self.requests.append(body)
        if self.fail_status == 429:
            resp = _error(429, "Rate limit reached for requests", "requests")
            resp.headers["Retry-After"] = "7"
            return resp
        if self.fail_status is not None:
            message = "The server had an error processing your request."
            return _error(self.fail_status, message, "server_error")
        model = str(body.get("model", ""))
        dim = self.models.get(model)
        if dim is None:
            return _error(404, f"The model `{model}` does not exist", "invalid_request_error")
        texts = body.get("input")
        texts = [texts] if isinstance(texts, str) else texts
        data = [
            {"object": "embedding", "index": i, "embedding": fake_vector(str(t), dim)}
            for i, t in enumerate(texts)
        ]
        data.reverse()
        usage = {"prompt_tokens": len(texts), "total_tokens": len(texts)}
        return JSONResponse({"object": "list", "data": data, "model": model, "usage": usage})


@contextmanager
def run_fake_openai(key: str | None = None, models: dict[str, int] | None = None) -> Iterator[FakeOpenAI]:
    """Serve a FakeOpenAI on 127.0.0.1 for the duration of the block."""
    fake = FakeOpenAI(key, models)
    with serve_in_thread(fake.app()) as server:
        fake.server = server
        yield fake
