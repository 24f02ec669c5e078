"""The lines `lakehouse serve` prints once listening: where, what data, which services, the docs.

They follow the `lakehouse <svc> listening on <url>` line of `cli.listen`
(which scripts and tests parse, so it stays first and unchanged).
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from pathlib import Path

import uvicorn

from lakehouse import __version__
from lakehouse.cli.listen import ReportingServer, public_url
from lakehouse.config import Settings
from lakehouse.services.table import SERVICES


def banner_lines(settings: Settings, service: str | None, url: str) -> list[str]:
    """What a user needs to start: the URL, where the data lives, the services here, `/docs`."""
    store = settings.storage
    if store.backend == "s3":
        data = f"s3 bucket {store.bucket!r}" + (f" at {store.endpoint}" if store.endpoint else "")
    else:
        data = f"folder {Path(store.root).expanduser().resolve()}"
    if service is None:
        services = ", ".join(["gateway", *SERVICES])
    elif service == "gateway":
        services = "gateway (proxying to the [gateway] *_url upstreams)"
    else:
        services = service
    return [
        f"  lakehouse {__version__} at {url}",
        f"  data:     {data}",
        f"  services: {services}",
        f"  API docs: {url}/docs   health: {url}/health",
    ]


class BannerServer(ReportingServer):
    """A `ReportingServer` that prints the banner after its listening line."""

    def __init__(
        self,
        config: uvicorn.Config,
        label: str,
        settings: Settings,
        service: str | None,
        on_listening: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(config, label, on_listening)
        self.settings = settings
        self.service = service

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start serving and report where (see `ReportingServer`), then print the banner."""
        await super().startup(sockets=sockets)
        if self.started and sockets:
            lines = banner_lines(self.settings, self.service, public_url(sockets[0]))
            print("\n".join(lines), file=sys.stderr, flush=True)
