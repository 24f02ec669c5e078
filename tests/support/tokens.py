"""API tokens made straight in a local store, as `lakehouse token create` makes them."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from lakehouse.auth import Scope, TokenStore
from lakehouse.config import Settings, StorageConfig
from lakehouse.storage import open_store


def mint(root: Path, name: str, scope: Scope, **kwargs: Any) -> str:
    """Create a token in the store under `root` and return it (kwargs: `expires_days`)."""

    async def run() -> str:
        store = open_store(Settings(storage=StorageConfig(root=str(root))))
        try:
            minted = await TokenStore(store).create(name, scope, **kwargs)
            return minted[0]
        finally:
            await store.close()

    return asyncio.run(run())


def revoke(root: Path, name: str) -> None:
    """Revoke a token in the store under `root`."""

    async def run() -> None:
        store = open_store(Settings(storage=StorageConfig(root=str(root))))
        try:
            await TokenStore(store).revoke(name)
        finally:
            await store.close()

    asyncio.run(run())
