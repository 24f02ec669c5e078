"""`lakehouse mcp`: serve the lakehouse to AI assistants over the Model Context Protocol (stdio)."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from lakehouse.cli.app import app
from lakehouse.cli.common import GatewayOption, gateway_url
from lakehouse.cli.serve import ConfigOption
from lakehouse.cli.token import TokenOption


@app.command("mcp")
def mcp_command(
    gateway: GatewayOption = None,
    config: ConfigOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the gateway on each call.")] = 120.0,
    token: TokenOption = None,
) -> None:
    """Serve MCP tools (datasets, SQL, indexes, models, embeddings, vector search, chat) over stdio."""
    # Imported here so the other commands do not pay for the MCP SDK's import time.
    from lakehouse.mcp_server import build_server

    # stdout carries the protocol; keep stderr to warnings, not a line per gateway call.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    build_server(gateway_url(gateway, config), timeout=timeout, token=token or "").run("stdio")
