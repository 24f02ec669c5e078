"""Pinning registered objects: copies of user objects inside the dataset's reserved area.

A version registered over `uploads/trips.parquet` must not change when that
object is replaced or deleted later, so at register every object outside the
dataset's own area (a user object, or another dataset's file) is copied to
`_lakehouse/datasets/<name>/<time>-<id><suffix>` and the manifest names the
copy. Other keys under `_lakehouse/` (manifests, vectors, token records) are
refused. A copy is written before its manifest, so a
crash in between leaves an unreferenced file under the datasets prefix, which
ingest's orphan sweep removes after its grace period.

On S3 the copy is server-side (CopyObject: no bytes through this process);
elsewhere it is streamed through the store's own atomic put (on the local
backend: into the store's temp folder, then linked into place).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import Sequence

import anyio

from lakehouse.catalog.manifest import ObjectRef
from lakehouse.errors import Conflict, LakehouseError, NotFound, ReservedKey, Unavailable
from lakehouse.storage.base import DATASETS_PREFIX, ObjectInfo, ObjectStore
from lakehouse.storage.keys import is_reserved

COPY_CONCURRENCY = 8
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,12}\Z")


def needs_pin(dataset: str, key: str) -> bool:
    """True for an object `dataset` does not own: a user object, or a file of another dataset.

    Another dataset's files are copied too, so deleting (or expiring) that dataset
    never breaks this one's versions.
    """
    return not key.startswith(f"{DATASETS_PREFIX}{dataset}/")


def check_registrable(key: str) -> None:
    """Refuse an object key under the reserved prefix that is not a dataset's file.

    Manifests, vector data and token records are never a dataset's objects: a
    version over one would expose it to SQL and let deleting the dataset remove it.
    Refused by prefix before the store is asked, so the answer says nothing of
    whether such a key exists.

    Raises:
        ReservedKey: the key is under `_lakehouse/` but not under `_lakehouse/datasets/`.
    """
    if is_reserved(key) and not key.startswith(DATASETS_PREFIX):
        raise ReservedKey(
            f"object {key[:200]!r} is kept by the lakehouse itself and cannot be part of a dataset",
            key=key[:200],
        )


def pinned_key(dataset: str, source: str) -> str:
    """A fresh key for a copy of `source` in `dataset`'s area, keeping its file suffix."""
    suffix = _SUFFIX.search(source.rpartition("/")[2])
    ext = suffix.group().lower() if suffix else ""
    return f"{DATASETS_PREFIX}{dataset}/{time.time_ns():020d}-{uuid.uuid4().hex[:12]}{ext}"


async def pin_all(
    store: ObjectStore, dataset: str, refs: Sequence[ObjectRef], seen: dict[str, ObjectInfo]
) -> tuple[list[ObjectRef], list[str]]:
    """The refs with every user object replaced by a fresh copy, and the copies' keys.

    `seen` holds each object's info as checked at register; a source whose
    etag changed since then is refused, so the copy holds the bytes the
    fingerprint describes. On any failure the copies made so far are removed.

    Raises:
        MissingObject / NotFound: a source vanished before it was copied.
        Conflict: a source was replaced while the register ran.
    """
    limit = asyncio.Semaphore(COPY_CONCURRENCY)
    made: list[str] = []

    async def one(ref: ObjectRef) -> ObjectRef:
        if not needs_pin(dataset, ref.key):
            return ref
        target = pinned_key(dataset, ref.key)
        async with limit:
            made.append(target)
            await copy_object(store, ref.key, target, seen[ref.key])
        return ObjectRef(target, ref.size, ref.rows)

    try:
        pinned = list(await asyncio.gather(*(one(ref) for ref in refs)))
    except BaseException:
        await discard(store, made)
        raise
    return pinned, made


async def copy_object(store: ObjectStore, source: str, target: str, expected: ObjectInfo) -> None:
    """Copy `source` to the new key `target`, refusing a source that changed since `expected`.

    Raises:
        NotFound: the source is gone.
        Conflict: the source's etag or size is no longer `expected`'s.
    """
    s3 = _s3_client(store)
    if s3 is not None:
        import obstore
        from obstore.exceptions import BaseError

        try:
            # The target is a fresh key, so a plain copy (S3 has no copy-if-absent) replaces nothing.
            await obstore.copy_async(s3, source, target)  # type: ignore[arg-type]
        except FileNotFoundError:
            raise NotFound(f"no object {source!r}", key=source) from None
        except BaseError as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise Unavailable(f"the S3 store could not copy {source!r}: {reason}", key=source) from None
        after = await store.head(source)
        copied = await store.head(target)
        if after.etag != expected.etag or copied.size != expected.size:
            raise _changed(source)
        return
    info, chunks = await store.get(source)
    if info.etag != expected.etag or info.size != expected.size:
        with contextlib.suppress(BaseException):
            await chunks.aclose()  # type: ignore[attr-defined]
        raise _changed(source)
    stored = await store.put(target, chunks, if_absent=False)
    if stored.info.size != expected.size:
        await discard(store, [target])
        raise _changed(source)


async def discard(store: ObjectStore, keys: Sequence[str]) -> None:
    """Delete `keys`, ignoring ones already gone; runs to the end even when cancelled."""
    with anyio.CancelScope(shield=True):
        for key in keys:
            with contextlib.suppress(NotFound, LakehouseError, OSError):
                await store.delete(key)


def _s3_client(store: ObjectStore) -> object | None:
    """The obstore client of an S3 store (server-side copy), else None."""
    from lakehouse.storage.s3 import S3Store

    if isinstance(store, S3Store):
        client: object | None = getattr(store, "_store", None)
        return client
    return None


def _changed(key: str) -> Conflict:
    return Conflict(f"object {key!r} changed while it was being registered; register again", key=key)
