"""`lakehouse mcp`: serve the lakehouse to AI assistants over the Model Context Protocol (stdio)."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from lakehouse.cli.app import app
from lakehouse.cli.serve import ConfigOption, settings_or_exit
from lakehouse.cli.token import TokenOption
from lakehouse.config import split_bind


@app.command("mcp")
def mcp_command(
    gateway: Annotated[
        str | None,
        typer.Option(
            "--gateway",
            envvar="LAKEHOUSE_GATEWAY_URL",
            help="Gateway base URL to proxy to (default: http://<[gateway] bind> from the config).",
        ),
    ] = None,
    config: ConfigOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the gateway on each call.")] = 120.0,
    token: TokenOption = None,
) -> None:
    """Serve MCP tools (datasets, SQL, embeddings, vector search, chat) over stdio."""
    # Imported here so the other commands do not pay for the MCP SDK's import time.
    from lakehouse.mcp_server import build_server

    # stdout carries the protocol; keep stderr to warnings, not a line per gateway call.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if gateway is None:
        host, port = split_bind(settings_or_exit(config).gateway.bind)
        # A gateway listening on every interface is reached on loopback.
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "[::]") else host
        gateway = f"http://{host}:{port}"
    build_server(gateway, timeout=timeout, token=token).run("stdio")
