"""One index in memory: HNSW graph, string ids, columnar metadata and a BM25 keyword index.

Everything here is synchronous and thread-safe (a readers-writer lock lets
searches run together and gives a change the index to itself); the service
calls it through `run_blocking` so the event loop never waits on the graph,
save `search_at_once`, which answers a small unfiltered query on the caller's
thread only when it need not wait for the lock.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from usearch.index import search as exact_search

from lakehouse.vectors.filters import MATCH_ALL, Node
from lakehouse.vectors.graph import METRICS, Engine, Files, Graph
from lakehouse.vectors.keyword import KeywordIndex
from lakehouse.vectors.metadata import MetadataColumns
from lakehouse.vectors.ranking import Answer, Hit
from lakehouse.vectors.records import Batch, Found, Keys, Vectors
from lakehouse.vectors.rwlock import ReadWriteLock

Metric = Literal["cosine", "l2", "ip"]
DType = Literal["f32", "f16", "i8"]
__all__ = ["METRICS", "Hit", "IndexSpec", "Item", "VectorIndex"]  # Hit from ranking.py, for callers

# A filter matching at most this many items may be answered exactly over just
# those items; broader filters walk the graph with a depth scaled to how
# rare the matches are (see `_filtered`).
EXACT_FILTER_MAX = 4096
# Pending vectors are linked into the graph this many at a time (see `link_pending`).
LINK_STEP = 256
# Unfiltered single queries up to this k are searched on the caller's thread when
# nothing holds the index (`search_at_once`); a graph walk grows with k.
AT_ONCE_MAX_K = 100
# Past this many keys ever assigned, membership tests sort instead of using a flag per key.
FLAG_KEYS_MAX = 1 << 24
# A keyword search that finds the BM25 index stale rebuilds it first when the
# index holds at most this many texts (well under a second); a larger one is
# searched as last built while the background rebuild catches up.
KEYWORD_SYNC_REBUILD_MAX = 20000


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
    # A linked index's dataset: {"dataset", "id_column", "text_columns", "metadata_columns"}.
    source: dict[str, Any] | None = None
    # The HNSW engine (graph.py); definitions older than the choice hold usearch graphs.
    engine: Engine = "usearch"

    def to_json(self) -> bytes:
        """The definition as stored."""
        return json.dumps(self.__dict__, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> IndexSpec:
        """A stored definition."""
        return cls(**json.loads(data))


@dataclass(slots=True)
class Item:
    """What an index keeps beside each vector (slotted: an index holds one per item)."""

    id: str
    metadata: dict[str, Any]
    text: str | None = None
    digest: str | None = None


@dataclass
class VectorIndex:
    """An index's live state; `apply` changes it, `search` reads it."""

    spec: IndexSpec
    graph: Graph
    items: dict[int, Item] = field(default_factory=dict)
    keys: dict[str, int] = field(default_factory=dict)
    next_key: int = 0
    columns: MetadataColumns = field(default_factory=MetadataColumns)
    keyword: KeywordIndex = field(default_factory=KeywordIndex)
    texts: int = 0
    text_version: int = 0
    synced_version: int | None = None
    lock: ReadWriteLock = field(default_factory=ReadWriteLock)

    @classmethod
    def empty(cls, spec: IndexSpec) -> VectorIndex:
        """A new index with no items."""
        graph = Graph.build(
            spec.engine,
            spec.dim,
            spec.metric,
            spec.dtype,
            spec.connectivity,
            spec.expansion_add,
            spec.expansion_search,
        )
        return cls(spec=spec, graph=graph)

    @property
    def count(self) -> int:
        """How many items the index holds."""
        return len(self.keys)

    def has(self, item_id: str) -> bool:
        """Whether an item with this id exists."""
        return item_id in self.keys

    def apply(self, batch: Batch, defer: bool = False) -> None:
        """Make one logged change: upsert the batch's items, delete its ids, or note a synced version.

        With `defer`, added vectors are searchable at once but linked into
        the graph only by `link_pending` (recovery replays a log this way).
        """
        with self.lock.write():
            if batch.op == "synced":
                self.synced_version = batch.version
                return
            # A replayed batch of new ids (the usual case) is told apart at C speed.
            known = self.keys.keys()
            old = [] if known.isdisjoint(batch.ids) else [self.keys[i] for i in batch.ids if i in known]
            if any(self.items[key].text is not None for key in old) or batch.texts.count(None) != len(
                batch.texts
            ):
                self.text_version += 1
            if old:
                self.graph.remove(np.array(old, dtype=np.uint64))
                for key in old:
                    self._forget(key)
            if batch.op == "add":
                keys = np.array(batch.keys, dtype=np.uint64)
                self.graph.add(keys, batch.vectors, defer=defer)
                self._remember_all(batch.keys, batch.ids, batch.metadata, batch.texts, batch.digests)
            if batch.keys:
                self.next_key = max(self.next_key, max(batch.keys) + 1)

    def _remember_all(
        self,
        keys: list[int],
        ids: list[str],
        metadata: list[dict[str, Any]],
        texts: list[str | None],
        digests: list[str | None] | None,
    ) -> None:
        """Record new items (their keys and ids must not be present) in one pass."""
        if len({len(keys), len(ids), len(metadata), len(texts)}) > 1 or (
            digests and len(digests) != len(ids)
        ):
            raise ValueError(
                f"{len(keys)} keys, {len(ids)} ids, {len(metadata)} metadata, {len(texts)} texts"
            )
        items = map(Item, ids, metadata, texts, digests or itertools.repeat(None))
        self.items.update(zip(keys, items, strict=True))
        self.keys.update(zip(ids, keys, strict=True))
        self.columns.put_all(keys, metadata)
        self.texts += len(texts) - texts.count(None)

    def _forget(self, key: int) -> None:
        item = self.items.pop(key)
        del self.keys[item.id]
        self.columns.remove(key)
        if item.text is not None:
            self.texts -= 1

    def item(self, item_id: str) -> Item | None:
        """The item with this id, if any."""
        with self.lock.read():
            key = self.keys.get(item_id)
            return None if key is None else self.items[key]

    def vectors_of(self, item_ids: list[str]) -> Vectors:
        """The stored vectors of existing items, in order (as f32)."""
        with self.lock.read():
            keys = np.array([self.keys[i] for i in item_ids], dtype=np.uint64)
            return self.graph.get(keys)

    def search(self, queries: Vectors, k: int, where: Node = MATCH_ALL) -> list[list[Hit]]:
        """The k best items for each query, best first, among those matching `where`."""
        return self.answer(queries, k, where).hits()

    def answer(self, queries: Vectors, k: int, where: Node = MATCH_ALL) -> Answer:
        """`search`'s hits as columns, as a batch's answer is rendered."""
        with self.lock.read():
            if not self.keys:
                return Answer.empty(len(queries))
            if where != MATCH_ALL:
                candidates = self.columns.select(where)
                found = [self._filtered(q, k, candidates) for q in queries]
                return Answer.ranked(found, self.items, self.spec.metric)
            found = self.graph.search(queries, k, threads=1 if len(queries) == 1 else 0)
            return Answer.ranked(found, self.items, self.spec.metric)

    def search_at_once(self, query: Vectors, k: int) -> list[Hit] | None:
        """One query's k best, if the graph alone answers it and no writer holds the index; else None.

        For the caller on the event loop: this never waits for a lock, and a
        graph search of k <= `AT_ONCE_MAX_K` is a fraction of a millisecond,
        less than handing it to a worker thread costs.
        """
        answer = self.answer_at_once(query, k)
        return None if answer is None else answer.hits()[0]

    def answer_at_once(self, query: Vectors, k: int) -> Answer | None:
        """`search_at_once`'s hits as columns."""
        if k > AT_ONCE_MAX_K:
            return None
        with self.lock.read_at_once() as held:
            if not held or self.graph.pending:
                return None
            if not self.keys:
                return Answer.empty(1)
            found = self.graph.engine.search(query.reshape(1, -1), k, threads=1)
            if len(found[0][0]) < min(k, self.graph.engine.count):
                return None  # a short walk: the exact scan that completes it is a worker thread's
            return Answer.ranked(found, self.items, self.spec.metric)

    def keyword_search(self, query: str, k: int, where: Node = MATCH_ALL) -> list[Hit]:
        """The k items whose texts best match `query` by BM25, among those matching `where`."""
        self._fresh_keywords()
        with self.lock.read():
            allowed = None if where == MATCH_ALL else self.columns.select(where)
            return self._keyword_hits(query, k, allowed)

    def hybrid_search(
        self, query: Vectors, text: str, depth: int, where: Node = MATCH_ALL
    ) -> tuple[list[Hit], list[Hit]]:
        """The `depth` best by vector and by keyword, the filter evaluated once for both."""
        self._fresh_keywords()
        with self.lock.read():
            if not self.keys:
                return [], []
            if where == MATCH_ALL:
                keys, distances = self.graph.search(query.reshape(1, -1), depth, threads=1)[0]
                by_vector = self._hits(keys, distances)
                return by_vector, self._keyword_hits(text, depth, None)
            allowed = self.columns.select(where)
            by_vector = self._hits(*self._filtered(query.reshape(-1), depth, allowed))
            return by_vector, self._keyword_hits(text, depth, allowed)

    def _fresh_keywords(self) -> None:
        if self.keywords_stale and (self.keyword.version < 0 or self.texts <= KEYWORD_SYNC_REBUILD_MAX):
            self.refresh_keywords()

    def _keyword_hits(self, query: str, k: int, allowed: Keys | None) -> list[Hit]:
        hits = []
        for key, score in self.keyword.search(query, k, allowed, self.next_key):
            item = self.items.get(key)
            if item is not None:
                hits.append(Hit(item.id, score, 0.0, item.metadata, item.text))
        return hits

    def refresh_keywords(self) -> None:
        """Bring the keyword index up to the items' current version (blocking)."""
        if self.keyword.version < self.text_version:
            self.keyword.refresh(self.text_version, self._texts)

    @property
    def keywords_stale(self) -> bool:
        """Whether texts changed since the keyword index was built."""
        return self.keyword.version < self.text_version

    def _texts(self) -> tuple[int, list[int], list[str]]:
        with self.lock.read():
            pairs = [(key, item.text) for key, item in self.items.items() if item.text is not None]
            return (
                self.text_version,
                [key for key, _ in pairs],
                [text for _, text in pairs if text is not None],
            )

    def _filtered(self, query: Vectors, k: int, candidates: Keys) -> Found:
        """Search only among `candidates`: keys and distances, k whenever k candidates exist."""
        if not len(candidates):
            return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=np.float32)
        # Walk the graph deep enough that about twice k matches are expected
        # among what it visits; go deeper while short of k. Fetching a
        # candidate's vector for the exact path costs about what visiting one
        # graph node does, so a few candidates go exact, and so do
        # rare ones when the walk would be deeper than they are many.
        total = self.count
        want = max(4 * k, math.ceil(2 * k * total / len(candidates)))
        if len(candidates) <= EXACT_FILTER_MAX and len(candidates) <= 3 * want:
            return self._exact(query, k, candidates)
        member = self._membership(candidates)
        while want < total:
            keys, distances = self.graph.search(query.reshape(1, -1), want, threads=1)[0]
            mask = member(keys)
            if int(mask.sum()) >= k:
                return keys[mask][:k], distances[mask][:k]
            want *= 4
        return self._exact(query, k, candidates)

    def _membership(self, candidates: Keys) -> Any:
        """A vectorised test: which of some keys are candidates."""
        if self.next_key <= FLAG_KEYS_MAX:
            flags = np.zeros(self.next_key + 1, dtype=bool)
            flags[candidates] = True
            return lambda keys: flags[np.minimum(keys, self.next_key).astype(np.int64)]
        ordered = np.sort(candidates)
        return lambda keys: np.isin(keys, ordered, assume_unique=False)

    def _exact(self, query: Vectors, k: int, candidates: Keys) -> Found:
        keys = candidates
        vectors = self.graph.get(keys.astype(np.uint64))
        found = exact_search(
            vectors, query.reshape(1, -1), min(k, len(keys)), METRICS[self.spec.metric], exact=True, threads=1
        )
        return keys[found.keys.astype(np.int64)], found.distances

    def _hits(self, keys: Any, distances: Any) -> list[Hit]:
        """The items of keys nearest first, each labelled with its place and score in the vector ranking."""
        return Answer.ranked([(keys, distances)], self.items, self.spec.metric).hits()[0]

    @property
    def pending(self) -> int:
        """How many vectors are searchable but not yet linked into the graph."""
        return self.graph.pending

    def link_pending(self, limit: int) -> int:
        """Link up to `limit` pending vectors into the graph; return how many wait.

        Linking holds the index exclusively (the engines cannot search while
        they insert), so it goes `LINK_STEP` vectors at a time and lets the
        searches that queued meanwhile run between steps: during a
        300,000-vector replay's linking a search waited for a whole
        2,048-vector slice, 0.7-1.3 s; now for one step.
        """
        left = self.pending
        while limit > 0:
            step = min(limit, LINK_STEP)
            with self.lock.write():
                left = self.graph.drain(step)
            limit -= step
            if not left:
                break
            self.lock.let_readers_in()
        return left

    def save(self, stem: Path) -> tuple[Files, bytes]:
        """Write the graph with its engine's own `save`; return its files and the id map and metadata."""
        with self.lock.read():
            files = self.graph.save(stem)
            keys = list(self.items)
            items = [self.items[key] for key in keys]
            state = {
                "next_key": self.next_key,
                "keys": keys,
                "ids": [item.id for item in items],
                "metadata": [item.metadata for item in items],
                "texts": [item.text for item in items],
                "digests": [item.digest for item in items],
                "synced_version": self.synced_version,
            }
        return files, json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode()

    @classmethod
    def load(cls, spec: IndexSpec, files: Files, state: bytes) -> VectorIndex:
        """An index from a saved graph's files and its state, without re-inserting vectors."""
        index = cls.empty(spec)
        data = json.loads(state)
        index.graph.load(files)
        index.next_key = int(data["next_key"])
        index.synced_version = data.get("synced_version")
        keys = [int(key) for key in data["keys"]]
        index._remember_all(keys, data["ids"], data["metadata"], data["texts"], data.get("digests"))
        return index
