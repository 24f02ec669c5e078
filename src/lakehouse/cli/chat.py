"""`lakehouse chat` commands."""

from __future__ import annotations
