"""`lakehouse doctor` commands."""

from __future__ import annotations
