"""The HNSW graph behind an index, with room for vectors not yet in it.

Three engines sit behind one small interface, chosen per index when it is
created (`IndexSpec.engine`), by measurement (docs/BENCHMARKS.md, "The
engine, chosen by measurement"): faiss for new float32 indexes, as it builds
and searches fastest here (`faiss_engine.py`), and usearch for the f16 and i8
storage types, which the others lack. Indexes keep the engine they were
created with, whose snapshots they hold: usearch for those defined before
engines were chosen, hnswlib for the float32 ones of the round before faiss.

`Graph` adds a pending set: vectors that are searchable at once, exactly, but
not yet linked into the graph. Recovery fills it from the log so an index is
searchable as soon as its log is read, however long; `drain` then moves it
into the graph a slice at a time in the background. A search merges the
graph's results with an exact scan of the pending set, so answers never miss
an acknowledged item while that runs.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Literal, Protocol

import hnswlib
import numpy as np
from usearch.compiled import MetricKind
from usearch.index import BatchMatches, Index

from lakehouse.vectors.faiss_engine import FaissGraph
from lakehouse.vectors.pending import Chunk, Rows, coalesced, lookup, scan, without
from lakehouse.vectors.records import Found, Keys, Vectors, unit_rows

Engine = Literal["faiss", "hnswlib", "usearch"]

METRICS: dict[str, MetricKind] = {"cosine": MetricKind.Cos, "l2": MetricKind.L2sq, "ip": MetricKind.IP}
SPACES = {"cosine": "cosine", "l2": "l2", "ip": "ip"}
# hnswlib reserves room for this many more vectors at a time, and grows by half when full.
HNSW_MIN_CAPACITY = 1024
THREADS = os.cpu_count() or 1
# The files of a snapshot's graph, by extension, for each engine.
SUFFIXES: dict[str, tuple[str, ...]] = {
    "faiss": ("faiss", "npz"),
    "hnswlib": ("hnsw", "npz"),
    "usearch": ("usearch",),
}
Files = dict[str, Path]


def _per_query(found: Any) -> list[Found]:
    """usearch's matches (one query's, or a batch's) as (keys, distances) per query."""
    if not isinstance(found, BatchMatches):
        return [(found.keys, found.distances)]
    return [
        (found.keys[row][: found.counts[row]], found.distances[row][: found.counts[row]])
        for row in range(len(found.counts))
    ]


class Backend(Protocol):
    """What every engine does: keyed vectors in, nearest keys out."""

    def add(self, keys: Keys, vectors: Vectors) -> None:
        """Link these vectors into the graph under these keys (new keys only)."""

    def remove(self, keys: Keys) -> None:
        """Drop these keys from the graph."""

    def search(self, queries: Vectors, k: int, threads: int) -> list[Found]:
        """Per query, up to k (key, distance) pairs, nearest first."""

    def get(self, keys: Keys) -> Vectors:
        """The stored vectors of these keys, as float32 rows."""

    @property
    def count(self) -> int:
        """How many keys the graph holds."""

    def live(self) -> tuple[Keys, Vectors]:
        """Every key the graph holds and its vector (for the exact scan of a short answer)."""

    @property
    def compactable(self) -> bool:
        """Whether the graph would be better rebuilt from its live vectors (see `Graph.remove`)."""

    def clear(self) -> None:
        """Drop every key: an empty graph."""

    def reserve(self, more: int) -> None:
        """Make room for `more` keys at once, rather than growing as they come."""

    def save(self, stem: Path) -> Files:
        """Write the graph to files named `stem` plus an extension; return them by extension."""

    def load(self, files: Files) -> None:
        """Read a graph `save` wrote."""


