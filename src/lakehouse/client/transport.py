"""How `lakehouse.Client` talks to a lakehouse: one httpx pool, waits on 503 busy, typed errors.

Every error body comes back as the `lakehouse.errors` class of its code
(`SqlError`, `NotFound`, `SchemaDrift`, ...) with its status, code, message
and detail; a lakehouse that cannot be reached raises `Unavailable` saying
how to start one. A 503 with Retry-After (an index still loading answers
`busy`) is waited out and retried, within `busy_wait` seconds in all, for
calls that change nothing (GETs, searches, SQL); any other call raises it at once.
"""

from __future__ import annotations

import os
import time
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from lakehouse.errors import LakehouseError, Unavailable, UpstreamTimeout

DEFAULT_URL = "http://127.0.0.1:3110"
START_HINT = "is it running? start it with `lakehouse serve`"
# How long, in all, calls that change nothing wait out 503s with Retry-After.
BUSY_WAIT_SECS = 30.0
# A Retry-After of 0 (or in the past) still waits this long, so a retry never spins.
MIN_RETRY_SECS = 0.25
SAFE_METHODS = frozenset({"GET", "HEAD"})

Model = TypeVar("Model", bound=BaseModel)


def segment(name: str) -> str:
    """One path segment, escaped so a name can never reach another route."""
    return quote(name, safe="")


class Transport:
    """The connection to a lakehouse at `url` (else `$LAKEHOUSE_URL`, else :3110) with `token`.

    The typed methods of `lakehouse.Client` are built on `request`, `_json` and `_model`.
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 120.0,
        *,
        transport: httpx.BaseTransport | None = None,
        busy_wait: float = BUSY_WAIT_SECS,
    ) -> None:
        self.url = (url or os.environ.get("LAKEHOUSE_URL") or DEFAULT_URL).rstrip("/")
        token = (token if token is not None else os.environ.get("LAKEHOUSE_TOKEN", "")).strip()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout
        self.busy_wait = busy_wait
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _send(
        self, request: httpx.Request, *, stream: bool = False, idempotent: bool | None = None
    ) -> httpx.Response:
        """Send `request`; raise the typed error of a refusal or of a lakehouse out of reach.

        An idempotent request (by default GET and HEAD) that meets a 503 with Retry-After is
        sent again after the wait it asks for, while the waits add up to at most `busy_wait`.
        """
        if idempotent is None:
            idempotent = request.method in SAFE_METHODS
        waited = 0.0
        while True:
            response = self._send_once(request, stream)
            if not response.is_error:
                return response
            if stream:
                response.read()
                response.close()
            delay = _retry_delay(response) if idempotent else None
            if delay is None or waited + delay > self.busy_wait:
                raise _error_of(response)
            time.sleep(delay)
            waited += delay

    def _send_once(self, request: httpx.Request, stream: bool) -> httpx.Response:
        """One attempt: the response, whatever its status, or the typed error of a failed connection."""
        try:
            response = self._http.send(request, stream=stream)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise Unavailable(
                f"cannot reach the lakehouse gateway at {self.url} ({type(exc).__name__}): {START_HINT}"
                " (or point the client at it: --gateway / $LAKEHOUSE_URL)",
                url=self.url,
            ) from None
        except httpx.TimeoutException:
            raise UpstreamTimeout(
                f"the lakehouse gateway at {self.url} did not answer within {self.timeout:g}s", url=self.url
            ) from None
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"the connection to the lakehouse gateway at {self.url} failed ({type(exc).__name__})",
                url=self.url,
            ) from None
        return response

    def request(
        self, method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One request to any route; the response when it succeeded, else the typed error.

        `idempotent`: whether a 503 with Retry-After may be retried (default: GET and HEAD only).
        """
        return self._send(self._http.build_request(method, path, **kwargs), idempotent=idempotent)

    def _json(self, method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any) -> Any:
        response = self.request(method, path, idempotent=idempotent, **kwargs)
        return None if response.status_code == 204 or not response.content else response.json()

    def _model(
        self, model: type[Model], method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any
    ) -> Model:
        return model.model_validate(self._json(method, path, idempotent=idempotent, **kwargs))


def _retry_delay(response: httpx.Response) -> float | None:
    """Seconds a 503's Retry-After asks to wait (seconds or an HTTP date); None for any other answer."""
    value = response.headers.get("retry-after", "").strip() if response.status_code == 503 else ""
    if not value:
        return None
    if value.isdigit():
        return max(float(value), MIN_RETRY_SECS)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(when.timestamp() - time.time(), MIN_RETRY_SECS)


def _error_of(response: httpx.Response) -> LakehouseError:
    """The typed error of a refusal, keeping status, code, message and detail."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = LakehouseError.from_body(response.status_code, body, dict(response.headers))
    if error.status != response.status_code:
        error.status = response.status_code  # type: ignore[misc]
    return error
