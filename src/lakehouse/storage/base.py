"""The ObjectStore protocol every storage backend implements.

Keys are validated by `lakehouse.storage.keys.validate_key` before they reach a
backend. Backends raise `NotFound`, `AlreadyExists` (conditional create lost)
and `TooLarge` (streamed body past its cap) from `lakehouse.errors`; the S3
backend raises `Unavailable` when the bucket cannot be reached, and the local
backend `Conflict` when one key would be both an object and a folder ("a" and
"a/b"), which S3 allows.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

import anyio

from lakehouse.errors import RangeNotSatisfiable, TooLarge
from lakehouse.runner import run_blocking

# Keys under this prefix belong to the lakehouse itself (dataset files,
# manifests, vector snapshots and logs): read-only through the storage API.
RESERVED_PREFIX = "_lakehouse/"
DATASETS_PREFIX = RESERVED_PREFIX + "datasets/"
CATALOG_PREFIX = RESERVED_PREFIX + "catalog/"
VECTORS_PREFIX = RESERVED_PREFIX + "vectors/"
# Token records: hashes only, yet the storage API neither lists nor serves them.
PRIVATE_PREFIX = RESERVED_PREFIX + "auth/"
# What `write_streamed` gathers before each write: one thread hop per megabyte.
WRITE_BATCH = 1024 * 1024


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


@dataclass(frozen=True)
class ByteRange:
    """One HTTP byte range: `first-last`, `first-` (`last` None) or the suffix `-length` (`first` None)."""

    first: int | None
    last: int | None = None
    suffix: int | None = None

    def resolve(self, size: int) -> tuple[int, int]:
        """The inclusive (start, end) offsets this range names in an object of `size` bytes.

        Raises:
            RangeNotSatisfiable: the range starts at or past the end (or is an empty suffix),
                with `Content-Range: bytes */size`.
        """
        if self.suffix is not None:
            if self.suffix == 0 or size == 0:
                raise _unsatisfiable(size)
            return max(0, size - self.suffix), size - 1
        first = self.first or 0
        if first >= size:
            raise _unsatisfiable(size)
        last = size - 1 if self.last is None else min(self.last, size - 1)
        return first, last


def _unsatisfiable(size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(
        f"the range lies past the object's end ({size} bytes)",
        headers={"Content-Range": f"bytes */{size}"},
        size=size,
    )


class ObjectStore(Protocol):
    """Object I/O over one bucket or folder."""

    async def put(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        max_bytes: int | None = None,
        if_absent: bool = False,
        if_match: str | None = None,
    ) -> PutResult:
        """Store the streamed bytes atomically under `key`.

        Args:
            key: a validated key.
            chunks: the body, consumed once.
            max_bytes: cap enforced while streaming.
            if_absent: create only; never replace.
            if_match: replace only the object whose etag (unquoted) is this one.

        Raises:
            TooLarge: the stream passed `max_bytes`; nothing is stored.
            AlreadyExists: `if_absent` and the key exists.
            PreconditionFailed: `if_match` and the key is absent or has another etag.
        """
        ...

    async def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> PutResult:
        """Store a small in-memory value atomically (see `put`)."""
        ...

    async def put_file(self, key: str, path: Path, *, move: bool = False) -> PutResult:
        """Store a local file's contents atomically, streaming it.

        `move`: the caller is done with the file, so a backend on the same
        filesystem may take the file itself (a rename, no copy); the file may
        then be gone, and the caller still removes it when it is not.
        """
        ...

    async def get(self, key: str) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
        """The object's info and a stream of its bytes.

        Raises:
            NotFound: no such key.
        """
        ...

    async def get_range(
        self, key: str, byte_range: ByteRange
    ) -> tuple[ObjectInfo, tuple[int, int], AsyncIterator[bytes]]:
        """The object's info, the inclusive (start, end) served, and a stream of just those bytes.

        Raises:
            NotFound: no such key.
            RangeNotSatisfiable: the range starts past the end.
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


async def list_all(store: ObjectStore, prefix: str) -> list[ObjectInfo]:
    """Every object under `prefix`, page after page (a store's `list` may stop at a page)."""
    found: list[ObjectInfo] = []
    after: str | None = None
    while True:
        page, more = await store.list(prefix, after=after)
        found.extend(page)
        if not more or not page:
            return found
        after = page[-1].key


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    """`data` as the one-chunk stream `ObjectStore.put` takes (for a conditional small write)."""
    yield data


async def write_streamed(
    chunks: AsyncIterator[bytes],
    write: Callable[[list[bytes]], None],
    max_bytes: int | None,
    *,
    what: str = "body",
) -> int:
    """Feed a streamed body to a blocking `write`, about a megabyte per call; returns its size.

    Small network chunks are gathered to `WRITE_BATCH` bytes, and one call of
    `write` runs on a worker thread while the next batch arrives: awaiting each
    write would stop reading the socket (uvicorn reads at most 64 KiB ahead of
    the app), so receiving and writing would take turns. Calls never overlap
    and come in the stream's order, so `write` may keep state (a hash, a
    first-batch flag); it is never called with no chunks. The write in
    flight always ends before this returns or raises, also when the stream is
    cut off or the task cancelled, so the caller may then close and remove its file.

    Args:
        chunks: the body, consumed once.
        write: a blocking function given each batch of chunks.
        max_bytes: the most the body may hold; None for no cap.
        what: how `TooLarge`'s message names the body ("body", "upload").

    Raises:
        TooLarge: the stream passed `max_bytes` (checked on every chunk, before it is written).
    """
    size = 0
    pending: list[bytes] = []
    pending_size = 0
    writing: asyncio.Future[None] | None = None
    try:
        async for chunk in chunks:
            size += len(chunk)
            if max_bytes is not None and size > max_bytes:
                raise TooLarge(f"the {what} is larger than the {max_bytes}-byte limit", limit=max_bytes)
            pending.append(chunk)
            pending_size += len(chunk)
            if pending_size >= WRITE_BATCH:
                if writing is not None:
                    await writing
                writing = asyncio.ensure_future(run_blocking(write, pending))
                pending, pending_size = [], 0
        if writing is not None:
            await writing
        if pending:
            await run_blocking(write, pending)
    finally:
        if writing is not None:
            if not writing.done():
                # Cut off (or cancelled) mid-write: let the thread finish with the file first.
                with anyio.CancelScope(shield=True):
                    await asyncio.wait([writing])
            if not writing.cancelled():
                writing.exception()  # seen: the error already raising is the one reported
    return size
