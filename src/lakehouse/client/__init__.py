"""The Python client of the lakehouse's HTTP API: `from lakehouse import Client`."""

from __future__ import annotations

from lakehouse.client import models
from lakehouse.client.api import DEFAULT_URL, START_HINT, Client

__all__ = ["DEFAULT_URL", "START_HINT", "Client", "models"]
