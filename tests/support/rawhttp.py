"""HTTP over a bare socket, for tests that send what no well-behaved client would.

Nothing is normalised: the request line, headers and body go out exactly as
given (`..`, `%2e`, backslashes, CR/LF, huge heads, bodies that stall).
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Answer:
    """A parsed response (status 0: the connection closed without one)."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    sent: int = 0  # body bytes the client got out before the server answered or closed

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)

    def code(self) -> str:
        """The contract error code of the body."""
        code: str = self.json()["error"]["code"]
        return code


def connect(url: str, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to the server at `url`."""
    parts = urlsplit(url)
    return socket.create_connection((parts.hostname, parts.port), timeout=timeout)


def read_answer(sock: socket.socket, head_only: bool = False) -> Answer:
    """Read one response (to the end of its Content-Length, or until the server closes)."""
    data = b""
    try:
        while b"\r\n\r\n" not in data or (not head_only and len(data) < _expected(data)):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return parse(data)


def parse(data: bytes) -> Answer:
    """A raw response's status, headers (lower-cased names) and body."""
    if not data.startswith(b"HTTP/"):
        return Answer(status=0)
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = body[: int(headers["content-length"])]
    return Answer(status=int(lines[0].split(" ", 2)[1]), headers=headers, body=body)


def _expected(data: bytes) -> int:
    head, _, _ = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(head) + 4 + int(value.strip())
    return 1 << 62  # no length: read until the server closes


def exchange(url: str, request: bytes, timeout: float = 10.0, head_only: bool = False) -> Answer:
    """Send `request` as is on a fresh connection and read the answer."""
    with connect(url, timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(request)
        return read_answer(sock, head_only=head_only)


def request_bytes(
    method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> bytes:
    """A request with the target exactly as given, `Host` and (with a body) `Content-Length` added."""
    lines = [f"{method} {target} HTTP/1.1", "Host: test"]
    all_headers = dict(headers or {})
    if body and "Content-Length" not in all_headers:
        all_headers["Content-Length"] = str(len(body))
    lines += [f"{k}: {v}" for k, v in all_headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


def stream_until_answered(
    url: str, head: bytes, chunks: Iterator[bytes], chunked: bool = False, timeout: float = 30.0
) -> Answer:
    """Send `head`, then body chunks until the server answers or closes; the answer notes bytes sent."""
    sent = 0
    with connect(url, timeout) as sock:
        sock.sendall(head)
        for chunk in chunks:
            if select.select([sock], [], [], 0)[0]:
                break  # the server answered (or closed) before the body was done
            data = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
            try:
                sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        else:
            if chunked:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    sock.sendall(b"0\r\n\r\n")
        answer = read_answer(sock)
    answer.sent = sent
    return answer


def zeros(total: int, size: int = 1024 * 1024) -> Iterator[bytes]:
    """`total` zero bytes in chunks of `size`."""
    block = b"\0" * size
    for _ in range(total // size):
        yield block


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """Whether the server closes `sock` (EOF or reset, any answer read first) within `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        ready = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))[0]
        if not ready:
            return False
        try:
            if not sock.recv(65536):
                return True
        except (ConnectionResetError, OSError):
            return True
    return False


def rss_bytes(pid: int) -> int:
    """Resident memory of process `pid`."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for {pid}")
