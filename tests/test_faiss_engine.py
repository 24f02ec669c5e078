"""faiss behind an index: removed keys stay in its graph as tombstones, never answered, until compaction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lakehouse.vectors.faiss_engine import FaissGraph
from lakehouse.vectors.index import VectorIndex
from lakehouse.vectors.records import Batch
from tests.test_vectors import clustered
from tests.test_vectors_recovery import spec

N, DIM = 3000, 16


def filled(metric: str = "cosine") -> tuple[VectorIndex, dict[str, np.ndarray]]:
    data = clustered(N, DIM, seed=21)
    index = VectorIndex.empty(spec("faiss", metric=metric, dim=DIM))
    ids = [f"v{i}" for i in range(N)]
    index.apply(Batch("add", ids, list(range(N)), data, [{}] * N, [None] * N))
    return index, dict(zip(ids, data, strict=True))


def engine_of(index: VectorIndex) -> FaissGraph:
    engine = index.graph.engine
    assert isinstance(engine, FaissGraph)
    return engine


def agrees(index: VectorIndex, live: dict[str, np.ndarray], metric: str = "cosine", k: int = 10) -> None:
    """Every query's hits are exactly the brute-force nearest live items."""
    ids = list(live)
    matrix = np.stack([live[i] for i in ids])
    queries = np.stack([live[ids[n]] for n in range(0, len(ids), max(1, len(ids) // 25))]) + 0.01
    if metric == "l2":
        order = np.argsort(((queries[:, None, :] - matrix[None]) ** 2).sum(-1), axis=1, kind="stable")
    else:
        norms = np.linalg.norm(matrix, axis=1) if metric == "cosine" else np.ones(len(ids))
        order = np.argsort(-(queries @ matrix.T) / norms, axis=1, kind="stable")
    found = index.search(queries.astype(np.float32), k)
    truth = [[ids[j] for j in row[:k]] for row in order]
    hits = [[h.id for h in row] for row in found]
    # HNSW is approximate: nearly every hit is a true neighbour, and never a removed item.
    assert all(set(row) <= set(live) for row in hits)
    overlap = np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(hits, truth, strict=True)])
    assert overlap >= 0.95


@pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
def test_removed_and_replaced_items_are_never_answered(metric: str) -> None:
    index, live = filled(metric)
    gone = [f"v{i}" for i in range(0, N, 7)]
    index.apply(Batch("delete", gone, []))
    for i in gone:
        del live[i]
    moved = [f"v{i}" for i in range(3, N, 11) if f"v{i}" in live]
    flipped = np.stack([-live[i] for i in moved])
    keys = list(range(N, N + len(moved)))
    index.apply(Batch("add", moved, keys, flipped, [{}] * len(moved), [None] * len(moved)))
    live.update(zip(moved, flipped, strict=True))
    engine = engine_of(index)
    assert engine.dead == len(gone) + len(moved)  # tombstones, not yet compacted
    assert engine.size == N + len(moved)
    assert index.count == len(live)
    agrees(index, live, metric)
    np.testing.assert_allclose(index.vectors_of(moved[:5]), flipped[:5])
    # The old place of a moved item is never its answer: its new vector is.
    (hits,) = index.search(flipped[:1], 1)
    assert hits[0].id == moved[0]


def test_tombstones_are_compacted_once_they_outnumber_the_live() -> None:
    index, live = filled()
    first = [f"v{i}" for i in range(N // 2)]
    index.apply(Batch("delete", first, []))
    for i in first:
        del live[i]
    engine = engine_of(index)
    assert engine.dead == N // 2 and engine.size == N  # as many dead as live: kept
    index.apply(Batch("delete", ["v2999"], []))
    del live["v2999"]
    # Emptied, its live vectors pending: answered exactly until linked back.
    assert engine.size == 0 and index.pending == index.count == len(live) == N // 2 - 1
    agrees(index, live)
    assert index.link_pending(1000) == len(live) - 1000  # a slice at a time
    agrees(index, live)
    assert index.link_pending(len(live)) == 0
    assert engine.dead == 0 and engine.size == len(live)  # rebuilt from the live
    agrees(index, live)
    more = clustered(10, DIM, seed=22)
    index.apply(
        Batch("add", [f"n{i}" for i in range(10)], list(range(N, N + 10)), more, [{}] * 10, [None] * 10)
    )
    live.update({f"n{i}": more[i] for i in range(10)})
    agrees(index, live)


def test_an_index_emptied_and_filled_again_answers_with_every_item() -> None:
    index = VectorIndex.empty(spec("faiss", dim=DIM))
    first = clustered(1000, DIM, seed=30)
    ids = [f"v{i}" for i in range(1000)]
    index.apply(Batch("add", ids, list(range(1000)), first, [{}] * 1000, [None] * 1000))
    index.apply(Batch("delete", ids, []))
    data = clustered(5, DIM, seed=23)
    index.apply(Batch("add", [f"o{i}" for i in range(5)], list(range(N, N + 5)), data, [{}] * 5, [None] * 5))
    queries = clustered(200, DIM, seed=25)
    assert all(sorted(h.id for h in hits) == [f"o{i}" for i in range(5)] for hits in index.search(queries, 5))
    assert sorted(h.id for h in index.search(queries[:1], 50)[0]) == [f"o{i}" for i in range(5)]


def test_half_removed_an_index_still_answers_k_equal_to_its_count() -> None:
    index, live = filled()
    gone = [f"v{i}" for i in range(0, N, 2)]
    index.apply(Batch("delete", gone, []))
    assert engine_of(index).dead == len(gone) == index.count  # as many dead as live: not compacted
    queries = clustered(20, DIM, seed=26)
    found = index.search(queries, index.count)
    assert all(sorted(h.id for h in hits) == sorted(set(live) - set(gone)) for hits in found)


def test_searches_only_read_the_live_bitmap_the_writers_made() -> None:
    # faiss's selector points into the bitmap: a search that made or replaced it
    # could free the one a concurrent search is still walking with.
    index, _ = filled()
    engine = engine_of(index)
    assert engine._bitmap is None  # nothing dead, no selector
    index.apply(Batch("delete", ["v1", "v2"], []))
    made = engine._bitmap
    assert made is not None
    index.search(clustered(30, DIM, seed=27), 10)
    index.search_at_once(clustered(1, DIM, seed=28)[0], 10)
    assert engine._bitmap is made


@pytest.mark.parametrize("scale", [1e-23, 1e20])
@pytest.mark.parametrize("engine", ["faiss", "hnswlib"])  # hnswlib normalises in float32 itself
def test_cosine_ranks_tiny_and_huge_vectors_as_their_directions(engine: str, scale: float) -> None:
    data = clustered(300, DIM, seed=29)
    index = VectorIndex.empty(spec(engine, dim=DIM))
    scaled = (data.astype(np.float64) * scale).astype(np.float32)
    index.apply(
        Batch("add", [f"v{i}" for i in range(300)], list(range(300)), scaled, [{}] * 300, [None] * 300)
    )
    (hits,) = index.search(scaled[[7]], 3)
    assert hits[0].id == "v7" and hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert index.vectors_of(["v7"]).tolist() == scaled[[7]].tolist()  # kept as given


def test_a_snapshot_keeps_the_tombstones_and_takes_new_items(tmp_path: Path) -> None:
    index, live = filled()
    gone = [f"v{i}" for i in range(1, N, 5)]
    index.apply(Batch("delete", gone, []))
    for i in gone:
        del live[i]
    files, state = index.save(tmp_path / "snap")
    assert sorted(files) == ["faiss", "npz"]
    loaded = VectorIndex.load(spec("faiss", dim=DIM), files, state)
    assert engine_of(loaded).dead == len(gone) and loaded.count == len(live)
    queries = np.stack([live["v0"], live["v2"], live["v2998"]])
    assert [[h.id for h in row] for row in loaded.search(queries, 5)] == [
        [h.id for h in row] for row in index.search(queries, 5)
    ]
    agrees(loaded, live)
    loaded.apply(Batch("add", ["z"], [10**6], -live["v0"][None, :], [{}], [None]))
    assert loaded.search(-live["v0"][None, :], 1)[0][0].id == "z"


def test_a_snapshot_whose_files_disagree_is_refused(tmp_path: Path) -> None:
    index, _ = filled()
    files, _ = index.save(tmp_path / "a")
    other = VectorIndex.empty(spec("faiss", dim=DIM))
    data = clustered(10, DIM, seed=24)
    other.apply(Batch("add", [f"o{i}" for i in range(10)], list(range(10)), data, [{}] * 10, [None] * 10))
    theirs, _ = other.save(tmp_path / "b")
    mixed = {"faiss": files["faiss"], "npz": theirs["npz"]}
    with pytest.raises(ValueError, match="holds 3000 vectors but 10 keys"):
        FaissGraph(DIM, "cosine", 16, 128, 128).load(mixed)


def test_a_key_linked_again_answers_only_with_its_new_vector() -> None:
    graph = FaissGraph(4, "cosine", 16, 64, 64)
    basis = np.eye(4, dtype=np.float32)
    graph.add(np.array([1, 2], dtype=np.uint64), basis[:2])
    graph.add(np.array([1], dtype=np.uint64), basis[2:3])
    keys, distances = graph.search(basis[:1], 3, 0)[0]
    # Both are orthogonal to the query now: its old vector, the query itself, is never answered.
    assert sorted(keys.tolist()) == [1, 2] and distances.tolist() == pytest.approx([1.0, 1.0])
    np.testing.assert_array_equal(graph.get(np.array([1], dtype=np.uint64)), basis[2:3])
    assert graph.dead == 1


def test_no_compaction_while_a_compaction_relinks() -> None:
    # Compacting again would throw back what the relink had linked so far: under steady
    # upserts the index would stay unlinked, and unsnapshotted, for as long as they came.
    index, live = filled()
    gone = [f"v{i}" for i in range(N // 2 + 1)]
    index.apply(Batch("delete", gone, []))
    for i in gone:
        del live[i]
    assert index.pending == len(live) == 1499
    assert index.link_pending(1000) == 499
    linked = [i for i in live if i not in {f"v{n}" for n in range(N - 499, N)}][:600]
    moved = clustered(600, DIM, seed=34)
    index.apply(Batch("add", linked, list(range(N, N + 600)), moved, [{}] * 600, [None] * 600))
    live.update(zip(linked, moved, strict=True))
    engine = engine_of(index)
    assert engine.dead > engine.count - 600  # compactable by its own count
    assert index.pending == 499  # but left alone while the relink runs
    agrees(index, live)
    while index.link_pending(1000):
        pass
    agrees(index, live)
