"""The pending set's exact scan: every path equals brute force, and an index answers alike before linking."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from lakehouse.vectors import pending
from lakehouse.vectors.graph import METRICS
from lakehouse.vectors.index import VectorIndex
from lakehouse.vectors.pending import Chunk, scan
from lakehouse.vectors.records import Batch
from tests.test_vectors_recovery import spec

K = 10
# Chunk sizes: all smaller than k, one chunk, many of assorted sizes (some past MIN_CHUNK).
LAYOUTS = {"under_k": [3, 2], "single": [700], "many": [1, 7, 300, 2048, 4500, 64, 9, 1200]}
TOL = 2e-5


def chunks_of(sizes: list[int], dim: int, seed: int, dtype: type = np.float32) -> list[Chunk]:
    """Chunks of random vectors (not unit, one zero row) under keys rising by 3 from 5."""
    rng = np.random.default_rng(seed)
    data = (rng.normal(size=(sum(sizes), dim)) * rng.uniform(0.2, 3.0, size=(sum(sizes), 1))).astype(dtype)
    data[len(data) // 2] = 0
    keys = (5 + 3 * np.arange(len(data))).astype(np.uint64)
    starts = np.cumsum([0, *sizes])
    return [(keys[a:b], data[a:b]) for a, b in itertools.pairwise(starts)]


def reference(chunks: list[Chunk], queries: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Every key and, per query, its distance to each, in float64 and the engines' units."""
    keys = np.concatenate([k for k, _ in chunks])
    vectors = np.concatenate([v for _, v in chunks]).astype(np.float64)
    q = queries.astype(np.float64)
    dots = q @ vectors.T
    if metric == "ip":
        return keys, 1.0 - dots
    if metric == "l2":
        return keys, np.maximum(
            (q**2).sum(axis=1)[:, None] + (vectors**2).sum(axis=1)[None, :] - 2 * dots, 0.0
        )
    qn, vn = np.linalg.norm(q, axis=1)[:, None], np.linalg.norm(vectors, axis=1)[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = 1.0 - dots / (qn * vn)
    # usearch's rule for zero vectors: two zeros are at 0, a zero and another at 1.
    return keys, np.where((qn == 0) & (vn == 0), 0.0, np.where((qn == 0) | (vn == 0), 1.0, cos))


def assert_nearest(
    found: tuple[np.ndarray, np.ndarray], truth: tuple[np.ndarray, np.ndarray], k: int
) -> None:
    """Each query's keys: the k nearest, nearest first, at their true distances (near-ties may swap)."""
    keys, distances = found
    all_keys, table = truth
    have = min(k, len(all_keys))
    assert keys.shape == distances.shape == (len(table), k)
    assert np.all(np.isinf(distances[:, have:])) and np.all(keys[:, have:] == 0)
    where = {int(key): i for i, key in enumerate(all_keys)}
    for row in range(len(table)):
        order = np.argsort(table[row], kind="stable")[:have]
        best = table[row][order]
        got = [int(key) for key in keys[row, :have]]
        assert len(set(got)) == have
        true_of_got = table[row][[where[key] for key in got]]
        np.testing.assert_allclose(distances[row, :have], true_of_got, rtol=TOL, atol=TOL)
        np.testing.assert_allclose(true_of_got, best, rtol=TOL, atol=TOL)  # nearest first, none missed
        for j, key in enumerate(got):
            near = np.abs(table[row] - best[j]) <= TOL * (1 + abs(best[j]))
            if near.sum() == 1:  # no tie within tolerance: exactly the expected key
                assert key == int(all_keys[order[j]])


@pytest.fixture(params=["usearch", "product", "product_small_blocks"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Which way scan goes for every batch size: usearch, the product, the product in tiny blocks."""
    name: str = request.param
    monkeypatch.setattr(pending, "PRODUCT_MIN_QUERIES", 10**9 if name == "usearch" else 1)
    if name == "product_small_blocks":
        # Blocks of 4096 bytes: a few rows each, three queries at a time.
        monkeypatch.setattr(pending, "BLOCK_BYTES", 4096)
        monkeypatch.setattr(pending, "QUERY_BLOCK", 3)
    return name


@pytest.mark.parametrize("metric", list(METRICS))
@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("batch", [1, 2, 7, 100])
def test_scan_equals_brute_force(path: str, metric: str, layout: str, batch: int) -> None:
    dim = 24
    chunks = chunks_of(LAYOUTS[layout], dim, seed=batch)
    rng = np.random.default_rng(batch + 100)
    queries = rng.normal(size=(batch, dim)).astype(np.float32)
    if metric == "cosine" and batch > 1:
        queries[1] = 0  # a zero query: usearch's distances, whatever the path
    found = scan(chunks, queries, K, METRICS[metric], 2)
    assert_nearest(found, reference(chunks, queries, metric), K)


def test_batches_take_the_product_path_by_default() -> None:
    assert pending.PRODUCT_MIN_QUERIES <= 100
    chunks = chunks_of(LAYOUTS["many"], 16, seed=1)
    queries = np.random.default_rng(2).normal(size=(100, 16)).astype(np.float32)
    for metric in METRICS:
        assert_nearest(scan(chunks, queries, 50, METRICS[metric], 2), reference(chunks, queries, metric), 50)


@pytest.mark.parametrize("metric", list(METRICS))
def test_equal_distances_go_to_the_earlier_row(path: str, metric: str) -> None:
    # 600 rows, each of 4 unit vectors 150 times, over three chunks: every query has 150 ties at 0.
    rows = np.tile(np.eye(4, dtype=np.float32), (150, 1))
    keys = np.arange(600, dtype=np.uint64)
    chunks = [(keys[:5], rows[:5]), (keys[5:300], rows[5:300]), (keys[300:], rows[300:])]
    queries = np.eye(4, dtype=np.float32)[[2, 0, 1]]
    found_keys, distances = scan(chunks, queries, K, METRICS[metric], 2)
    for row, axis in enumerate([2, 0, 1]):
        assert found_keys[row].tolist() == list(range(axis, 4 * K, 4))
    np.testing.assert_allclose(distances, 0.0, atol=1e-6)


def test_a_larger_k_than_rows_fills_with_infinity(path: str) -> None:
    chunks = chunks_of([2, 1], 8, seed=3)
    queries = np.random.default_rng(4).normal(size=(9, 8)).astype(np.float32)
    keys, distances = scan(chunks, queries, 5, METRICS["l2"], 2)
    assert np.all(np.isfinite(distances[:, :3])) and np.all(np.isinf(distances[:, 3:]))
    assert sorted(keys[0, :3].tolist()) == [5, 8, 11] and np.all(keys[:, 3:] == 0)


def test_half_precision_chunks_are_scanned_exactly_as_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pending, "PRODUCT_MIN_QUERIES", 1)
    chunks = chunks_of(LAYOUTS["many"], 16, seed=5, dtype=np.float16)
    queries = np.random.default_rng(6).normal(size=(7, 16)).astype(np.float32)
    for metric in ("cosine", "ip"):  # the product's metrics; l2 is usearch's, in the chunk's own type
        assert_nearest(scan(chunks, queries, K, METRICS[metric], 2), reference(chunks, queries, metric), K)


def pending_index(engine: str, metric: str, data: np.ndarray) -> VectorIndex:
    """An index holding `data` as `v0`, `v1`, ..., all pending, in 2,048-vector records (as replayed)."""
    index = VectorIndex.empty(spec(engine, metric=metric, dim=data.shape[1]))
    for start in range(0, len(data), 2048):
        end = min(start + 2048, len(data))
        ids = [f"v{i}" for i in range(start, end)]
        size = end - start
        index.apply(
            Batch("add", ids, list(range(start, end)), data[start:end], [{}] * size, [None] * size), True
        )
    return index


@pytest.mark.parametrize("metric", list(METRICS))
@pytest.mark.parametrize("engine", ["faiss", "hnswlib", "usearch"])
def test_an_index_answers_a_batch_alike_before_and_after_linking(engine: str, metric: str) -> None:
    rng = np.random.default_rng(7)
    n, dim = 6000, 16
    data = (rng.normal(size=(n, dim)) * rng.uniform(0.5, 2.0, size=(n, 1))).astype(np.float32)
    queries = rng.normal(size=(40, dim)).astype(np.float32)
    chunks = [(np.arange(n, dtype=np.uint64), data)]
    _, table = reference(chunks, queries, metric)
    index = pending_index(engine, metric, data)
    assert index.pending == n

    def check(hits_per_query: list, exact: bool) -> None:
        """Each hit at its true distance and score; all k nearest when exact, nearly all when not."""
        recall = []
        for row, hits in enumerate(hits_per_query):
            assert len(hits) == K
            truth = {f"v{j}" for j in np.argsort(table[row], kind="stable")[:K]}
            for hit in hits:
                true = table[row][int(hit.id[1:])]
                assert hit.distance == pytest.approx(true, rel=1e-4, abs=1e-4)
                score = np.sqrt(max(true, 0.0)) if metric == "l2" else 1.0 - true
                assert hit.score == pytest.approx(score, rel=1e-3, abs=1e-3)
            recall.append(len(truth & {hit.id for hit in hits}) / K)
            assert [h.distance for h in hits] == sorted(h.distance for h in hits)
        assert min(recall) == 1.0 if exact else np.mean(recall) >= 0.9

    before = index.search(queries, K)
    check(before, exact=True)
    index.link_pending(n // 2)  # half in the graph, half pending: the two merged
    assert index.pending == n - n // 2
    halfway = index.search(queries, K)
    check(halfway, exact=False)
    for row, hits in enumerate(halfway):  # a pending item among the k nearest is never lost in the merge
        nearest = np.argsort(table[row], kind="stable")[:K]
        assert {f"v{j}" for j in nearest if j >= n // 2} <= {hit.id for hit in hits}
    while index.link_pending(n):
        pass
    after = index.search(queries, K)
    check(after, exact=False)
    for hits_before, hits_after in zip(before, after, strict=True):
        same = {h.id: h.distance for h in hits_before}
        for hit in hits_after:  # the same item, the same distance from graph or pending set
            if hit.id in same:
                assert hit.distance == pytest.approx(same[hit.id], rel=1e-4, abs=1e-4)


def test_a_stored_vector_is_at_l2_distance_zero_from_itself(path: str) -> None:
    # Long vectors: |q|^2 + |v|^2 - 2q.v would leave about 1e-3 of float32 rounding here.
    chunks = [(keys, vectors * 100) for keys, vectors in chunks_of(LAYOUTS["many"], 24, seed=8)]
    everything = np.concatenate([v for _, v in chunks])
    picked = [0, 10, 400, 5000, len(everything) - 1]
    keys, distances = scan(chunks, everything[picked], K, METRICS["l2"], 2)
    assert keys[:, 0].tolist() == [5 + 3 * row for row in picked]
    assert distances[:, 0].tolist() == [0.0] * len(picked)


@pytest.mark.parametrize("batch", [1, 8, 40])
def test_near_neighbours_of_large_norm_are_found_in_l2(batch: int) -> None:
    # Near-duplicates far from the origin: an expanded |v|^2 - 2q.v in float32 ranked them wrongly.
    rng = np.random.default_rng(11)
    base = rng.normal(size=384).astype(np.float32)
    base *= 1000 / np.linalg.norm(base)
    data = (base + 0.002 * rng.normal(size=(20_000, 384))).astype(np.float32)
    chunks = [(np.arange(20_000, dtype=np.uint64), data)]
    queries = (data[rng.integers(0, 20_000, batch)] + 0.001 * rng.normal(size=(batch, 384))).astype(
        np.float32
    )
    assert_nearest(scan(chunks, queries, K, METRICS["l2"], 2), reference(chunks, queries, "l2"), K)


@pytest.mark.parametrize("metric", ["cosine", "ip"])
def test_a_vector_past_float32_range_in_products_hides_no_other(metric: str) -> None:
    # Finite values whose products overflow: the other rows of its block are still found.
    chunks = chunks_of([1000], 16, seed=12)
    keys, vectors = chunks[0]
    vectors = vectors.copy()
    vectors[500] = np.tile(np.float32([3e38, -3e38]), 8)
    queries = np.random.default_rng(13).normal(size=(8, 16)).astype(np.float32)
    found_keys, distances = scan([(keys, vectors)], queries, K, METRICS[metric], 2)
    ordinary = [(np.delete(keys, 500), np.delete(vectors, 500, axis=0))]
    want_keys, _ = scan(ordinary, queries, K, METRICS[metric], 2)
    for row in range(len(queries)):
        kept = [
            (int(key), float(d))
            for key, d in zip(found_keys[row], distances[row], strict=True)
            if int(key) != int(keys[500])
        ]
        assert [key for key, _ in kept] == want_keys[row].tolist()[: len(kept)]
        assert len(kept) >= K - 1
