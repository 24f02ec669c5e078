"""VectorService: named indexes with validated, durable changes and searches.

A change is appended to the index's log before it is applied in memory, and
acknowledged only after both. Searches rank by vector, by keyword (BM25) or
both fused; an index linked to a dataset is kept in step with it by
`linked.py`, every `[vectord] sync_interval_secs`. What runs in the
background, loading at start, linking replayed vectors, snapshots and
keyword rebuilds, is `lifecycle.py`'s; an index still loading is listed but
answers 503 busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np

from lakehouse.config import Settings
from lakehouse.errors import (
    AlreadyExists,
    DimMismatch,
    InvalidRequest,
    LakehouseError,
    NotFound,
)
from lakehouse.runner import run_blocking
from lakehouse.storage.base import ObjectStore
from lakehouse.vectors import linked, loading
from lakehouse.vectors.durability import IndexFiles, remove_index, write_spec
from lakehouse.vectors.index import IndexSpec, VectorIndex
from lakehouse.vectors.items import (
    NewItem,
    Vector,
    check_definition,
    check_finite,
    check_unlinked,
    checked_items,
)
from lakehouse.vectors.lifecycle import Lifecycle, LiveIndex
from lakehouse.vectors.ranking import Answer, Hit
from lakehouse.vectors.records import Batch, Vectors
from lakehouse.vectors.search import search as run_search
from lakehouse.vectors.source import DatasetCatalog, Source

log = logging.getLogger("lakehouse.vectors")


class Embedding(Protocol):
    """What an embedder answers."""

    model: str
    dim: int
    vectors: list[list[float]]


class TextEmbedder(Protocol):
    """Turns texts into vectors (lakehouse.providers.embeddings.Embedder)."""

    async def embed(self, texts: list[str], model: str | None = None) -> Embedding:
        """The texts' vectors."""
        ...


