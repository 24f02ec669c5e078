"""Object storage: one `ObjectStore` protocol, a local-folder and an S3 backend.

from lakehouse.storage import open_store
store = open_store(settings)          # chosen by [storage] backend
"""

from __future__ import annotations

from lakehouse.config import Settings
from lakehouse.storage.base import (
    CATALOG_PREFIX,
    DATASETS_PREFIX,
    RESERVED_PREFIX,
    VECTORS_PREFIX,
    ObjectInfo,
    ObjectStore,
    PutResult,
)
from lakehouse.storage.keys import is_reserved, validate_key

__all__ = [
    "CATALOG_PREFIX",
    "DATASETS_PREFIX",
    "RESERVED_PREFIX",
    "VECTORS_PREFIX",
    "ObjectInfo",
    "ObjectStore",
    "PutResult",
    "is_reserved",
    "open_store",
    "validate_key",
]


def open_store(settings: Settings) -> ObjectStore:
    """The object store named by `[storage] backend`."""
    cfg = settings.storage
    if cfg.backend == "s3":
        from lakehouse.storage.s3 import S3Store

        return S3Store.from_config(cfg)
    from lakehouse.storage.local import LocalStore

    return LocalStore(cfg.root)
