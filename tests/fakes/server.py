"""Run a small ASGI app under uvicorn in a thread on 127.0.0.1, on a free port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.types import ASGIApp


class RunningServer:
    """A uvicorn server started by `serve_in_thread`; `.url` is its base URL."""

    def __init__(self, server: uvicorn.Server) -> None:
        self.server = server
        sockets = server.servers[0].sockets
        self.port: int = sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        """Base URL, e.g. `http://127.0.0.1:43123`."""
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def serve_in_thread(app: ASGIApp, timeout: float = 10.0) -> Iterator[RunningServer]:
    """Serve `app` on 127.0.0.1:0 in a thread until the block ends (even when it fails)."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("fake server did not start")
            time.sleep(0.005)
        yield RunningServer(server)
    finally:
        server.should_exit = True
        thread.join(timeout)
