"""Talking to model providers over HTTP: httpx failures mapped onto the error table.

    connection refused / DNS failure     ProviderUnavailable  503 (with how to start it)
    past the timeout                     UpstreamTimeout      504
    upstream 429                         RateLimited          429 (Retry-After passed on)
    other upstream 4xx / 5xx             UpstreamError        502 (upstream_status)
    broken connection, unreadable JSON   UpstreamError        502

Shared by chat and embeddings. Messages name the provider and its URL, never
its key: any text that comes back from upstream is scrubbed of the key first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from lakehouse.errors import (
    LakehouseError,
    ProviderUnavailable,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)

MAX_MESSAGE_CHARS = 300


@dataclass(frozen=True)
class Upstream:
    """One provider endpoint as errors should describe it: name, base URL, how to start it."""

    name: str
    url: str
    start_hint: str = ""
    secret: str | None = field(default=None, repr=False)

    def scrub(self, text: str) -> str:
        """`text` without the key, cut to a readable length."""
        if self.secret:
            text = text.replace(self.secret, "***")
        text = " ".join(text.split())
        return text[:MAX_MESSAGE_CHARS]

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Turn httpx transport failures raised inside the block into typed errors."""
        try:
            yield
        except httpx.TimeoutException as exc:
            if isinstance(exc, httpx.ConnectTimeout):
                raise self.unavailable("did not accept a connection in time") from None
            raise UpstreamTimeout(f"{self.name} at {self.url} did not answer in time") from None
        except httpx.ConnectError as exc:
            raise self.unavailable(type(exc).__name__) from None
        except httpx.TransportError as exc:
            raise UpstreamError(
                f"{self.name} at {self.url} broke the connection: {type(exc).__name__}"
            ) from None

    def unavailable(self, why: str) -> ProviderUnavailable:
        """The 503 for a provider that cannot be reached, with how to start it."""
        hint = f"; {self.start_hint}" if self.start_hint else ""
        return ProviderUnavailable(f"cannot reach {self.name} at {self.url} ({why}){hint}")

    async def check(self, response: httpx.Response) -> None:
        """Raise the typed error for an upstream error status (reads a streamed body first)."""
        if response.status_code < 400:
            return
        await response.aread()
        raise self.status_error(response)

    def status_error(self, response: httpx.Response) -> LakehouseError:
        """The typed error for an upstream answer whose status is 4xx or 5xx (body already read)."""
        status = response.status_code
        detail = self.scrub(error_text(response))
        if status == 429:
            retry_after = response.headers.get("retry-after")
            headers = {"Retry-After": retry_after} if retry_after else None
            message = f"{self.name} is rate limiting requests"
            return RateLimited(
                f"{message}: {detail}" if detail else message,
                headers=headers,
                upstream_status=status,
                retry_after=retry_after,
            )
        message = f"{self.name} answered {status}"
        return UpstreamError(f"{message}: {detail}" if detail else message, upstream_status=status)

    def json(self, response: httpx.Response) -> Any:
        """The parsed JSON body of a successful answer, or a 502 when it is not JSON."""
        try:
            return response.json()
        except (ValueError, UnicodeDecodeError):
            raise self.unreadable(response.status_code, "a body that is not JSON") from None

    def unreadable(self, status: int, what: str) -> UpstreamError:
        """The 502 for an answer the client cannot make sense of."""
        return UpstreamError(f"{self.name} sent {what}", upstream_status=status)

    def decode_line(self, line: str, status: int = 200) -> Any:
        """One JSON document from a streamed line (NDJSON or an SSE `data:` payload)."""
        try:
            return json.loads(line)
        except ValueError:
            raise self.unreadable(status, "a streamed chunk that is not JSON") from None


def error_text(response: httpx.Response) -> str:
    """The message inside an upstream error body (Ollama's and OpenAI's shapes), else its text."""
    try:
        body = response.json()
    except (ValueError, UnicodeDecodeError):
        return response.text
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        err = err.get("message")
    return str(err if err is not None else body)
