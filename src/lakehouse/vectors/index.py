"""One HNSW index in memory: usearch graph, string ids, metadata and filter postings.

Everything here is synchronous and thread-safe (a readers-writer lock lets
searches run together and gives a change the index to itself); the service
calls it through `run_blocking` so the event loop never waits on usearch.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from usearch.compiled import MetricKind
from usearch.index import BatchMatches, Index
from usearch.index import search as exact_search

from lakehouse.vectors.records import Batch, Vectors

Metric = Literal["cosine", "l2", "ip"]
DType = Literal["f32", "f16", "i8"]
METRICS: dict[str, MetricKind] = {"cosine": MetricKind.Cos, "l2": MetricKind.L2sq, "ip": MetricKind.IP}

# A filter matching at most this many items is answered exactly over just
# those items; broader filters walk the graph with a depth scaled to how
# rare the matches are (see `_filtered`).
EXACT_FILTER_MAX = 4096


@dataclass(frozen=True)
class IndexSpec:
    """An index's definition: what it was created with."""

    name: str
    dim: int
    metric: Metric
    model: str
    dtype: DType
    connectivity: int
    expansion_add: int
    expansion_search: int
    generation: str
    created_at: str

    def to_json(self) -> bytes:
        """The definition as stored."""
        return json.dumps(self.__dict__, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> IndexSpec:
        """A stored definition."""
        return cls(**json.loads(data))


@dataclass
class Item:
    """What an index keeps beside each vector."""

    id: str
    metadata: dict[str, Any]
    text: str | None = None


@dataclass(frozen=True)
class Hit:
    """One search result."""

    id: str
    score: float
    distance: float
    metadata: dict[str, Any]
    text: str | None = None


class ReadWriteLock:
    """Many readers or one writer; a waiting writer holds back new readers."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        """Hold the lock shared."""
        with self._cond:
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        """Hold the lock exclusively."""
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


def _value_key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass
class VectorIndex:
    """An index's live state; `apply` changes it, `search` reads it."""

    spec: IndexSpec
    graph: Index
    items: dict[int, Item] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)
    next_key: int = 0
    postings: dict[str, dict[str, set[int]]] = field(default_factory=dict)
    lock: ReadWriteLock = field(default_factory=ReadWriteLock)

    @classmethod
    def empty(cls, spec: IndexSpec) -> VectorIndex:
        """A new index with no items."""
        graph = Index(
            ndim=spec.dim,
            metric=METRICS[spec.metric],
            dtype=spec.dtype,
            connectivity=spec.connectivity,
            expansion_add=spec.expansion_add,
            expansion_search=spec.expansion_search,
        )
        return cls(spec=spec, graph=graph)

    @property
    def count(self) -> int:
        """How many items the index holds."""
        return len(self.keys)

    def has(self, item_id: str) -> bool:
        """Whether an item with this id exists."""
        return item_id in self.keys

    def apply(self, batch: Batch) -> None:
        """Make one logged change: upsert the batch's items or delete its ids."""
        with self.lock.write():
            old = [self.keys[i] for i in batch.ids if i in self.keys]
            if old:
                self.graph.remove(np.array(old, dtype=np.uint64))
                for key in old:
                    self._forget(key)
            if batch.op == "add":
                keys = np.array(batch.keys, dtype=np.uint64)
                self.graph.add(keys, batch.vectors)
                for key, item_id, meta, text in zip(
                    batch.keys, batch.ids, batch.metadata, batch.texts, strict=True
                ):
                    self._remember(key, Item(item_id, meta, text))
            if batch.keys:
                self.next_key = max(self.next_key, max(batch.keys) + 1)

    def _remember(self, key: int, item: Item) -> None:
        self.items[key] = item
        self.keys[item.id] = key
        for name, value in item.metadata.items():
            self.postings.setdefault(name, {}).setdefault(_value_key(value), set()).add(key)

    def _forget(self, key: int) -> None:
        item = self.items.pop(key)
        del self.keys[item.id]
        for name, value in item.metadata.items():
            values = self.postings[name]
            members = values[_value_key(value)]
            members.discard(key)
            if not members:
                del values[_value_key(value)]
                if not values:
                    del self.postings[name]

    def search(self, queries: Vectors, k: int, where: dict[str, Any] | None = None) -> list[list[Hit]]:
        """The k best items for each query, best first, among those matching `where`."""
        with self.lock.read():
            if not self.keys:
                return [[] for _ in range(len(queries))]
            if where:
                candidates = self._matching(where)
                return [self._filtered(q, k, candidates) for q in queries]
            found = self.graph.search(queries, k, threads=1 if len(queries) == 1 else 0)
            if not isinstance(found, BatchMatches):
                return [self._hits(found.keys, found.distances)]
            return [
                self._hits(found.keys[row][: found.counts[row]], found.distances[row][: found.counts[row]])
                for row in range(len(queries))
            ]

    def _matching(self, where: dict[str, Any]) -> set[int]:
        sets = []
        for name, value in where.items():
            members = self.postings.get(name, {}).get(_value_key(value))
            if not members:
                return set()
            sets.append(members)
        sets.sort(key=len)
        return set(sets[0]).intersection(*sets[1:])

    def _filtered(self, query: Vectors, k: int, candidates: set[int]) -> list[Hit]:
        """Search only among `candidates`; k hits whenever k candidates exist."""
        if not candidates:
            return []
        if len(candidates) <= EXACT_FILTER_MAX:
            return self._exact(query, k, candidates)
        # Broad filter: walk the graph deep enough that about twice k matches
        # are expected among what it visits; go deeper while short of k.
        total = self.count
        want = max(4 * k, math.ceil(2 * k * total / len(candidates)))
        while want < total:
            found = self.graph.search(query, want, threads=1)
            mask = np.fromiter((int(key) in candidates for key in found.keys), dtype=bool, count=len(found))
            if int(mask.sum()) >= k:
                return self._hits(found.keys[mask][:k], found.distances[mask][:k])
            want *= 4
        return self._exact(query, k, candidates)

    def _exact(self, query: Vectors, k: int, candidates: set[int]) -> list[Hit]:
        keys = np.fromiter(candidates, dtype=np.uint64, count=len(candidates))
        rows: Any = self.graph.get(keys, dtype="f32")
        vectors = np.vstack(rows)
        found = exact_search(
            vectors, query.reshape(1, -1), min(k, len(keys)), METRICS[self.spec.metric], exact=True, threads=1
        )
        return self._hits(keys[found.keys.astype(np.int64)], found.distances)

    def _hits(self, keys: Any, distances: Any) -> list[Hit]:
        hits = []
        for key, distance in zip(keys.tolist(), distances.tolist(), strict=True):
            item = self.items.get(int(key))
            if item is None:
                continue
            hits.append(Hit(item.id, self._score(distance), distance, item.metadata, item.text))
        return hits

    def _score(self, distance: float) -> float:
        # usearch reports 1 - similarity for cosine and ip, and squared L2.
        if self.spec.metric == "l2":
            return math.sqrt(max(distance, 0.0))
        return 1.0 - distance

    def save(self, path: Path) -> bytes:
        """Write the graph with usearch's own `save`; return the id map and metadata."""
        with self.lock.read():
            self.graph.save(str(path))
            keys = list(self.items)
            items = [self.items[key] for key in keys]
            state = {
                "next_key": self.next_key,
                "keys": keys,
                "ids": [item.id for item in items],
                "metadata": [item.metadata for item in items],
                "texts": [item.text for item in items],
            }
        return json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def load(cls, spec: IndexSpec, path: Path, state: bytes) -> VectorIndex:
        """An index from a saved graph and its state, without re-inserting vectors."""
        index = cls.empty(spec)
        index.graph.load(str(path))
        data = json.loads(state)
        index.next_key = int(data["next_key"])
        for key, item_id, meta, text in zip(
            data["keys"], data["ids"], data["metadata"], data["texts"], strict=True
        ):
            index._remember(int(key), Item(item_id, meta, text))
        return index
