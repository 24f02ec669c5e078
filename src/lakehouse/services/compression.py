"""gzip for JSON answers over 1 KiB, and nothing else.

Starlette's GZipMiddleware compresses every type it does not exclude; this one
compresses only JSON (`application/json`, `+json`) whose whole body arrives in
one message, so Arrow IPC, Parquet, object bytes, SSE and any other stream
pass through untouched, chunk by chunk. An answer that already carries a
Content-Encoding (a proxied upstream that compressed it) is never compressed
again, so the split-mode gateway passes upstream encodings through.
"""

from __future__ import annotations

import gzip

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MINIMUM_SIZE = 1024
LEVEL = 6
# Bodies this large are compressed on a worker thread, off the event loop, and
# at `LARGE_LEVEL`: a thousand-query search answer (1.4 MB of JSON) packs in
# 5.6 ms at level 1 against 17 ms at 6, for 11% more bytes.
THREAD_SIZE = 256 * 1024
LARGE_LEVEL = 1


def accepts_gzip(header: bytes) -> bool:
    """Whether an Accept-Encoding value allows gzip (not listed with `q=0`)."""
    for item in header.lower().split(b","):
        coding, _, params = item.strip().partition(b";")
        if coding.strip() in (b"gzip", b"*"):
            q = params.strip()
            return not (q.startswith(b"q=") and q[2:].strip().rstrip(b"0").rstrip(b".") in (b"", b"0"))
    return False


class GzipJson:
    """ASGI middleware: gzip whole JSON bodies of at least `minimum_size` bytes for clients that accept it."""

    def __init__(self, app: ASGIApp, minimum_size: int = MINIMUM_SIZE) -> None:
        self.app = app
        self.minimum_size = minimum_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "HEAD":
            await self.app(scope, receive, send)
            return
        wanted = any(name == b"accept-encoding" and accepts_gzip(value) for name, value in scope["headers"])
        held: Message | None = None
        passing = False

        async def compressing_send(message: Message) -> None:
            nonlocal held, passing
            if passing:
                await send(message)
                return
            if message["type"] == "http.response.start":
                verdict = _verdict(message, self.minimum_size if wanted else None)
                if verdict is not _HOLD:
                    passing = True
                    if verdict is _VARY:
                        message = {**message, "headers": [*message.get("headers", []), _VARY_HEADER]}
                    await send(message)
                    return
                held = message
                return
            if held is None:  # pragma: no cover - a body before its start
                await send(message)
                return
            start, held = held, None
            passing = True
            headers = [*start.get("headers", []), _VARY_HEADER]
            body: bytes = message.get("body", b"")
            if not wanted or message.get("more_body", False) or len(body) < self.minimum_size:
                await send({**start, "headers": headers})
                await send(message)
                return
            packed = await anyio.to_thread.run_sync(_pack, body) if len(body) >= THREAD_SIZE else _pack(body)
            headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
            headers += [(b"content-encoding", b"gzip"), (b"content-length", str(len(packed)).encode())]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": packed, "more_body": False})

        await self.app(scope, receive, compressing_send)


def _pack(body: bytes) -> bytes:
    return gzip.compress(body, compresslevel=LARGE_LEVEL if len(body) >= THREAD_SIZE else LEVEL, mtime=0)


_VARY_HEADER = (b"vary", b"Accept-Encoding")
_PASS, _VARY, _HOLD = object(), object(), object()


def _verdict(start: Message, minimum: int | None) -> object:
    """What to do with an answer: pass it as it is, pass it with `Vary`, or hold it to maybe compress.

    `minimum` is None when the client does not accept gzip.
    """
    if start["status"] in (204, 206, 304) or start["status"] < 200:
        return _PASS
    json_type = False
    length = -1
    for name, value in start.get("headers", []):
        lowered = name.lower()
        if lowered == b"content-encoding":
            return _PASS
        if lowered == b"content-type":
            media = value.partition(b";")[0].strip().lower()
            json_type = media == b"application/json" or media.endswith(b"+json")
        elif lowered == b"content-length" and value.isdigit():
            length = int(value)
    if not json_type:
        return _PASS
    if minimum is None or 0 <= length < minimum:
        return _VARY
    return _HOLD
