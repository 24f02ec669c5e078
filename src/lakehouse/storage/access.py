"""The storage API's rules over an ObjectStore: key checks, read-only prefixes, size and concurrency caps.

The storage routes go through `StorageAccess`; the lakehouse's own modules
(catalog, ingest, vectors) use the ObjectStore directly and may write under
the reserved prefix.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from lakehouse.config import StorageConfig
from lakehouse.errors import AlreadyExists, Busy, NotFound, PreconditionFailed, ReservedKey, TooLarge
from lakehouse.storage.base import PRIVATE_PREFIX, ByteRange, ObjectInfo, ObjectStore, PutResult
from lakehouse.storage.keys import is_private, is_reserved, validate_key, validate_prefix

RETRY_AFTER_SECS = 1
# Sorts after every key under the private prefix (U+10FFFF is the last code point).
PRIVATE_SKIP = PRIVATE_PREFIX + "\U0010ffff"


@dataclass(frozen=True)
class Listing:
    """One page of a listing: the objects shown, whether more exist, and the `after` of the next page."""

    objects: list[ObjectInfo]
    truncated: bool
    next: str | None


class StorageAccess:
    """Client-facing object operations with the contract's limits applied."""

    def __init__(self, cfg: StorageConfig, store: ObjectStore) -> None:
        self.store = store
        self.max_object_bytes = cfg.max_object_bytes
        self.max_concurrent = cfg.max_concurrent
        self.in_flight = 0

    def acquire(self) -> Callable[[], None]:
        """Take one of the `max_concurrent` request slots; return its release (safe to call twice).

        Never waits: all requests share one event loop, so the check and the
        increment cannot interleave with another request.

        Raises:
            Busy: every slot is taken (503 with Retry-After).
        """
        if self.in_flight >= self.max_concurrent:
            raise Busy(
                f"storage is handling {self.in_flight} requests, its limit; retry shortly",
                headers={"Retry-After": str(RETRY_AFTER_SECS)},
                retry_after=RETRY_AFTER_SECS,
            )
        self.in_flight += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.in_flight -= 1

        return release

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one request slot for the block (see `acquire`).

        Raises:
            Busy: every slot is taken (503 with Retry-After).
        """
        release = self.acquire()
        try:
            yield
        finally:
            release()

    def check_length(self, declared: int | None) -> None:
        """Refuse a body whose declared length is already past the cap.

        Raises:
            TooLarge: `declared` exceeds `max_object_bytes`.
        """
        if declared is not None and declared > self.max_object_bytes:
            raise TooLarge(
                f"the body is {declared} bytes; the limit is {self.max_object_bytes}",
                limit=self.max_object_bytes,
            )

    async def put(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        declared: int | None = None,
        *,
        if_absent: bool = False,
        if_match: str | None = None,
    ) -> PutResult:
        """Store a client's streamed body under a client key, optionally only if absent or unchanged.

        Raises:
            InvalidKey: the key breaks the key rules.
            ReservedKey: the key is under the lakehouse's own prefix.
            TooLarge: the body is (or declares itself) past the cap; nothing is stored.
            PreconditionFailed: `if_absent` and the key exists, or `if_match` and its etag
                differs or it is absent; nothing is stored.
        """
        self._writable(key)
        self.check_length(declared)
        try:
            return await self.store.put(
                key, chunks, max_bytes=self.max_object_bytes, if_absent=if_absent, if_match=if_match
            )
        except AlreadyExists:
            raise PreconditionFailed(f"object {key!r} already exists (If-None-Match: *)", key=key) from None

    async def get(self, key: str) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
        """The object's info and its bytes (reserved keys are readable, private ones are not).

        Raises:
            InvalidKey, NotFound (also for keys under the private prefix).
        """
        return await self.store.get(self._readable(key))

    async def get_range(
        self, key: str, byte_range: ByteRange
    ) -> tuple[ObjectInfo, tuple[int, int], AsyncIterator[bytes]]:
        """One byte range of an object: its info, the inclusive span served, the bytes.

        Raises:
            InvalidKey, NotFound, RangeNotSatisfiable.
        """
        return await self.store.get_range(self._readable(key), byte_range)

    async def head(self, key: str) -> ObjectInfo:
        """The object's info.

        Raises:
            InvalidKey, NotFound (also for keys under the private prefix).
        """
        return await self.store.head(self._readable(key))

    async def delete(self, key: str) -> None:
        """Remove a client object.

        Raises:
            InvalidKey, ReservedKey, NotFound.
        """
        self._writable(key)
        await self.store.delete(key)

    async def list(self, prefix: str, limit: int, after: str | None = None) -> Listing:
        """Objects under `prefix` sorting after `after`, at most `limit`; private keys left out.

        Raises:
            InvalidKey: the prefix or `after` breaks the key rules.
        """
        if after:
            validate_key(after)
        validate_prefix(prefix)
        if prefix.startswith(PRIVATE_PREFIX):
            return Listing([], False, None)
        # A page that ends on a private key lists on from past the whole private area, so
        # that neither a page nor its `next` ever names a private key (those are the token
        # names). Keys sort as UTF-8 bytes, so every key between PRIVATE_PREFIX and
        # PRIVATE_SKIP is private: nothing shown is skipped.
        shown: list[ObjectInfo] = []
        cursor = after or None
        while True:
            page, truncated = await self.store.list(prefix, limit - len(shown), after=cursor)
            shown.extend(o for o in page if not is_private(o.key))
            if not truncated or not page:
                return Listing(shown, False, None)
            last = page[-1].key
            if len(shown) >= limit:  # the page ended on a key it shows: the next page starts after it
                return Listing(shown, True, last)
            cursor = max(last, PRIVATE_SKIP) if last.startswith(PRIVATE_PREFIX) else last

    def _readable(self, key: str) -> str:
        validate_key(key)
        if is_private(key):
            # Answered as absent: the storage API does not even confirm such keys exist.
            raise NotFound(f"no object {key!r}", key=key)
        return key

    def _writable(self, key: str) -> None:
        validate_key(key)
        if is_reserved(key):
            raise ReservedKey(f"keys under '_lakehouse/' are read-only here: {key!r}", key=key)
