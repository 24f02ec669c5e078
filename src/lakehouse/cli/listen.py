"""Listening sockets for `lakehouse serve`: bind first, then report the port actually got.

The socket is bound here, before uvicorn starts, so `--bind 127.0.0.1:0`
works: the kernel picks a free port and nothing can take it between choosing
and binding. Once uvicorn is serving on it, one line goes to stderr:

    lakehouse all listening on http://127.0.0.1:43817
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable

import uvicorn

READY_PREFIX = "lakehouse "
READY_MARKER = " listening on "


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host:port` (port 0: any free one), not yet listening.

    Raises:
        OSError: the address cannot be bound (in use, not local, not resolvable).
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # Lets a restarted server take its old port back while connections sit in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


def public_url(sock: socket.socket) -> str:
    """`http://host:port` of a bound socket, with the port it actually got."""
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


class ReportingServer(uvicorn.Server):
    """A uvicorn server that prints `lakehouse <label> listening on <url>` once it accepts connections.

    `on_listening`, if given, is called once after that line (work that may
    wait until the server answers, such as warming imports).
    """

    def __init__(
        self, config: uvicorn.Config, label: str, on_listening: Callable[[], None] | None = None
    ) -> None:
        super().__init__(config)
        self.label = label
        self.on_listening = on_listening

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start serving, then report where (uvicorn logs nothing itself for passed sockets)."""
        await super().startup(sockets=sockets)
        if self.started and sockets:
            urls = ", ".join(public_url(sock) for sock in sockets)
            print(f"{READY_PREFIX}{self.label}{READY_MARKER}{urls}", file=sys.stderr, flush=True)
        if self.started and self.on_listening is not None:
            self.on_listening()
