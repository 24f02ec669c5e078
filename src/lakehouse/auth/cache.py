"""Every process's view of the token records, kept fresh without touching the hot path.

The cache maps token hashes to records. It is refreshed from the store by one
listing of the tokens prefix, re-reading only records whose etag changed:

- younger than `fresh_secs` (2 s): used as it is;
- older: used as it is while one refresh runs in the background;
- older than `stale_secs` (4 s, e.g. after an idle spell): the request waits
  for the refresh, so a revoked token never works more than ~4 s later;
- a token it does not know triggers one refresh when the last one is older
  than `miss_secs` (1 s), so a brand-new token works almost at once while a
  flood of bad tokens costs the store at most one listing a second.

Refreshes never overlap: callers that need one share the one in flight.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Callable

from lakehouse.auth.tokens import TOKENS_PREFIX, TokenRecord, hash_token
from lakehouse.errors import NotFound
from lakehouse.storage import ObjectStore

log = logging.getLogger("lakehouse.auth")


class TokenCache:
    """Token hash -> record, refreshed from the object store every couple of seconds."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        fresh_secs: float = 2.0,
        stale_secs: float = 4.0,
        miss_secs: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.fresh_secs = fresh_secs
        self.stale_secs = stale_secs
        self.miss_secs = miss_secs
        self._clock = clock
        self._by_hash: dict[str, TokenRecord] = {}
        # key -> (etag, record) of what the last refresh read.
        self._by_key: dict[str, tuple[str, TokenRecord]] = {}
        self._loaded_at: float | None = None  # last successful refresh
        self._tried_at = float("-inf")  # last attempt, successful or not
        self._inflight: asyncio.Task[None] | None = None

    async def lookup(self, token: str) -> TokenRecord | None:
        """The record of `token`, or None when no live record holds its hash (expiry not checked)."""
        await self._keep_fresh()
        digest = hash_token(token)
        record = self._match(digest)
        if record is None and self._clock() - self._tried_at >= self.miss_secs:
            await self.refresh()
            record = self._match(digest)
        return record

    def _match(self, digest: str) -> TokenRecord | None:
        record = self._by_hash.get(digest)
        if record is not None and hmac.compare_digest(record.sha256, digest):
            return record
        return None

    @property
    def ready(self) -> bool:
        """Whether the records were ever read (False while the store cannot be reached at start)."""
        return self._loaded_at is not None

    async def _keep_fresh(self) -> None:
        now = self._clock()
        age = float("inf") if self._loaded_at is None else now - self._loaded_at
        if age < self.fresh_secs:
            return
        # A failing store is retried at most every miss_secs, whoever asks.
        may_try = self._inflight is not None or now - self._tried_at >= self.miss_secs
        if age >= self.stale_secs:
            if may_try:
                await self.refresh()
        elif may_try:
            self._start_refresh()

    def _start_refresh(self) -> asyncio.Task[None]:
        if self._inflight is None:
            self._inflight = asyncio.get_running_loop().create_task(self._refresh_once())
        return self._inflight

    async def refresh(self) -> None:
        """Re-read the token records now (sharing a refresh already under way)."""
        await asyncio.shield(self._start_refresh())

    async def _refresh_once(self) -> None:
        self._tried_at = self._clock()
        try:
            await self._reload()
            self._loaded_at = self._clock()
        except Exception as exc:  # the store is down: keep what we had, try again later
            log.warning("cannot refresh the token records: %s", type(exc).__name__)
        finally:
            self._inflight = None

    async def _reload(self) -> None:
        infos, _ = await self.store.list(TOKENS_PREFIX)
        by_key: dict[str, tuple[str, TokenRecord]] = {}
        for info in infos:
            if not info.key.endswith(".json"):
                continue
            known = self._by_key.get(info.key)
            if known is not None and known[0] == info.etag:
                by_key[info.key] = known
                continue
            try:
                record = TokenRecord.from_json(json.loads(await self.store.get_bytes(info.key)))
            except NotFound:
                continue  # revoked while we listed
            except ValueError as exc:
                log.warning("ignoring the malformed token record %s: %s", info.key, exc)
                continue
            by_key[info.key] = (info.etag, record)
        self._by_key = by_key
        self._by_hash = {record.sha256: record for _, record in by_key.values()}

    async def aclose(self) -> None:
        """Wait for a refresh in flight, then close the store."""
        task = self._inflight
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        await self.store.close()
