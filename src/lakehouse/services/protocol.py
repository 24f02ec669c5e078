"""The HTTP/1.1 protocol `lakehouse serve` speaks: uvicorn's httptools protocol with `[http]` limits.

uvicorn's own settings leave holes that a hostile client can use, closed here
at the connection level (below the ASGI app, which never sees these requests):

- Header size. httptools (llhttp) has no limit of its own: uvicorn hands it
  every byte and it gathers an unfinished header value in memory for as long
  as the client sends (20 unfinished 30 MB heads: 600 MB).
  `h11_max_incomplete_event_size` only covers uvicorn's h11 protocol. Here the
  bytes of an unfinished head are counted as they arrive; past
  `max_header_bytes` the client gets 431 and the connection is closed, so one
  connection holds at most about `max_header_bytes` plus one read (256 KiB).
  A head that arrives whole in one read and is over the cap is refused by
  `limits.BodyLimits` with the same 431.
- Slow or silent heads. `timeout_keep_alive` runs only between requests, and
  uvicorn cancels it as soon as any byte arrives, so a connection that never
  sends a complete head (nothing at all, or a byte now and then) was kept
  forever. Here a head must be complete within `idle_timeout_secs` of the
  connection opening or of the previous response: otherwise 408 (when part of
  a head came) or a plain close (when nothing came).
- Clients that stop reading. A download (a storage GET holds one of the
  storage slots until its last byte is handed over) to a client that reads
  nothing waited forever in uvicorn's flow control, so 8 such clients held
  the storage cap for as long as they liked. Here a connection whose writes
  stay paused (the client took too little to drain the buffer) for
  `idle_timeout_secs` is dropped, which ends the response and frees its slot.
- Connections. Past `max_connections` open connections per process a new one
  is closed at once, before it holds more than its socket; the server and the
  connections already open carry on.
- Malformed requests (a bad or duplicate Content-Length, Content-Length with
  chunked, a broken request line...): uvicorn answers a plain-text 400; here
  it is the contract's JSON body, 400 `invalid_request`, naming the parser's
  reason. Every input llhttp refuses passes through this one path.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import struct
import time
import uuid
from typing import Any, ClassVar

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from lakehouse.config import HttpConfig

log = logging.getLogger("lakehouse.http")


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with header, head-time and connection limits and JSON parse errors."""

    limits: ClassVar[HttpConfig] = HttpConfig()

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._in_head = True
        self._head_bytes = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Accept the connection, or close it at once when the process has `max_connections` open."""
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections:
            _note_refusal(len(self.connections) - 1, self.limits.max_connections)
            transport.close()
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Forget the connection and its timers."""
        self._cancel_head_timer()
        self._cancel_write_timer()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        """The client is not keeping up: it has `idle_timeout_secs` to drain the buffer, or it is dropped."""
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.limits.idle_timeout_secs, self._write_stalled)

    def resume_writing(self) -> None:
        """The client read enough: its clock stops."""
        self._cancel_write_timer()
        super().resume_writing()

    def _cancel_write_timer(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _write_stalled(self) -> None:
        self._write_timer = None
        log.info(
            "dropping a connection whose client read too little for %g seconds, client=%s",
            self.limits.idle_timeout_secs,
            _client(self.client),
        )
        # Reset rather than close: a plain close leaves the kernel feeding its send buffer
        # (megabytes) to the client that does not read, for as long as it keeps the socket.
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()  # close() would wait for a buffer the client never drains

    def data_received(self, data: bytes) -> None:
        """Feed the parser, counting the bytes of an unfinished head against `max_header_bytes`."""
        self._unset_keepalive_if_required()
        if self._in_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            reason = str(exc) or type(exc).__name__
            self.refuse(400, "invalid_request", f"the request is not valid HTTP/1.1: {reason}")
            return
        if self._in_head and self._head_bytes > self.limits.max_header_bytes:
            self.refuse(
                431,
                "headers_too_large",
                f"the request line and headers pass the {self.limits.max_header_bytes}-byte limit",
            )

    def on_headers_complete(self) -> None:
        """A whole head arrived: stop its clock, then start the request as uvicorn does."""
        self._in_head = False
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """The request's body is in; whatever comes next is the next request's head."""
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    def on_response_complete(self) -> None:
        """The answer is sent: the next head (if any comes) has `idle_timeout_secs` to arrive."""
        super().on_response_complete()
        if self._in_head and not self.transport.is_closing():
            self._arm_head_timer()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's own refusals, in the contract's shape."""
        self.refuse(400, "invalid_request", msg)

    def refuse(self, status: int, code: str, message: str) -> None:
        """Answer `status` with the contract's JSON error body and close the connection."""
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            self.transport.close()  # an answer is already on the wire: nothing else can follow it
            return
        request_id = uuid.uuid4().hex
        body = json.dumps({"error": {"code": code, "message": message}}).encode()
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode() + b"\r\n",
                b"x-request-id: " + request_id.encode() + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        log.info("- - %d %s id=%s client=%s", status, code, request_id, _client(self.client))
        self.transport.write(b"".join(content))
        self.transport.close()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.limits.idle_timeout_secs, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._in_head or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a pipelined request is still being answered; its completion re-arms the clock
        if self._head_bytes:
            self.refuse(
                408,
                "request_timeout",
                f"the request's head was not complete within {self.limits.idle_timeout_secs:g} seconds",
            )
        else:
            self.transport.close()


# A flood of connections must not become a flood of log lines: one a second.
_last_refusal_log = 0.0
_refused_since_log = 0


def _note_refusal(open_now: int, limit: int) -> None:
    global _last_refusal_log, _refused_since_log
    _refused_since_log += 1
    now = time.monotonic()
    if now - _last_refusal_log >= 1.0:
        log.warning(
            "refused %d connection(s): %d open, [http] max_connections is %d",
            _refused_since_log,
            open_now,
            limit,
        )
        _last_refusal_log, _refused_since_log = now, 0


def _client(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "-"


def protocol_for(limits: HttpConfig) -> type[LimitedHttpProtocol]:
    """The protocol class uvicorn should build connections with, bound to these limits."""
    return type("LimitedHttpProtocol", (LimitedHttpProtocol,), {"limits": limits})


def serve_options(limits: HttpConfig) -> dict[str, Any]:
    """uvicorn settings enforcing `[http]`; also lifts this process's open-file limit to fit them.

    `http` is the protocol above (httptools with the limits). uvicorn's
    `limit_concurrency` is not used: it answers 503 to every request once the
    open connections reach it, idle ones included, where the cap here refuses
    only the connections past it. `h11_max_incomplete_event_size` would bound
    heads under uvicorn's h11 protocol, which is not the one served.
    """
    raise_open_file_limit(limits.max_connections)
    return {"http": protocol_for(limits), "timeout_keep_alive": 5}


# Descriptors the process needs beyond client connections: listening socket,
# upstream pools, store files, DuckDB, logs.
FD_HEADROOM = 256


def raise_open_file_limit(connections: int) -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one; warn when it cannot hold `connections`.

    Returns the soft limit in force.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < connections + FD_HEADROOM:
        log.warning(
            "[http] max_connections = %d needs about %d open files; this process may open %d",
            connections,
            connections + FD_HEADROOM,
            soft,
        )
    return soft
