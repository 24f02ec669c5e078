"""The `lakehouse` command: serve, doctor, ingest, sql, chat, ask, mcp, token."""

from __future__ import annotations

from lakehouse.cli import ask, chat, data, doctor, mcp, serve, token
from lakehouse.cli.app import app

__all__ = ["app", "ask", "chat", "data", "doctor", "main", "mcp", "serve", "token"]


def main() -> None:
    """Entry point of the `lakehouse` script."""
    app()
