"""`[http]` limits on what a request may send, as ASGI middleware every app (and the gateway) runs.

- Headers: a request line plus headers over `max_header_bytes` gets 431
  `headers_too_large` (unfinished heads are cut off earlier, by the protocol:
  see `lakehouse.services.protocol`).
- JSON bodies: every route but the streamed uploads (storage PUT and ingest
  POST, which have their own caps) takes at most `max_json_bytes`. A declared
  Content-Length over it is refused before the app runs; a chunked body is
  counted as it streams and refused once past the cap, never buffered. Which
  routes are uploads is decided by method and path, never by the client's
  Content-Type.
- Idle bodies: a body must bring at least `MIN_PROGRESS_BYTES` (or end) in
  every `idle_timeout_secs`, so a client that sends nothing, or a byte now and
  then, cannot hold a request (and a storage slot) open: 408
  `request_timeout`, with the connection closed.

When a body breaks a limit the app is told the client disconnected (the
same path as a real disconnect, so uploads clean up exactly as they do then:
no object, no temp file) and its answer is replaced by the limit's error.
"""

from __future__ import annotations

import asyncio
import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lakehouse.config import HttpConfig
from lakehouse.errors import HeadersTooLarge, LakehouseError, RequestTimeout, TooLarge

log = logging.getLogger("lakehouse.http")

# A body must bring at least this much in every idle window to count as moving.
MIN_PROGRESS_BYTES = 1024
# Raw-body routes with their own size caps: (method, path prefix).
STREAMED_UPLOADS = (("PUT", "/v1/storage/objects/"), ("POST", "/v1/ingest/"))


def is_streamed_upload(method: str, path: str) -> bool:
    """Whether the route takes a raw streamed body with its own cap (not `max_json_bytes`)."""
    return any(method == m and path.startswith(prefix) for m, prefix in STREAMED_UPLOADS)


def head_size(scope: Scope) -> int:
    """About how many bytes the request line and headers took on the wire."""
    size = len(scope.get("raw_path", b"")) + len(scope.get("query_string", b"")) + len(scope["method"]) + 12
    for name, value in scope["headers"]:
        size += len(name) + len(value) + 4
    return size


class BodyLimits:
    """ASGI middleware applying `[http]` header, body-size and body-idle limits."""

    def __init__(self, app: ASGIApp, http: HttpConfig) -> None:
        self.app = app
        self.http = http

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if head_size(scope) > self.http.max_header_bytes:
            await send_error(
                send,
                HeadersTooLarge(
                    f"the request line and headers pass the {self.http.max_header_bytes}-byte limit"
                ),
            )
            return
        cap = None if is_streamed_upload(scope["method"], scope["path"]) else self.http.max_json_bytes
        declared = _content_length(scope)
        if cap is not None and declared is not None and declared > cap:
            await send_error(send, _too_large(cap, declared))
            return
        await _Guarded(self.app, self.http.idle_timeout_secs, cap).run(scope, receive, send)


class _Guarded:
    """One request under the body limits."""

    def __init__(self, app: ASGIApp, idle_secs: float, cap: int | None) -> None:
        self.app = app
        self.idle_secs = idle_secs
        self.cap = cap
        self.received = 0
        self.body_done = False
        self.failure: LakehouseError | None = None
        self.started = False
        self.replaced = False

    async def run(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        window_start = loop.time()
        window_bytes = 0

        async def limited_receive() -> Message:
            nonlocal window_start, window_bytes
            if self.failure is not None:
                return {"type": "http.disconnect"}
            if self.body_done:
                return await receive()
            try:
                async with asyncio.timeout_at(window_start + self.idle_secs):
                    message = await receive()
            except TimeoutError:
                return self._fail(
                    RequestTimeout(
                        f"the body stalled: under {MIN_PROGRESS_BYTES} bytes in {self.idle_secs:g} seconds",
                        headers={"Connection": "close"},
                    )
                )
            if message["type"] != "http.request":
                return message
            chunk = len(message.get("body", b""))
            self.received += chunk
            window_bytes += chunk
            if not message.get("more_body", False):
                self.body_done = True
            elif window_bytes >= MIN_PROGRESS_BYTES:
                window_start, window_bytes = loop.time(), 0
            if self.cap is not None and self.received > self.cap:
                return self._fail(_too_large(self.cap))
            return message

        async def guarded_send(message: Message) -> None:
            if self.replaced:
                return  # the app's own answer to the disconnect it was shown
            if message["type"] == "http.response.start":
                if self.failure is not None:
                    self.replaced = True
                    await send_error(send, self.failure)
                    return
                self.started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        finally:
            if self.failure is not None and not self.started and not self.replaced:
                self.replaced = True
                await send_error(send, self.failure)

    def _fail(self, failure: LakehouseError) -> Message:
        log.info("dropping a request body: %s", failure.message)
        self.failure = failure
        return {"type": "http.disconnect"}


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


def _too_large(cap: int, declared: int | None = None) -> TooLarge:
    size = f"{declared} bytes" if declared is not None else "larger"
    return TooLarge(f"the body is {size}; the limit for this route is {cap} bytes", limit=cap)


async def send_error(send: Send, exc: LakehouseError) -> None:
    """Answer with a typed error as the contract's JSON body."""
    body = json.dumps(exc.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in exc.headers.items())
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
