"""Every index's life in the background: loaded at start, its replayed vectors linked, snapshotted.

Indexes load in the background (`loading.py`): one still loading is listed
but answers 503 busy. Once its log is read it answers, its replayed vectors
searched exactly until they are linked into the graph, a slice at a time,
then snapshotted so the next start is quick. A background snapshot every
`[vectord] snapshot_every` changed items, and every
`[vectord] snapshot_interval_secs` for any change, keeps the log short; the
keyword index is rebuilt once changes settle. `VectorService` (service.py)
answers the requests over the indexes held here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lakehouse.config import VectordConfig
from lakehouse.runner import run_blocking
from lakehouse.storage.base import ObjectStore
from lakehouse.vectors import linked, loading
from lakehouse.vectors.durability import IndexFiles, read_specs
from lakehouse.vectors.index import VectorIndex
from lakehouse.vectors.keyword import rebuild_when_settled

log = logging.getLogger("lakehouse.vectors")

# Replayed vectors are linked into the graph this many at a time, each slice
# holding the index for a fraction of a second, so searches go on meanwhile.
LINK_SLICE = 2048

SyncPass = Callable[[str], Coroutine[Any, Any, None]]


@dataclass
class LiveIndex:
    """One index in memory: its items, its files, its log position and its background tasks."""

    index: VectorIndex
    files: IndexFiles
    seq: int
    pending: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    snapshotting: asyncio.Task[None] | None = None
    linking: asyncio.Task[None] | None = None
    refreshing: asyncio.Task[None] | None = None
    sync: linked.SyncState = field(default_factory=linked.SyncState)
    # Set while the index loads from storage; `index` is then an empty stand-in.
    load: loading.Loading | None = None


class Lifecycle:
    """The background work over every index: loads, links, snapshots, keyword rebuilds, syncs."""

    def __init__(self, config: VectordConfig, store: ObjectStore, sync: SyncPass) -> None:
        """Hold the indexes by name; `sync` runs one quiet sync pass of a linked index."""
        self.config = config
        self.store = store
        self.indexes: dict[str, LiveIndex] = {}
        self._sync = sync
        self._following: asyncio.Task[None] | None = None
        self._snapshotting: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._loads: list[asyncio.Task[None]] = []
        self._links: list[asyncio.Task[None]] = []

    async def load(self) -> None:
        """List every index at once; load each (snapshot, then the log after it) in the background."""
        for spec in await read_specs(self.store):
            live = LiveIndex(
                VectorIndex.empty(spec), IndexFiles(self.store, spec), seq=0, load=loading.Loading()
            )
            self.indexes[spec.name] = live
            self._loads.append(self.spawn(self._load_one(spec.name, live)))
        self._following = asyncio.create_task(
            linked.follow(self.config.sync_interval_secs, self._linked, self._sync)
        )
        self._snapshotting = asyncio.create_task(self._snapshot_periodically())

    async def _load_one(self, name: str, live: LiveIndex) -> None:
        """Recover one index, then make it ready; a linked one syncs at once (the follower skipped it)."""
        assert live.load is not None
        started = time.perf_counter()
        found = await loading.recover(live.files, live.load)
        live.index, live.seq, live.pending, live.load = found.index, found.seq, found.replayed, None
        log.info(
            "index %s: %d items loaded (%d log records replayed) in %.0f ms",
            name,
            found.index.count,
            found.replayed,
            (time.perf_counter() - started) * 1000,
        )
        self.refresh_keywords(live)
        if live.index.spec.source is not None:
            self.spawn(self._sync(name))
        self.start_linking(live)

    def start_linking(self, live: LiveIndex) -> None:
        """Link the index's pending vectors (replayed, or a compacted graph's) in the background."""
        idle = live.linking is None or live.linking.done()
        if live.index.pending and idle:
            live.linking = self.spawn(self._link(live))
            self._links = [task for task in self._links if not task.done()] + [live.linking]

    async def _link(self, live: LiveIndex) -> None:
        """Link an index's pending vectors into its graph, then snapshot so the next start is quick."""
        started, total = time.perf_counter(), live.index.pending
        try:
            while await run_blocking(live.index.link_pending, LINK_SLICE):
                await asyncio.sleep(0)
        except Exception:
            # Said now, not when the task is collected at exit (`_links` keeps it). The
            # vectors stay pending, searched exactly; the log still holds them.
            log.exception("index %s: linking %d pending vectors failed", live.index.spec.name, total)
            return
        log.info(
            "index %s: %d pending vectors linked in %.0f ms",
            live.index.spec.name,
            total,
            (time.perf_counter() - started) * 1000,
        )
        self.start_snapshot(live)

    async def _snapshot_periodically(self) -> None:
        """Every `snapshot_interval_secs`, snapshot each ready index with changes its snapshot lacks."""
        while True:
            await asyncio.sleep(self.config.snapshot_interval_secs)
            for live in list(self.indexes.values()):
                if live.load is None:
                    self.start_snapshot(live)

    def start_snapshot(self, live: LiveIndex) -> None:
        """Snapshot in the background, unless one runs, nothing changed, vectors wait or it was deleted."""
        idle = live.snapshotting is None or live.snapshotting.done()
        current = self.indexes.get(live.index.spec.name) is live
        if live.pending and not live.index.pending and idle and current:
            live.snapshotting = asyncio.create_task(self.snapshot(live))

    async def snapshot(self, live: LiveIndex) -> None:
        """Save the graph under the index's lock, upload it after; log and carry on on failure."""
        try:
            with tempfile.TemporaryDirectory(prefix="lakehouse-vec-") as tmp:
                async with live.lock:
                    seq, covered = live.seq, live.pending
                    if not covered or live.index.pending:
                        return
                    files, state = await run_blocking(live.index.save, Path(tmp) / "graph")
                await live.files.put_snapshot(seq, files, state)
            live.pending -= covered
        except Exception:
            log.exception("index %s: snapshot failed; the log still holds every change", live.index.spec.name)

    def refresh_keywords(self, live: LiveIndex) -> None:
        """Rebuild the keyword index in the background once changes settle (one task per index)."""
        index = live.index
        if index.keywords_stale and (live.refreshing is None or live.refreshing.done()):
            live.refreshing = asyncio.create_task(
                rebuild_when_settled(index.spec.name, lambda: index.keywords_stale, index.refresh_keywords)
            )

    async def wait_loaded(self) -> None:
        """Wait until every index `load` found is ready (or its load was cancelled)."""
        if self._loads:
            await asyncio.wait(self._loads)

    async def wait_settled(self) -> None:
        """Wait until every index `load` found is ready and the vectors it replayed are in its graph."""
        await self.wait_loaded()
        if self._links:
            await asyncio.wait(self._links)

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run `work` in the background; `close` cancels it."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _linked(self) -> list[str]:
        return [
            name
            for name, live in self.indexes.items()
            if live.load is None and live.index.spec.source is not None
        ]

    async def close(self) -> None:
        """Stop syncing and loading, finish running snapshots, snapshot what the log holds beyond them.

        An index still loading is left as storage holds it: it is never snapshotted half-loaded.
        """
        for task in [self._following, self._snapshotting, *self._tasks]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for live in list(self.indexes.values()):
            if live.load is not None:
                continue
            if live.refreshing is not None:
                live.refreshing.cancel()
            if live.snapshotting is not None:
                with contextlib.suppress(Exception):
                    await live.snapshotting
            if live.pending and not live.index.pending:
                await self.snapshot(live)
        self.indexes.clear()