class VectorService:
    """Every index of the deployment, loaded from and recorded in the object store."""

    def __init__(
        self,
        settings: Settings,
        store: ObjectStore,
        embedder: TextEmbedder,
        catalog: Callable[[], DatasetCatalog] | None = None,
    ) -> None:
        self.config = settings.vectord
        self.default_model = settings.embedd.default_model
        # A linked index's rows are embedded within the embedder's own limits (longer texts
        # are embedded by their start, as models truncate anyway; keyword search keeps them whole).
        self._embed_limits = (settings.embedd.max_texts, settings.embedd.max_text_chars)
        self.store = store
        self.embedder = embedder
        self._catalog = catalog
        self._lifecycle = Lifecycle(self.config, store, self._sync_quietly)
        # The lifecycle's own dict: an index created here is one it snapshots and closes.
        self._live = self._lifecycle.indexes

    @property
    def catalog(self) -> DatasetCatalog:
        """The dataset catalog linked indexes read (the store's own unless one was given)."""
        if self._catalog is None:
            from lakehouse.catalog import Catalog

            built = Catalog(self.store)
            self._catalog = lambda: built
        return self._catalog()

    async def load(self) -> None:
        """List every index at once; load each (snapshot, then the log after it) in the background."""
        await self._lifecycle.load()

    async def wait_loaded(self) -> None:
        """Wait until every index `load` found is ready (or its load was cancelled)."""
        await self._lifecycle.wait_loaded()

    async def wait_settled(self) -> None:
        """Wait until every index `load` found is ready and the vectors it replayed are in its graph."""
        await self._lifecycle.wait_settled()

    def _get(self, name: str) -> LiveIndex:
        live = self._live.get(name)
        if live is None:
            raise NotFound(f"no vector index named {name!r}", index=name)
        return live

    def _ready(self, name: str) -> LiveIndex:
        """The index, once it has loaded.

        Raises:
            NotFound: no such index.
            Busy: it is still loading (503 with Retry-After).
        """
        live = self._get(name)
        if live.load is not None:
            raise loading.busy(name)
        return live

    @staticmethod
    def _info(live: LiveIndex) -> dict[str, Any]:
        spec = live.index.spec
        info = {
            "name": spec.name,
            "dim": spec.dim,
            "metric": spec.metric,
            "count": live.index.count if live.load is None else live.load.progress.items,
            "model": spec.model,
            "dtype": spec.dtype,
            "created_at": spec.created_at,
            "source": spec.source,
            "synced_version": live.index.synced_version,
            "pending": live.sync.pending,
            "state": "ready",
            "engine": spec.engine,
        }
        if live.sync.error is not None:
            info["sync_error"] = live.sync.error
        if live.load is not None:
            info.update(live.load.info())
        elif live.index.pending:
            # replayed vectors found by exact scan until the background link puts them in the graph
            info["unindexed"] = live.index.pending
        return info

    async def create(
        self,
        name: str,
        dim: int,
        metric: str = "cosine",
        model: str | None = None,
        dtype: str | None = None,
        source: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Define a new, empty index and return its info; a `source` one starts filling itself.

        Raises:
            InvalidName: the name breaks the naming rule.
            InvalidRequest: dim, metric, dtype or source out of range (a column the dataset lacks).
            NotFound: the source's dataset does not exist.
            AlreadyExists: an index of that name exists.
        """
        dtype = dtype or self.config.dtype
        check_definition(name, dim, metric, dtype)
        if name in self._live:
            raise AlreadyExists(f"vector index {name!r} already exists", index=name)
        linked_to = None
        if source is not None:
            wanted = Source.parse(source)
            manifest = await self.catalog.get(wanted.dataset)
            linked_to = wanted.resolved(manifest, "metadata_columns" in source).to_dict()
        spec = IndexSpec(
            name=name,
            dim=dim,
            metric=metric,  # type: ignore[arg-type]
            model=model or self.default_model,
            dtype=dtype,  # type: ignore[arg-type]
            connectivity=self.config.connectivity,
            expansion_add=self.config.expansion_add,
            expansion_search=self.config.expansion_search,
            generation=uuid.uuid4().hex,
            created_at=datetime.now(UTC).isoformat(),
            source=linked_to,
            engine=self.config.engine if dtype == "f32" else "usearch",
        )
        try:
            await write_spec(self.store, spec)
        except AlreadyExists:
            raise AlreadyExists(f"vector index {name!r} already exists", index=name) from None
        live = LiveIndex(VectorIndex.empty(spec), IndexFiles(self.store, spec), seq=0)
        self._live[name] = live
        if linked_to is not None:
            live.sync.pending = int(getattr(manifest, "row_count", 0) or 0)
            self._lifecycle.spawn(self._sync_quietly(name))
        return self._info(live)

    async def _sync_quietly(self, name: str) -> None:
        """One sync pass whose failure is logged and shown in the index's info, not raised."""
        try:
            await self.sync(name)
        except NotFound:
            return  # deleted meanwhile
        except LakehouseError as exc:
            log.warning("index %s: sync failed: %s", name, exc)
        except Exception as exc:  # a background pass must report, not vanish with its task
            log.exception("index %s: sync failed", name)
            live = self._live.get(name)
            if live is not None:
                live.sync.error = f"sync failed: {exc}"

    async def sync(self, name: str) -> dict[str, Any]:
        """Bring a linked index up to its dataset's current version now; return its info.

        Raises:
            NotFound: no such index, or it was deleted meanwhile.
            InvalidRequest: the index follows no dataset, or the dataset's rows are unusable.
            Busy: the index is still loading.
        """
        live = self._ready(name)
        if live.index.spec.source is None:
            raise InvalidRequest(f"index {name!r} follows no dataset; create it with a source", index=name)
        async with live.sync.guard():
            try:
                work = await linked.plan(self.store, self.catalog, live.index, live.sync)
                await linked.run_pass(
                    live.index,
                    work,
                    live.sync,
                    lambda batch: asyncio.shield(self._commit(name, live, batch)),
                    lambda spec, texts: self._embed(spec, [t[: self._embed_limits[1]] for t in texts]),
                    min(linked.SYNC_BATCH, self._embed_limits[0]),
                )
            except LakehouseError as exc:
                live.sync.error = exc.message
                raise
            finally:
                live.sync.pending = 0
            live.sync.error = None
        return self._info(live)

    def indexes(self) -> list[dict[str, Any]]:
        """Info on every index, by name."""
        return [self._info(self._live[name]) for name in sorted(self._live)]

    def info(self, name: str) -> dict[str, Any]:
        """One index's info.

        Raises:
            NotFound: no such index.
        """
        return self._info(self._get(name))

    async def delete(self, name: str) -> None:
        """Delete an index and everything it holds.

        Raises:
            NotFound: no such index.
            Busy: it is still loading.
        """
        live = self._ready(name)
        async with live.lock:
            if self._live.get(name) is not live:
                raise NotFound(f"no vector index named {name!r}", index=name)
            if live.linking is not None:
                live.linking.cancel()  # a deleted index is neither relinked nor snapshotted
            for task in (live.linking, live.snapshotting, live.refreshing):
                if task is not None:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            await remove_index(self.store, live.index.spec)
            del self._live[name]

    async def add(self, name: str, items: list[NewItem]) -> tuple[int, int]:
        """Upsert items; return how many were added and the index's new count.

        Nothing of the batch is applied unless all of it is valid.

        Raises:
            NotFound: no such index.
            DimMismatch: a vector (or the model's embedding) has the wrong length.
            InvalidRequest: empty or oversized batch, bad id, NaN or infinite values.
            Busy: the index is still loading.
        """
        live = self._ready(name)
        spec = live.index.spec
        check_unlinked(spec)
        batch_items, vectors = checked_items(items, spec, self.config.max_batch)
        to_embed = [row for row, item in enumerate(batch_items) if item.vector is None]
        if to_embed:
            texts = [batch_items[row].text or "" for row in to_embed]
            vectors[to_embed] = await self._embed(spec, texts)
        check_finite(vectors, [item.id for item in batch_items])
        batch = Batch(
            op="add",
            ids=[item.id for item in batch_items],
            keys=[],
            vectors=vectors,
            metadata=[item.metadata or {} for item in batch_items],
            texts=[item.text for item in batch_items],
        )
        await asyncio.shield(self._commit(name, live, batch))
        return len(batch_items), live.index.count

    async def delete_item(self, name: str, item_id: str) -> None:
        """Delete one item.

        Raises:
            NotFound: no such index or item.
            Busy: the index is still loading.
        """
        live = self._ready(name)
        check_unlinked(live.index.spec)
        if not live.index.has(item_id):
            raise NotFound(f"index {name!r} has no item {item_id!r}", index=name, id=item_id)
        await asyncio.shield(self._commit(name, live, Batch(op="delete", ids=[item_id], keys=[])))

    async def _commit(self, name: str, live: LiveIndex, batch: Batch) -> None:
        """Log, then apply, one batch; shielded so a dropped client cannot split the two."""
        async with live.lock:
            if self._live.get(name) is not live:
                raise NotFound(f"no vector index named {name!r}", index=name)
            if batch.op == "delete":
                if not all(live.index.has(i) for i in batch.ids):
                    raise NotFound(f"index {name!r} has no item {batch.ids[0]!r}", index=name)
            else:
                start = live.index.next_key
                batch.keys = list(range(start, start + len(batch.ids)))
            await live.files.append(live.seq + 1, batch)
            live.seq += 1
            await run_blocking(live.index.apply, batch)
            live.pending += max(len(batch.ids), 1)
        self._lifecycle.refresh_keywords(live)
        self._lifecycle.start_linking(live)  # a graph compacted by this change relinks its live vectors
        if live.pending >= self.config.snapshot_every:
            self._lifecycle.start_snapshot(live)

    async def search(
        self,
        name: str,
        vectors: Sequence[Vector] | Vectors | None = None,
        text: str | None = None,
        k: int = 10,
        where: dict[str, Any] | None = None,
        mode: str = "vector",
    ) -> list[list[Hit]]:
        """The k best items for each query, best first, by vector, keyword (BM25) or both fused.

        Raises (as `answer`): NotFound, DimMismatch, InvalidRequest, Busy.
        """
        return (await self.answer(name, vectors, text, k, where, mode)).hits()

    async def answer(
        self,
        name: str,
        vectors: Sequence[Vector] | Vectors | None = None,
        text: str | None = None,
        k: int = 10,
        where: dict[str, Any] | None = None,
        mode: str = "vector",
    ) -> Answer:
        """`search`'s hits as columns, as the route renders them.

        Raises:
            NotFound: no such index.
            DimMismatch: a query has the wrong length.
            InvalidRequest: no query, bad mode or filter, k out of range, NaN or infinite values.
            Busy: the index is still loading.
        """
        live = self._ready(name)

        async def embed_text(text: str) -> Vectors:
            return await self._embed(live.index.spec, [text])

        return await run_search(
            live.index, embed_text, vectors=vectors, text=text, k=k, where=where, mode=mode
        )

    async def _embed(self, spec: IndexSpec, texts: list[str]) -> Vectors:
        result = await self.embedder.embed(texts, model=spec.model)
        if result.dim != spec.dim:
            raise DimMismatch(
                f"model {result.model!r} gives {result.dim}-dimensional vectors; "
                f"index {spec.name!r} has {spec.dim}",
                expected=spec.dim,
                got=result.dim,
            )
        return np.asarray(result.vectors, dtype=np.float32).reshape(len(texts), spec.dim)

    async def close(self) -> None:
        """Stop syncing and loading, finish running snapshots, snapshot what the log holds beyond them.

        An index still loading is left as storage holds it: it is never snapshotted half-loaded.
        """
        await self._lifecycle.close()