class UsearchGraph:
    """usearch: the engine for quantised (f16, i8) indexes."""

    def __init__(self, dim: int, metric: str, dtype: str, connectivity: int, ef_add: int, ef_search: int):
        self.options: dict[str, Any] = {
            "ndim": dim,
            "metric": METRICS[metric],
            "dtype": dtype,
            "connectivity": connectivity,
            "expansion_add": ef_add,
            "expansion_search": ef_search,
        }
        self.index = Index(**self.options)

    def add(self, keys: Keys, vectors: Vectors) -> None:
        self.index.add(keys, vectors, threads=THREADS)

    def remove(self, keys: Keys) -> None:
        self.index.remove(keys)

    def search(self, queries: Vectors, k: int, threads: int) -> list[Found]:
        return _per_query(self.index.search(queries, k, threads=threads))

    def get(self, keys: Keys) -> Vectors:
        rows: Any = self.index.get(keys, dtype="f32")
        return np.vstack(rows).astype(np.float32).reshape(len(keys), -1)

    @property
    def count(self) -> int:
        return len(self.index)

    def live(self) -> tuple[Keys, Vectors]:
        keys = np.asarray(self.index.keys, dtype=np.uint64)
        return keys, self.get(keys) if len(keys) else np.zeros((0, self.index.ndim), dtype=np.float32)

    @property
    def compactable(self) -> bool:
        return False  # usearch frees a removed key's node itself

    def clear(self) -> None:
        self.index = Index(**self.options)

    def reserve(self, more: int) -> None:
        """Nothing to do: usearch's Python index grows its own capacity as keys arrive."""

    def save(self, stem: Path) -> Files:
        path = stem.with_suffix(".usearch")
        self.index.save(str(path))
        return {"usearch": path}

    def load(self, files: Files) -> None:
        self.index.load(str(files["usearch"]))


