"""The ObjectStore protocol every storage backend implements.

Keys are validated by `lakehouse.storage.keys.validate_key` before they reach a
backend. Backends raise `NotFound`, `AlreadyExists` (conditional create lost)
and `TooLarge` (streamed body past its cap) from `lakehouse.errors`; the S3
backend raises `Unavailable` when the bucket cannot be reached, and the local
backend `Conflict` when one key would be both an object and a folder ("a" and
"a/b"), which S3 allows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

# Keys under this prefix belong to the lakehouse itself (dataset files,
# manifests, vector snapshots and logs): read-only through the storage API.
RESERVED_PREFIX = "_lakehouse/"
DATASETS_PREFIX = RESERVED_PREFIX + "datasets/"
CATALOG_PREFIX = RESERVED_PREFIX + "catalog/"
VECTORS_PREFIX = RESERVED_PREFIX + "vectors/"
# Token records: hashes only, yet the storage API neither lists nor serves them.
PRIVATE_PREFIX = RESERVED_PREFIX + "auth/"


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows about one object."""

    key: str
    size: int
    etag: str
    last_modified: datetime


@dataclass(frozen=True)
class PutResult:
    """The stored object and whether it replaced an earlier one."""

    info: ObjectInfo
    replaced: bool


class ObjectStore(Protocol):
    """Object I/O over one bucket or folder."""

    async def put(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        max_bytes: int | None = None,
        if_absent: bool = False,
    ) -> PutResult:
        """Store the streamed bytes atomically under `key`.

        Args:
            key: a validated key.
            chunks: the body, consumed once.
            max_bytes: cap enforced while streaming.
            if_absent: create only; never replace.

        Raises:
            TooLarge: the stream passed `max_bytes`; nothing is stored.
            AlreadyExists: `if_absent` and the key exists.
        """
        ...

    async def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> PutResult:
        """Store a small in-memory value atomically (see `put`)."""
        ...

    async def put_file(self, key: str, path: Path) -> PutResult:
        """Store a local file's contents atomically, streaming it."""
        ...

    async def get(self, key: str) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
        """The object's info and a stream of its bytes.

        Raises:
            NotFound: no such key.
        """
        ...

    async def get_bytes(self, key: str) -> bytes:
        """The whole object in memory; for small objects only.

        Raises:
            NotFound: no such key.
        """
        ...

    async def head(self, key: str) -> ObjectInfo:
        """The object's info.

        Raises:
            NotFound: no such key.
        """
        ...

    async def delete(self, key: str) -> None:
        """Remove the object.

        Raises:
            NotFound: no such key.
        """
        ...

    async def list(
        self, prefix: str = "", limit: int | None = None, *, after: str | None = None
    ) -> tuple[list[ObjectInfo], bool]:
        """Objects whose key starts with `prefix`, sorted by key, and whether more exist.

        Args:
            prefix: a validated prefix (see `keys.validate_prefix`).
            limit: at most this many objects.
            after: only keys sorting (as UTF-8 bytes) after this one: the last
                key of the previous page.
        """
        ...

    def engine_path(self, key: str) -> str:
        """Where DuckDB reads the object: a file path or an `s3://` URL."""
        ...

    def engine_root(self) -> str:
        """The file path or `s3://bucket` prefix under which every object lives."""
        ...

    async def close(self) -> None:
        """Release connections and files."""
        ...
