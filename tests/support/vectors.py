"""Waiting for a vector index that a restarted process is still loading."""

from __future__ import annotations

import time
from typing import Any

import httpx


def wait_ready(client: httpx.Client, name: str, timeout: float = 60.0) -> dict[str, Any]:
    """The index's info once its state is "ready" (a restarted vectord loads indexes in the background).

    Raises:
        AssertionError: the index was not ready within `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        answer = client.get(f"/v1/vectors/index/{name}")
        assert answer.status_code == 200, answer.text
        info: dict[str, Any] = answer.json()
        if info["state"] == "ready":
            return info
        assert info["state"] == "loading", info
        assert time.monotonic() < deadline, f"index {name!r} still loading after {timeout}s: {info}"
        time.sleep(0.05)
