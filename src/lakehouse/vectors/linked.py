"""Keeping a linked index in step with its dataset.

One pass reads the dataset's current version, compares each row's digest
with the one stored beside its item, and then, in bounded batches: embeds
and upserts the rows that are new or whose text changed, upserts with the
stored vector the rows whose metadata alone changed, deletes the items whose
rows are gone, and finally logs the version it reflects. Every batch is an
ordinary logged change carrying the digests, so after a crash the next pass
finds the acknowledged rows unchanged and embeds only the rest. Embedding
awaits the provider with no lock held; searches go on throughout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from lakehouse.errors import InvalidRequest, LakehouseError, NotFound
from lakehouse.runner import run_blocking
from lakehouse.storage.base import ObjectStore
from lakehouse.vectors.index import IndexSpec, VectorIndex
from lakehouse.vectors.records import Batch, Vectors
from lakehouse.vectors.source import DatasetCatalog, Row, Source, read_rows

log = logging.getLogger("lakehouse.vectors")

SYNC_BATCH = 256
DELETE_BATCH = 1000


@dataclass
class Plan:
    """What one pass must do."""

    version: int | None
    embed: list[Row]
    restamp: list[Row]
    delete: list[str]

    @property
    def size(self) -> int:
        """How many items the pass changes."""
        return len(self.embed) + len(self.restamp) + len(self.delete)


@dataclass
class SyncState:
    """A linked index's progress, shown in its info."""

    pending: int = 0
    error: str | None = None
    lock: asyncio.Lock | None = None
    # The dataset version whose rows were refused, and why: versions never change, so it is not read again.
    refused: tuple[int, str] | None = None

    def guard(self) -> asyncio.Lock:
        """The lock that lets one pass run at a time."""
        if self.lock is None:
            self.lock = asyncio.Lock()
        return self.lock


Commit = Callable[[Batch], Awaitable[None]]
Embed = Callable[[IndexSpec, list[str]], Awaitable[Vectors]]


async def plan(store: ObjectStore, catalog: DatasetCatalog, index: VectorIndex, state: SyncState) -> Plan:
    """Compare the dataset's current version with the index.

    A dataset that no longer exists plans the deletion of every item.

    Raises:
        InvalidRequest: a source column is gone, or the id column is empty or repeats.
    """
    spec = index.spec
    assert spec.source is not None
    source = Source.parse(spec.source)
    try:
        manifest = await catalog.get(source.dataset)
    except NotFound:
        return Plan(None, [], [], await run_blocking(_all_ids, index))
    version = int(manifest.version)
    if version == index.synced_version:
        return Plan(version, [], [], [])
    if state.refused is not None and state.refused[0] == version:
        raise InvalidRequest(state.refused[1], dataset=source.dataset, version=version)
    try:
        rows = await read_rows(store, manifest, source, spec.model)
    except InvalidRequest as exc:
        state.refused = (version, exc.message)
        raise
    return await run_blocking(_diff, index, version, rows)


def _all_ids(index: VectorIndex) -> list[str]:
    with index.lock.read():
        return list(index.keys)


def _diff(index: VectorIndex, version: int, rows: list[Row]) -> Plan:
    embed: list[Row] = []
    restamp: list[Row] = []
    with index.lock.read():
        for row in rows:
            key = index.keys.get(row.id)
            item = None if key is None else index.items[key]
            if item is None or item.digest != row.digest:
                embed.append(row)
            elif item.metadata != row.metadata or item.text != row.text:
                restamp.append(row)
        present = {row.id for row in rows}
        gone = [item_id for item_id in index.keys if item_id not in present]
    return Plan(version, embed, restamp, gone)


async def run_pass(
    index: VectorIndex, work: Plan, state: SyncState, commit: Commit, embed: Embed, batch: int | None = None
) -> None:
    """Carry out a plan in batches of `batch` rows (`SYNC_BATCH`), then log the version it reflects."""
    spec = index.spec
    batch = batch or SYNC_BATCH
    state.pending = work.size
    for start in range(0, len(work.embed), batch):
        rows = work.embed[start : start + batch]
        vectors = await embed(spec, [row.text for row in rows])
        await commit(_upsert(rows, vectors))
        state.pending -= len(rows)
    for start in range(0, len(work.restamp), batch):
        rows = work.restamp[start : start + batch]
        vectors = await run_blocking(index.vectors_of, [row.id for row in rows])
        await commit(_upsert(rows, vectors))
        state.pending -= len(rows)
    for start in range(0, len(work.delete), DELETE_BATCH):
        ids = [i for i in work.delete[start : start + DELETE_BATCH] if index.has(i)]
        if ids:
            await commit(Batch(op="delete", ids=ids, keys=[]))
        state.pending -= len(work.delete[start : start + DELETE_BATCH])
    if work.size or work.version != index.synced_version:
        await commit(Batch(op="synced", ids=[], keys=[], version=work.version))
    state.pending = 0


def _upsert(rows: list[Row], vectors: Vectors) -> Batch:
    return Batch(
        op="add",
        ids=[row.id for row in rows],
        keys=[],
        vectors=vectors,
        metadata=[row.metadata for row in rows],
        texts=[row.text for row in rows],
        digests=[row.digest for row in rows],
    )


async def follow(
    interval: float, linked: Callable[[], list[str]], sync_one: Callable[[str], Awaitable[Any]]
) -> None:
    """Sync every linked index now and then every `interval` seconds, until cancelled."""
    while True:
        for name in linked():
            try:
                await sync_one(name)
            except NotFound:
                continue  # deleted meanwhile
            except LakehouseError as exc:
                log.warning("index %s: sync failed: %s", name, exc)
            except Exception:
                log.exception("index %s: sync failed", name)
        await asyncio.sleep(interval)
