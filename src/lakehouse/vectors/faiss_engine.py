"""faiss's HNSW (`IndexHNSWFlat`): the engine of new float32 indexes, chosen by measurement.

On this project's bench (docs/BENCHMARKS.md, "The engine, chosen by
measurement") it built and searched fastest of the three HNSW engines at the
same graph parameters and recall. Its graph cannot delete, so a removed key's
node stays as a tombstone: still walked through, so the graph stays as well
connected as it was built, but never answered, because every search that
could meet one passes faiss a bitmap of the live positions. faiss still
counts tombstones in its walk's bounded queue, so near many of them a walk
can end with fewer than k live hits: such queries are walked again deeper,
and `Graph.search` scans exactly whatever is still short. Once tombstones
outnumber the live nodes the graph is `compactable`: `Graph` then empties it
and moves the live vectors to its pending set, searchable exactly at once and
linked back in the background a slice at a time, so the rebuild never holds
the index for longer than one slice and the graph stays within twice the
index's size.

The bitmap is made by the writers (under the index's write lock) and only
read by searches: faiss's selector holds a bare pointer into it, so a search
keeps its own reference to both until faiss returns.

faiss numbers vectors by position (0, 1, ...); the index's keys are mapped
onto positions here. The vectors are also kept here as given, one row per
position, for the exact paths (filters, pending merges) and because cosine
vectors enter faiss normalised. faiss is imported with the first graph built:
it takes a tenth of a second or more, which a server with no float32 index
should not pay at start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from lakehouse.vectors.records import Found, Keys, Vectors, unit_rows

# Room made for positions at a time, at least (then growth by half).
MIN_CAPACITY = 1024


def _faiss() -> Any:
    import faiss

    return faiss


class FaissGraph:
    """Keyed float32 vectors in a faiss HNSW graph, with tombstones for removed keys."""

    index: Any
    # By position: the vector as given, its key, whether it is live.
    store: Vectors
    labels: Keys
    alive: npt.NDArray[np.bool_]
    positions: dict[int, int]  # key -> position, live keys only
    dead: int
    # The live positions packed for faiss, and its selector over them; None while nothing is dead.
    _bitmap: tuple[npt.NDArray[np.uint8], Any] | None

    def __init__(self, dim: int, metric: str, connectivity: int, ef_add: int, ef_search: int):
        self.dim, self.metric = dim, metric
        self.connectivity, self.ef_add, self.ef_search = connectivity, ef_add, ef_search
        self.clear()

    def _new(self) -> Any:
        faiss = _faiss()
        kind = faiss.METRIC_L2 if self.metric == "l2" else faiss.METRIC_INNER_PRODUCT
        index = faiss.IndexHNSWFlat(self.dim, self.connectivity, kind)
        index.hnsw.efConstruction = self.ef_add
        index.hnsw.efSearch = self.ef_search
        return index

    @property
    def size(self) -> int:
        """Positions in the graph, tombstones included."""
        return int(self.index.ntotal)

    @property
    def count(self) -> int:
        """Live keys in the graph."""
        return len(self.positions)

    def live(self) -> tuple[Keys, Vectors]:
        """Every live key and its vector, in position order."""
        at = np.flatnonzero(self.alive[: self.size])
        return self.labels[at], self.store[at]

    def reserve(self, more: int) -> None:
        self._grow(self.size + more)

    def add(self, keys: Keys, vectors: Vectors) -> None:
        """Link vectors under keys; a key already here has its old node made a tombstone first."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(len(keys), self.dim)
        if not self.positions.keys().isdisjoint(keys.tolist()):
            self.remove(np.array([key for key in keys.tolist() if key in self.positions], dtype=np.uint64))
        start = self.size
        self._grow(start + len(keys))
        end = start + len(keys)
        self.store[start:end] = vectors
        self.labels[start:end] = keys
        self.alive[start:end] = True
        self.index.add(self._prepared(vectors))
        self.positions.update(zip(keys.tolist(), range(start, end), strict=True))
        self._mark()

    def remove(self, keys: Keys) -> None:
        for key in keys.tolist():
            position = self.positions.pop(key)
            self.alive[position] = False
            self.dead += 1
        self._mark()

    @property
    def compactable(self) -> bool:
        """Whether tombstones outnumber the live nodes (rebuilding then costs less than they did)."""
        return self.dead > len(self.positions)

    def clear(self) -> None:
        """Drop every node, live or not: an empty graph."""
        self.index = self._new()
        self.store = np.zeros((0, self.dim), dtype=np.float32)
        self.labels = np.zeros(0, dtype=np.uint64)
        self.alive = np.zeros(0, dtype=bool)
        self.positions, self.dead, self._bitmap = {}, 0, None

    def search(self, queries: Vectors, k: int, threads: int) -> list[Found]:
        """Per query, up to k live (key, distance) pairs, nearest first.

        `threads` is not applied per call: faiss answers one query on the
        calling thread, and a batch on its OpenMP threads (one a core).
        """
        k = min(k, len(self.positions))
        if k <= 0:
            empty: Found = (np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.float32))
            return [empty for _ in range(len(queries))]
        prepared = self._prepared(queries)
        bitmap = self._bitmap  # held until faiss returns: the selector points into it
        distances, positions = self._walk(prepared, k, max(self.ef_search, k), bitmap)
        if bitmap is not None:
            short = np.flatnonzero((positions < 0).any(axis=1))
            if len(short):
                # Tombstones filled the walk's queue: walk again, deeper by their share.
                ef = min(self.size, max(self.ef_search, k) * 4 * -(-self.size // len(self.positions)))
                distances[short], positions[short] = self._walk(prepared[short], k, ef, bitmap)
        if self.metric != "l2":
            distances = 1.0 - distances  # hnswlib and usearch report 1 - similarity; faiss the similarity
        keys = self.labels[np.maximum(positions, 0)]
        if (positions >= 0).all():
            return list(zip(keys, distances, strict=True))
        return [(keys[row][at >= 0], distances[row][at >= 0]) for row, at in enumerate(positions)]

    def get(self, keys: Keys) -> Vectors:
        rows = np.fromiter((self.positions[key] for key in keys.tolist()), dtype=np.int64, count=len(keys))
        return self.store[rows]

    def save(self, stem: Path) -> dict[str, Path]:
        graph, vectors = stem.with_suffix(".faiss"), stem.with_suffix(".npz")
        _faiss().write_index(self.index, str(graph))
        size = self.size
        with open(vectors, "wb") as fh:
            np.savez(fh, keys=self.labels[:size], alive=self.alive[:size], vectors=self.store[:size])
        return {"faiss": graph, "npz": vectors}

    def load(self, files: dict[str, Path]) -> None:
        """Read what `save` wrote.

        Raises:
            ValueError: the graph and its key file disagree on how many positions there are.
        """
        index = _faiss().read_index(str(files["faiss"]))
        with np.load(files["npz"], allow_pickle=False) as saved:
            keys, alive, vectors = saved["keys"], saved["alive"], saved["vectors"]
        if not (int(index.ntotal) == len(keys) == len(alive) == len(vectors)):
            raise ValueError(f"a faiss snapshot holds {index.ntotal} vectors but {len(keys)} keys")
        index.hnsw.efSearch = self.ef_search
        self.index = index
        self.labels = keys.astype(np.uint64)
        self.alive = alive.astype(bool)
        self.store = np.ascontiguousarray(vectors, dtype=np.float32)
        live = np.flatnonzero(self.alive)
        self.positions = dict(zip(self.labels[live].tolist(), live.tolist(), strict=True))
        self.dead = len(keys) - len(live)
        self._mark()

    def _walk(
        self, prepared: Vectors, k: int, ef: int, bitmap: tuple[npt.NDArray[np.uint8], Any] | None
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """faiss's search: distances and positions (-1 past the hits found), live positions only."""
        params = _faiss().SearchParametersHNSW()
        params.efSearch = ef
        if bitmap is not None:
            params.sel = bitmap[1]
        distances, positions = self.index.search(prepared, k, params=params)
        return distances, positions

    def _prepared(self, vectors: Vectors) -> Vectors:
        """Vectors as faiss takes them: contiguous float32, unit length for cosine (`unit_rows`)."""
        if self.metric == "cosine":
            return unit_rows(vectors)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _mark(self) -> None:
        """Pack the live positions for faiss's selector (writers only; None while nothing is dead)."""
        if not self.dead:
            self._bitmap = None
            return
        faiss = _faiss()
        bits = np.packbits(self.alive[: self.size], bitorder="little")
        self._bitmap = (bits, faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits)))

    def _grow(self, need: int) -> None:
        if need <= len(self.labels):
            return
        capacity = max(need, len(self.labels) * 3 // 2, MIN_CAPACITY)
        store = np.zeros((capacity, self.dim), dtype=np.float32)
        labels = np.zeros(capacity, dtype=np.uint64)
        alive = np.zeros(capacity, dtype=bool)
        size = self.size
        store[:size], labels[:size], alive[:size] = self.store[:size], self.labels[:size], self.alive[:size]
        self.store, self.labels, self.alive = store, labels, alive
