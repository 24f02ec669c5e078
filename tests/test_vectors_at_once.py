"""Single queries answered on the caller's thread: only when the graph alone answers and nothing waits."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from lakehouse.vectors.index import AT_ONCE_MAX_K, VectorIndex
from lakehouse.vectors.records import Batch
from tests.test_vectors import clustered
from tests.test_vectors_recovery import spec


def filled(engine: str, n: int = 600, dim: int = 16) -> tuple[VectorIndex, np.ndarray]:
    """An index of `n` clustered vectors, linked into its graph."""
    data = clustered(n, dim)
    index = VectorIndex.empty(spec(engine, dim=dim))
    index.apply(
        Batch(
            "add", [f"v{i}" for i in range(n)], list(range(n)), data, [{"i": i} for i in range(n)], [None] * n
        )
    )
    return index, data


@contextmanager
def held_in_thread(enter: object) -> Iterator[None]:
    """Hold a lock context (`index.lock.write()`, say) in another thread for the block's duration."""
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with enter:  # type: ignore[attr-defined]
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert inside.wait(10)
        yield
    finally:
        release.set()
        thread.join(10)


@pytest.mark.parametrize("engine", ["faiss", "hnswlib", "usearch"])
def test_at_once_answers_as_the_search_does(engine: str) -> None:
    index, data = filled(engine)
    for n, k in ((0, 1), (17, 10), (599, AT_ONCE_MAX_K)):
        alone = index.search_at_once(data[n], k)
        assert alone is not None and len(alone) == k
        assert alone == index.search(data[n].reshape(1, -1), k)[0]
        # Each hit carries its own item's metadata and its place; the graph is approximate,
        # so the query's own item is not always first (usearch missed it 1 build in 12).
        assert [hit.metadata for hit in alone] == [{"i": int(hit.id[1:])} for hit in alone]
        assert [hit.ranks for hit in alone] == [{"vector": place} for place in range(1, k + 1)]
        scores = [hit.score for hit in alone]
        assert scores == sorted(scores, reverse=True)
    assert index.search_at_once(data[0], AT_ONCE_MAX_K + 1) is None
    assert VectorIndex.empty(spec(engine)).search_at_once(np.ones(16, dtype=np.float32), 3) == []


def test_at_once_never_waits_for_a_writer_nor_passes_one_that_waits() -> None:
    index, data = filled("hnswlib", n=200)
    with held_in_thread(index.lock.write()):
        assert index.search_at_once(data[3], 5) is None
    # A reader in, and a writer queued behind it: a new reader must not jump the queue.
    with held_in_thread(index.lock.read()):
        writer = threading.Thread(target=lambda: index.apply(Batch("delete", ["v3"], [])))
        writer.start()
        for _ in range(1000):
            if index.lock._waiting_writers:
                break
            threading.Event().wait(0.01)
        assert index.lock._waiting_writers == 1
        assert index.search_at_once(data[3], 5) is None
    writer.join(10)
    hits = index.search_at_once(data[3], 5)
    assert hits is not None and "v3" not in [h.id for h in hits]  # the writer's delete went through


def test_at_once_leaves_pending_vectors_to_the_exact_scan() -> None:
    index, _ = filled("hnswlib", n=200)
    more = clustered(50, 16, seed=9)
    keys = list(range(1000, 1050))
    index.apply(Batch("add", [f"p{i}" for i in range(50)], keys, more, [{}] * 50, [None] * 50), defer=True)
    assert index.pending == 50
    assert index.search_at_once(more[7], 3) is None
    assert index.search(more[7].reshape(1, -1), 3)[0][0].id == "p7"
    while index.link_pending(64):
        pass
    hits = index.search_at_once(more[7], 3)
    assert hits is not None and hits[0].id == "p7"