class HnswGraph:
    """hnswlib: the engine of float32 indexes created before faiss was chosen.

    hnswlib hands stored vectors back only as Python lists (and normalised,
    for cosine), so the vectors are also kept here, one row per live key, for
    the exact paths (filters, pending merges, linked re-use) to read at numpy
    speed. Rows of removed keys are reused.
    """

    def __init__(self, dim: int, metric: str, connectivity: int, ef_add: int, ef_search: int):
        self.dim, self.metric = dim, metric
        self.connectivity, self.ef_add, self.ef_search = connectivity, ef_add, ef_search
        self.index = self._new(HNSW_MIN_CAPACITY)
        self.store: Vectors = np.zeros((0, dim), dtype=np.float32)
        self.rows: dict[int, int] = {}
        self.free: list[int] = []

    def _new(self, capacity: int) -> Any:
        index = hnswlib.Index(space=SPACES[self.metric], dim=self.dim)
        index.init_index(
            max_elements=capacity,
            M=self.connectivity,
            ef_construction=self.ef_add,
            allow_replace_deleted=True,
        )
        index.set_ef(self.ef_search)
        return index

    def reserve(self, more: int) -> None:
        need = self.index.get_current_count() + more
        if need > self.index.get_max_elements():
            self.index.resize_index(need)

    def add(self, keys: Keys, vectors: Vectors) -> None:
        need = self.index.get_current_count() + len(keys)
        if need > self.index.get_max_elements():
            self.index.resize_index(max(need, self.index.get_max_elements() * 3 // 2))
        self.index.add_items(self._prepared(vectors), keys, num_threads=THREADS, replace_deleted=True)
        reused, self.free = self.free[: len(keys)], self.free[len(keys) :]
        fresh = len(keys) - len(reused)
        top = len(self.rows) + len(self.free) + len(reused)
        if top + fresh > len(self.store):
            grown = np.zeros((max(top + fresh, len(self.store) * 3 // 2, 1024), self.dim), dtype=np.float32)
            grown[: len(self.store)] = self.store
            self.store = grown
        rows = np.array(reused + list(range(top, top + fresh)), dtype=np.int64)
        self.store[rows] = vectors
        self.rows.update(zip(keys.tolist(), rows.tolist(), strict=True))

    def remove(self, keys: Keys) -> None:
        for key in keys.tolist():
            self.index.mark_deleted(key)
            self.free.append(self.rows.pop(key))

    def search(self, queries: Vectors, k: int, threads: int) -> list[Found]:
        k = min(k, len(self.rows))
        while k > 0:
            try:
                labels, distances = self.index.knn_query(self._prepared(queries), k=k, num_threads=threads)
            except RuntimeError:
                # Deleted nodes can leave fewer than k reachable: ask for fewer.
                k //= 2
                continue
            return [(labels[row], distances[row]) for row in range(len(queries))]
        empty: Found = (np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.float32))
        return [empty for _ in range(len(queries))]

    def get(self, keys: Keys) -> Vectors:
        rows = np.fromiter((self.rows[key] for key in keys.tolist()), dtype=np.int64, count=len(keys))
        return self.store[rows]

    def _prepared(self, vectors: Vectors) -> Vectors:
        """Cosine vectors made unit length in float64 first: hnswlib normalises in float32,
        which turns components near 1e-23 or 1e20 into zeros or infinities."""
        return unit_rows(vectors) if self.metric == "cosine" else vectors

    @property
    def count(self) -> int:
        return len(self.rows)

    def live(self) -> tuple[Keys, Vectors]:
        keys = np.fromiter(self.rows, dtype=np.uint64, count=len(self.rows))
        rows = np.fromiter(self.rows.values(), dtype=np.int64, count=len(self.rows))
        return keys, self.store[rows]

    @property
    def compactable(self) -> bool:
        return False  # hnswlib reuses a removed key's node for the next one added

    def clear(self) -> None:
        self.index = self._new(HNSW_MIN_CAPACITY)
        self.store, self.rows, self.free = np.zeros((0, self.dim), dtype=np.float32), {}, []

    def save(self, stem: Path) -> Files:
        graph, vectors = stem.with_suffix(".hnsw"), stem.with_suffix(".npz")
        self.index.save_index(str(graph))
        keys = np.fromiter(self.rows, dtype=np.uint64, count=len(self.rows))
        rows = np.fromiter(self.rows.values(), dtype=np.int64, count=len(self.rows))
        with open(vectors, "wb") as fh:
            np.savez(fh, keys=keys, vectors=self.store[rows])
        return {"hnsw": graph, "npz": vectors}

    def load(self, files: Files) -> None:
        index = hnswlib.Index(space=SPACES[self.metric], dim=self.dim)
        index.load_index(str(files["hnsw"]), allow_replace_deleted=True)
        index.set_ef(self.ef_search)
        with np.load(files["npz"], allow_pickle=False) as saved:
            keys, vectors = saved["keys"], saved["vectors"]
        self.index, self.store, self.free = index, np.ascontiguousarray(vectors, dtype=np.float32), []
        self.rows = dict(zip(keys.tolist(), range(len(keys)), strict=True))


class Graph:
    """An engine's graph plus vectors searchable before they are linked into it (`pending`).

    Pending vectors are kept as the chunks they arrived in (pending.py).
    """

    def __init__(self, engine: Backend, metric: str, dim: int) -> None:
        self.engine = engine
        self.metric = METRICS[metric]
        self.dim = dim
        # Settled pending chunks (no dropped key in them) and those added since the last settle.
        self._chunks: list[Chunk] = []
        self._fresh: list[Chunk] = []
        self._dropped: set[int] = set()
        self._waiting: set[int] = set()
        # Searches settle under the index's shared lock, so the first to find work does it alone.
        self._settling = threading.Lock()
        # For one list of settled chunks: every key in them, sorted, with its chunk and row (for `get`).
        self._lookup: tuple[list[Chunk], Keys, Rows, Rows] | None = None

    @classmethod
    def build(
        cls, engine: Engine, dim: int, metric: str, dtype: str, connectivity: int, ef_add: int, ef_search: int
    ) -> Graph:
        """An empty graph on the named engine."""
        chosen: Backend
        if engine == "faiss":
            chosen = FaissGraph(dim, metric, connectivity, ef_add, ef_search)
        elif engine == "hnswlib":
            chosen = HnswGraph(dim, metric, connectivity, ef_add, ef_search)
        else:
            chosen = UsearchGraph(dim, metric, dtype, connectivity, ef_add, ef_search)
        return cls(chosen, metric, dim)

    @property
    def pending(self) -> int:
        """How many vectors wait to be linked into the graph."""
        return len(self._waiting)

    def add(self, keys: Keys, vectors: Vectors, defer: bool = False) -> None:
        """Add new keys: into the graph, or (`defer`) into the pending set for `drain`."""
        if defer:
            if len(keys):
                self._fresh.append((keys, np.asarray(vectors, dtype=np.float32).reshape(len(keys), self.dim)))
                self._waiting.update(keys.tolist())
        else:
            self.engine.add(keys, vectors)

    def remove(self, keys: Keys) -> None:
        """Drop keys, wherever they are."""
        in_graph = keys
        if self._waiting:
            waiting = np.array([key in self._waiting for key in keys.tolist()], dtype=bool)
            dropped = keys[waiting].tolist()
            self._waiting.difference_update(dropped)
            self._dropped.update(dropped)
            in_graph = keys[~waiting]
        if len(in_graph):
            self.engine.remove(in_graph)
        if self.engine.compactable and not self._waiting:
            # Rebuilt from the live vectors through the pending set: searchable
            # exactly at once, linked back by `drain` a slice at a time. Never
            # while a relink runs: it would throw back what that linked so far.
            keys, vectors = self.engine.live()
            self.engine.clear()
            if len(keys):
                self._fresh.append((keys, vectors))
                self._waiting.update(keys.tolist())

    def search(self, queries: Vectors, k: int, threads: int) -> list[Found]:
        """Per query, the k nearest keys among graph and pending, nearest first.

        A query the graph answers with fewer than k of its keys (or all it
        holds, when fewer) is answered by an exact scan of the graph's
        vectors instead: HNSW walks can end short after many deletions.
        """
        found = self.engine.search(queries, k, threads)
        want = min(k, self.engine.count)
        short = [row for row, (keys, _) in enumerate(found) if len(keys) < want]
        if short:
            held = self.engine.live()
            keys, distances = scan([held], np.asarray(queries)[short], want, self.metric, THREADS)
            for at, row in enumerate(short):
                kept = np.isfinite(distances[at])
                found[row] = (keys[at][kept], distances[at][kept])
        chunks = self._settled()
        if not chunks:
            return found
        pending_keys, pending_distances = scan(chunks, queries, k, self.metric, THREADS)
        merged = []
        for row, (keys, distances) in enumerate(found):
            all_keys = np.concatenate([keys.astype(np.uint64), pending_keys[row]])
            all_distances = np.concatenate([distances, pending_distances[row]]).astype(np.float32)
            best = np.argsort(all_distances, kind="stable")[:k]
            best = best[np.isfinite(all_distances[best])]
            merged.append((all_keys[best], all_distances[best]))
        return merged

    def get(self, keys: Keys) -> Vectors:
        """The stored vectors of these keys, in order."""
        chunks = self._settled()
        if not chunks:
            return self.engine.get(keys)
        sorted_keys, chunk_of, row_of = self._lookup_of(chunks)
        at = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
        waiting = sorted_keys[at] == keys
        out = np.empty((len(keys), self.dim), dtype=np.float32)
        if waiting.any():
            where = np.flatnonzero(waiting)
            in_chunk, rows = chunk_of[at[where]], row_of[at[where]]
            for chunk in np.unique(in_chunk).tolist():
                mine = in_chunk == chunk
                out[where[mine]] = chunks[chunk][1][rows[mine]]
        if (~waiting).any():
            out[~waiting] = self.engine.get(keys[~waiting])
        return out

    def drain(self, limit: int) -> int:
        """Link up to `limit` pending vectors into the graph; return how many still wait."""
        chunks = list(self._settled())
        if chunks:
            self.engine.reserve(self.pending)  # room for all that waits, made once
        while limit > 0 and chunks:
            keys, vectors = chunks[0]
            take = min(limit, len(keys))
            self.engine.add(keys[:take], vectors[:take])
            self._waiting.difference_update(keys[:take].tolist())
            if take == len(keys):
                chunks.pop(0)
            else:
                chunks[0] = (keys[take:], vectors[take:])
            limit -= take
        self._chunks = chunks
        return self.pending

    def save(self, stem: Path) -> Files:
        """Write the graph (it must have nothing pending) to files named `stem` plus an extension."""
        if self.pending:
            raise RuntimeError("a graph with pending vectors cannot be saved")
        return self.engine.save(stem)

    def load(self, files: Files) -> None:
        """Read a saved graph's files, by extension."""
        self.engine.load(files)

    def _lookup_of(self, chunks: list[Chunk]) -> tuple[Keys, Rows, Rows]:
        """`lookup` of these chunks, kept until the chunks change."""
        if self._lookup is None or self._lookup[0] is not chunks:
            self._lookup = chunks, *lookup(chunks)
        return self._lookup[1:]

    def _settled(self) -> list[Chunk]:
        """The pending chunks, dropped keys taken out and small chunks merged.

        The new chunks are published before the work they fold in is
        cleared, so a search that finds nothing to do never reads stale ones.
        """
        if self._fresh or self._dropped:
            with self._settling:
                if self._fresh or self._dropped:
                    self._chunks = coalesced(without(self._chunks + self._fresh, self._dropped))
                    self._fresh, self._dropped = [], set()
        return self._chunks
