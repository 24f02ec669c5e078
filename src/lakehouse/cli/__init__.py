"""The `lakehouse` command: serve, doctor, ingest, sql, chat, mcp, token."""

from __future__ import annotations

from lakehouse.cli import chat, data, doctor, mcp, serve, token
from lakehouse.cli.app import app

__all__ = ["app", "chat", "data", "doctor", "main", "mcp", "serve", "token"]


def main() -> None:
    """Entry point of the `lakehouse` script."""
    app()
