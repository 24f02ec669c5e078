"""VectorService: named indexes with validated, durable changes and searches.

A change is appended to the index's log before it is applied in memory, and
acknowledged only after both; a background snapshot every
`[vectord] snapshot_every` changed items keeps the log short.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lakehouse.config import Settings
from lakehouse.errors import AlreadyExists, DimMismatch, InvalidName, InvalidRequest, NotFound
from lakehouse.runner import run_blocking
from lakehouse.storage.base import ObjectStore
from lakehouse.vectors.durability import IndexFiles, read_specs, remove_index, write_spec
from lakehouse.vectors.index import METRICS, Hit, IndexSpec, VectorIndex
from lakehouse.vectors.records import Batch, Vectors

log = logging.getLogger("lakehouse.vectors")

NAME = re.compile(r"[a-z_][a-z0-9_-]{0,62}")
MAX_DIM = 65536
MAX_ID_CHARS = 512
MAX_K = 1000
DTYPES = ("f32", "f16", "i8")


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


@dataclass
class NewItem:
    """One item to upsert: a vector, or a text to embed, and its metadata."""

    id: str
    vector: list[float] | None = None
    text: str | None = None
    metadata: dict[str, Any] | None = None


@dataclass
class _Live:
    index: VectorIndex
    files: IndexFiles
    seq: int
    pending: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    snapshotting: asyncio.Task[None] | None = None


class VectorService:
    """Every index of the deployment, loaded from and recorded in the object store."""

    def __init__(self, settings: Settings, store: ObjectStore, embedder: TextEmbedder) -> None:
        self.config = settings.vectord
        self.default_model = settings.embedd.default_model
        self.store = store
        self.embedder = embedder
        self._live: dict[str, _Live] = {}

    async def load(self) -> None:
        """Load every index: newest snapshot, then the log after it."""
        for spec in await read_specs(self.store):
            started = time.perf_counter()
            files = IndexFiles(self.store, spec)
            found = await files.recover()
            self._live[spec.name] = _Live(found.index, files, found.seq, pending=found.replayed)
            log.info(
                "index %s: %d items loaded (%d log records replayed) in %.0f ms",
                spec.name,
                found.index.count,
                found.replayed,
                (time.perf_counter() - started) * 1000,
            )

    def _get(self, name: str) -> _Live:
        live = self._live.get(name)
        if live is None:
            raise NotFound(f"no vector index named {name!r}", index=name)
        return live

    @staticmethod
    def _info(live: _Live) -> dict[str, Any]:
        spec = live.index.spec
        return {
            "name": spec.name,
            "dim": spec.dim,
            "metric": spec.metric,
            "count": live.index.count,
            "model": spec.model,
            "dtype": spec.dtype,
            "created_at": spec.created_at,
        }

    async def create(
        self,
        name: str,
        dim: int,
        metric: str = "cosine",
        model: str | None = None,
        dtype: str | None = None,
    ) -> dict[str, Any]:
        """Define a new, empty index and return its info.

        Raises:
            InvalidName: the name breaks the naming rule.
            InvalidRequest: dim, metric or dtype out of range.
            AlreadyExists: an index of that name exists.
        """
        if not NAME.fullmatch(name):
            raise InvalidName(
                f"index name {name!r} must match {NAME.pattern} (lowercase letters, digits, _ and -)"
            )
        if not 1 <= dim <= MAX_DIM:
            raise InvalidRequest(f"dim must be between 1 and {MAX_DIM}, got {dim}")
        if metric not in METRICS:
            raise InvalidRequest(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
        dtype = dtype or self.config.dtype
        if dtype not in DTYPES:
            raise InvalidRequest(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if dtype == "i8" and metric != "cosine":
            # usearch quantises i8 for unit vectors; other metrics would get scaled distances.
            raise InvalidRequest(f"dtype i8 works with the cosine metric only, not {metric!r}")
        if name in self._live:
            raise AlreadyExists(f"vector index {name!r} already exists", index=name)
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
        )
        try:
            await write_spec(self.store, spec)
        except AlreadyExists:
            raise AlreadyExists(f"vector index {name!r} already exists", index=name) from None
        live = _Live(VectorIndex.empty(spec), IndexFiles(self.store, spec), seq=0)
        self._live[name] = live
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
        """
        live = self._get(name)
        async with live.lock:
            if self._live.get(name) is not live:
                raise NotFound(f"no vector index named {name!r}", index=name)
            if live.snapshotting is not None:
                with contextlib.suppress(Exception):
                    await live.snapshotting
            await remove_index(self.store, live.index.spec)
            del self._live[name]

    async def add(self, name: str, items: list[NewItem]) -> tuple[int, int]:
        """Upsert items; return how many were added and the index's new count.

        Nothing of the batch is applied unless all of it is valid.

        Raises:
            NotFound: no such index.
            DimMismatch: a vector (or the model's embedding) has the wrong length.
            InvalidRequest: empty or oversized batch, bad id, NaN or infinite values.
        """
        live = self._get(name)
        spec = live.index.spec
        if not items:
            raise InvalidRequest("items must not be empty")
        if len(items) > self.config.max_batch:
            raise InvalidRequest(
                f"{len(items)} items is more than the {self.config.max_batch}-item batch limit",
                limit=self.config.max_batch,
            )
        unique: dict[str, NewItem] = {}
        for item in items:
            _check_id(item.id)
            if item.vector is None and item.text is None:
                raise InvalidRequest(f"item {item.id!r} needs a vector or a text", id=item.id)
            if item.vector is not None and len(item.vector) != spec.dim:
                raise DimMismatch(
                    f"item {item.id!r} has {len(item.vector)} dimensions; index {name!r} has {spec.dim}",
                    id=item.id,
                    expected=spec.dim,
                    got=len(item.vector),
                )
            unique.pop(item.id, None)
            unique[item.id] = item  # the last of repeated ids wins, in its position
        batch_items = list(unique.values())
        vectors = np.zeros((len(batch_items), spec.dim), dtype=np.float32)
        to_embed = [row for row, item in enumerate(batch_items) if item.vector is None]
        with np.errstate(over="ignore"):  # values past float32 become inf, refused below
            for row, item in enumerate(batch_items):
                if item.vector is not None:
                    vectors[row] = item.vector
        if to_embed:
            texts = [batch_items[row].text or "" for row in to_embed]
            vectors[to_embed] = await self._embed(spec, texts)
        _check_finite(vectors, [item.id for item in batch_items])
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
        """
        live = self._get(name)
        if not live.index.has(item_id):
            raise NotFound(f"index {name!r} has no item {item_id!r}", index=name, id=item_id)
        await asyncio.shield(self._commit(name, live, Batch(op="delete", ids=[item_id], keys=[])))

    async def _commit(self, name: str, live: _Live, batch: Batch) -> None:
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
            live.pending += len(batch.ids)
        if live.pending >= self.config.snapshot_every and (
            live.snapshotting is None or live.snapshotting.done()
        ):
            live.snapshotting = asyncio.create_task(self._snapshot(live))

    async def _snapshot(self, live: _Live) -> None:
        """Save the graph under the index's lock, upload it after; log and carry on on failure."""
        try:
            with tempfile.TemporaryDirectory(prefix="lakehouse-vec-") as tmp:
                path = Path(tmp) / "graph.usearch"
                async with live.lock:
                    seq, covered = live.seq, live.pending
                    if not covered:
                        return
                    state = await run_blocking(live.index.save, path)
                await live.files.put_snapshot(seq, path, state)
            live.pending -= covered
        except Exception:
            log.exception("index %s: snapshot failed; the log still holds every change", live.index.spec.name)

    async def search(
        self,
        name: str,
        vectors: list[list[float]] | None = None,
        text: str | None = None,
        k: int = 10,
        where: dict[str, Any] | None = None,
    ) -> list[list[Hit]]:
        """The k best items for each query vector (or for the embedded text), best first.

        Raises:
            NotFound: no such index.
            DimMismatch: a query has the wrong length.
            InvalidRequest: no query, k out of range, NaN or infinite values.
        """
        live = self._get(name)
        spec = live.index.spec
        if not 1 <= k <= MAX_K:
            raise InvalidRequest(f"k must be between 1 and {MAX_K}, got {k}")
        if vectors is None:
            if text is None or not text.strip():
                raise InvalidRequest("give a vector, vectors or a non-empty text to search with")
            queries = await self._embed(spec, [text])
        else:
            if not vectors:
                raise InvalidRequest("vectors must not be empty")
            for vector in vectors:
                if len(vector) != spec.dim:
                    raise DimMismatch(
                        f"query has {len(vector)} dimensions; index {name!r} has {spec.dim}",
                        expected=spec.dim,
                        got=len(vector),
                    )
            with np.errstate(over="ignore"):
                queries = np.asarray(vectors, dtype=np.float32)
            _check_finite(queries, None)
        return await run_blocking(live.index.search, queries, k, where)

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
        """Finish running snapshots and snapshot what the log holds beyond them."""
        for live in list(self._live.values()):
            if live.snapshotting is not None:
                with contextlib.suppress(Exception):
                    await live.snapshotting
            if live.pending:
                await self._snapshot(live)
        self._live.clear()


def _check_id(item_id: str) -> None:
    if not item_id or len(item_id) > MAX_ID_CHARS:
        raise InvalidRequest(f"item ids must be 1 to {MAX_ID_CHARS} characters", id=item_id)


def _check_finite(vectors: Vectors, ids: list[str] | None) -> None:
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        which = f"item {ids[row]!r}" if ids is not None else "the query"
        raise InvalidRequest(f"{which} has a NaN or infinite value (or one beyond float32's range)")
