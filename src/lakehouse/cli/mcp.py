"""`lakehouse mcp` commands."""

from __future__ import annotations
