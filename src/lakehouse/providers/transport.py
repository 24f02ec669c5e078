"""Talking to model providers over HTTP: aiohttp failures mapped onto the error table.

    connection refused / DNS failure     ProviderUnavailable  503 (with how to start it)
    past the timeout                     UpstreamTimeout      504
    upstream 429                         RateLimited          429 (Retry-After passed on)
    other upstream 4xx / 5xx             UpstreamError        502 (upstream_status)
    broken connection, unreadable JSON   UpstreamError        502

Shared by chat and embeddings, which each keep one pooled `aiohttp.ClientSession`
(`session()`, held by a `LazySession`): aiohttp measured about 0.7 ms less per call than httpx's async
client. Messages name the provider and its URL, never its key: any text that
comes back from upstream is scrubbed of the key first.

aiohttp is imported when the first session is made, not when the server
starts (it builds two SSL contexts at import, about 0.1 s): `lakehouse serve`
loads it on a worker thread once listening, and callers on the event loop
await `ready()` before `session()`, so a request never waits for the import
on the loop.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, quote_plus

from lakehouse.errors import (
    LakehouseError,
    ProviderUnavailable,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from lakehouse.lazy import LazyImport

if TYPE_CHECKING:
    import aiohttp

MAX_MESSAGE_CHARS = 300
# Longest streamed line (one NDJSON chunk or SSE event) read in one piece.
MAX_LINE_BYTES = 4 * 1024 * 1024


AIOHTTP = LazyImport("aiohttp")
load = AIOHTTP.load
ready = AIOHTTP.ready


def session(timeout: float, connect: float | None = None, limit: int = 256) -> aiohttp.ClientSession:
    """A pooled client session: `timeout` per read (as httpx's was), `connect` to open a connection.

    Made in the running loop; await `ready()` first there, or this imports aiohttp on the loop.
    """
    import aiohttp

    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=timeout if connect is None else connect, sock_read=timeout
        ),
        connector=aiohttp.TCPConnector(limit=limit),
        read_bufsize=MAX_LINE_BYTES // 2,
    )


class LazySession:
    """One pooled `session()`, made on first use in the running loop, and again once closed."""

    def __init__(self, timeout: float, connect: float | None = None, limit: int = 256) -> None:
        """Keep `session()`'s settings; nothing is made (or imported) until `get`."""
        self.timeout = timeout
        self.connect = connect
        self.limit = limit
        self._session: aiohttp.ClientSession | None = None

    async def get(self) -> aiohttp.ClientSession:
        """The session, made if missing or closed; aiohttp is imported off the loop first if need be."""
        if self._session is None or self._session.closed:
            await ready()
            # Another caller may have made it while this one waited for the import.
            if self._session is None or self._session.closed:
                self._session = session(self.timeout, connect=self.connect, limit=self.limit)
        return self._session

    async def close(self) -> None:
        """Close the session; the next `get` makes a new one.

        The session is let go before the close is awaited, so one that a `get`
        makes meanwhile is kept, not dropped unclosed.
        """
        closing, self._session = self._session, None
        if closing is not None:
            await closing.close()


@dataclass(frozen=True)
class Reply:
    """An upstream answer read whole: status, headers and body bytes."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    @property
    def text(self) -> str:
        """The body as text (undecodable bytes replaced)."""
        return self.body.decode("utf-8", errors="replace")

    @classmethod
    async def read(cls, response: aiohttp.ClientResponse) -> Reply:
        """Read a response's whole body."""
        return cls(response.status, response.headers, await response.read())


# An echoed `Authorization: <scheme> <value>` header, or a bare `Bearer <token>`.
_CREDENTIAL = re.compile(
    r"""(?ix)
    (authorization["']?\s*[:=]\s*["']?)(?:(?:bearer|basic|token)\s+)?[^\s"',;]+
    | \b(bearer\s+)[A-Za-z0-9\-._~+/=]+
    """
)


def secret_forms(secret: str) -> list[str]:
    """The ways a key may come back in upstream text: as is, URL-encoded, base64 (also as Basic auth)."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret)}
    for raw in (secret, f":{secret}", f"{secret}:"):
        encoded = base64.b64encode(raw.encode()).decode()
        forms.update(
            {encoded, encoded.rstrip("="), base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")}
        )
    # Longest first, so a form that contains another is replaced whole.
    return sorted((f for f in forms if len(f) >= 4), key=len, reverse=True)


def scrub_secret(text: str, secret: str | None) -> str:
    """`text` without `secret` in any of its `secret_forms` nor any credential header value, cut short."""
    if secret:
        for form in secret_forms(secret):
            text = text.replace(form, "***")
    text = _CREDENTIAL.sub(lambda m: (m.group(1) or m.group(2)) + "***", text)
    text = " ".join(text.split())
    return text[:MAX_MESSAGE_CHARS]


@dataclass(frozen=True)
class Upstream:
    """One provider endpoint as errors should describe it: name, base URL, how to start it."""

    name: str
    url: str
    start_hint: str = ""
    secret: str | None = field(default=None, repr=False)

    def scrub(self, text: str) -> str:
        """`text` without the key (as is, URL-encoded or base64) or any echoed credential, cut short."""
        return scrub_secret(text, self.secret)

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Turn aiohttp transport failures raised inside the block into typed errors."""
        import aiohttp  # loaded: the block's session was made with it

        try:
            yield
        except aiohttp.ConnectionTimeoutError:
            raise self.unavailable("did not accept a connection in time") from None
        except TimeoutError:  # aiohttp's ServerTimeoutError is one
            raise UpstreamTimeout(f"{self.name} at {self.url} did not answer in time") from None
        except aiohttp.ClientConnectorError as exc:
            raise self.unavailable(type(exc).__name__) from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                f"{self.name} at {self.url} broke the connection: {type(exc).__name__}"
            ) from None

    async def post(
        self, http: aiohttp.ClientSession, path: str, body: bytes, headers: Mapping[str, str]
    ) -> Reply:
        """POST a JSON body to `url + path` and read the whole answer (any status)."""
        with self.errors():
            async with http.post(self.url + path, data=body, headers=headers) as response:
                return await Reply.read(response)

    async def post_json(
        self, http: aiohttp.ClientSession, path: str, body: Any, headers: Mapping[str, str]
    ) -> Any:
        """POST `body` as JSON and return the parsed answer; error statuses raise typed errors."""
        reply = await self.post(http, path, json_bytes(body), {**JSON_HEADERS, **headers})
        if reply.status >= 400:
            raise self.status_error(reply)
        return self.json(reply)

    async def get_json(self, http: aiohttp.ClientSession, path: str, headers: Mapping[str, str]) -> Any:
        """GET `url + path` and return the parsed answer; error statuses raise typed errors."""
        with self.errors():
            async with http.get(self.url + path, headers=headers) as response:
                reply = await Reply.read(response)
        if reply.status >= 400:
            raise self.status_error(reply)
        return self.json(reply)

    def unavailable(self, why: str) -> ProviderUnavailable:
        """The 503 for a provider that cannot be reached, with how to start it."""
        hint = f"; {self.start_hint}" if self.start_hint else ""
        return ProviderUnavailable(f"cannot reach {self.name} at {self.url} ({why}){hint}")

    async def check(self, response: aiohttp.ClientResponse) -> None:
        """Raise the typed error for an upstream error status (reads a streamed body first)."""
        if response.status < 400:
            return
        raise self.status_error(await Reply.read(response))

    def status_error(self, response: Reply) -> LakehouseError:
        """The typed error for an upstream answer whose status is 4xx or 5xx."""
        status = response.status
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

    def json(self, response: Reply) -> Any:
        """The parsed JSON body of a successful answer, or a 502 when it is not JSON."""
        try:
            return json.loads(response.body)
        except ValueError:  # UnicodeDecodeError included
            raise self.unreadable(response.status, "a body that is not JSON") from None

    def unreadable(self, status: int, what: str) -> UpstreamError:
        """The 502 for an answer the client cannot make sense of."""
        return UpstreamError(f"{self.name} sent {what}", upstream_status=status)

    def decode_line(self, line: str | bytes, status: int = 200) -> Any:
        """One JSON document from a streamed line (NDJSON or an SSE `data:` payload)."""
        try:
            return json.loads(line)
        except ValueError:
            raise self.unreadable(status, "a streamed chunk that is not JSON") from None


JSON_HEADERS = {"Content-Type": "application/json"}


def json_bytes(doc: Any) -> bytes:
    """A request body as compact UTF-8 JSON."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def error_text(response: Reply) -> str:
    """The message inside an upstream error body (Ollama's and OpenAI's shapes), else its text."""
    try:
        body = json.loads(response.body)
    except ValueError:
        return response.text
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        err = err.get("message")
    return str(err if err is not None else body)
