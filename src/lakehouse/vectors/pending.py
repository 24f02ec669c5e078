"""Pending vectors: searchable exactly, in the chunks they arrived in, until linked into a graph.

A replayed record's vectors stay where decoding left them, a read-only view
of the record's own bytes: gathering 300,000 of them into one matrix cost
the first search after a restart 0.5-1.5 s on fresh memory. Each chunk is
scanned exactly on its own and the results merged; runs of chunks under
`MIN_CHUNK` rows are merged once, so many small records do not mean many
small scans. `Graph` (graph.py) keeps the chunks and decides when these run.

On cosine and ip indexes a batch of queries is scanned as matrix products
(BLAS) a bounded block at a time, not by usearch's exact search (l2 stays on
usearch): 100 queries over 300,000 384-d vectors take 0.25-0.66 s where
usearch took 1.3-3.5 s (docs/BENCHMARKS.md, "Restarts").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from usearch.compiled import MetricKind
from usearch.index import BatchMatches
from usearch.index import search as exact_search

from lakehouse.vectors.records import Keys, Vectors

# Chunks smaller than this are merged into one for scanning.
MIN_CHUNK = 4096

Rows = npt.NDArray[np.int64]
Chunk = tuple[Keys, Vectors]
Distances = npt.NDArray[np.float32]

# Batches of at least this many queries are scanned by matrix product (cosine and ip), smaller
# ones by usearch's exact search. Over 300,000 384-d vectors the two are even from 1 to about 6
# queries (one: 42-50 ms either way); at 8 the product takes 87-106 ms, usearch 139-144.
PRODUCT_MIN_QUERIES = 8
# One block of a product (queries by chunk rows, float32) takes at most this many bytes.
BLOCK_BYTES = 16 << 20
# Queries go this many at a time, so a block spans at least BLOCK_BYTES / 4 / QUERY_BLOCK rows.
QUERY_BLOCK = 1024
# A query with more new candidates than this in one block has them narrowed by partition.
DENSE = 64
# Not l2: ranking by |v|^2 - 2q.v in float32 cancels away the small distances between near
# neighbours of large norm and picks the wrong ones, which no exact recompute of the chosen mends.
PRODUCT_METRICS = (MetricKind.Cos, MetricKind.IP)


def scan(
    chunks: list[Chunk], queries: Vectors, k: int, metric: MetricKind, threads: int
) -> tuple[Keys, Distances]:
    """Per query (one row each), the k nearest keys among all the chunks and their distances.

    Distances are in the engines' units: 1 - similarity for cosine and ip,
    squared L2 for l2. Each row is nearest first; among equal distances the
    earlier row (chunk order, then row order) wins. Where the chunks hold
    fewer than k rows, the places past them have key 0 and distance infinity.

    Batches go by matrix product (`_by_product`); single queries, l2, and
    cosine's zero queries (whose distances follow usearch's own
    rule) by usearch's exact search. `threads` is usearch's; the product
    runs on BLAS's own threads.
    """
    count, k = len(queries), max(k, 0)
    offsets = np.cumsum([0] + [len(keys) for keys, _ in chunks], dtype=np.int64)
    distances = np.full((count, k), np.inf, dtype=np.float32)
    places = np.full((count, k), offsets[-1], dtype=np.int64)
    if k and count and offsets[-1]:
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(count, -1)
        product = np.full(count, metric in PRODUCT_METRICS and count >= PRODUCT_MIN_QUERIES)
        if metric == MetricKind.Cos:
            product &= np.einsum("ij,ij->i", queries, queries) > 0
        for rows, scanner in (
            (np.flatnonzero(product), _by_product),
            (np.flatnonzero(~product), _by_usearch),
        ):
            if len(rows):
                distances[rows], places[rows] = scanner(chunks, offsets, queries[rows], k, metric, threads)
    return _keys_at(chunks, offsets, places), distances


def _by_usearch(
    chunks: list[Chunk], offsets: Rows, queries: Vectors, k: int, metric: MetricKind, threads: int
) -> tuple[Distances, Rows]:
    """usearch's exact search of each chunk, merged: distances and places (in all the chunks' rows)."""
    # One query's exact scan runs on one thread however many it is given, and
    # starting threads for each chunk cost more than the scan (136 ms, not 45 ms, at 300,000).
    threads = 1 if len(queries) == 1 else threads
    distances, places = [], []
    for (keys, vectors), offset in zip(chunks, offsets.tolist(), strict=False):
        near = exact_search(vectors, queries, min(k, len(keys)), metric, exact=True, threads=threads)
        rows, found = _matrix(near, len(queries))
        distances.append(found)
        places.append(np.where(np.isfinite(found), rows + offset, offsets[-1]))
    return _best(np.concatenate(distances, axis=1), np.concatenate(places, axis=1), k)


def _by_product(
    chunks: list[Chunk], offsets: Rows, queries: Vectors, k: int, metric: MetricKind, threads: int
) -> tuple[Distances, Rows]:
    """The exact scan as matrix products (BLAS), a bounded block of rows at a time.

    Each block ranks its rows by a term that orders them as the distance
    does for each query (the query's own norm left out): -q.v for ip,
    -q.v/|v| for cosine (a zero vector scores 0, as usearch has it). Only
    rows beating a query's k-th best so far are merged. A rank that is not a
    number (a product of finite values past float32's range) counts as
    infinitely far, so it cannot hide the rest of its block. Blocks are
    up-cast to float32, so the scan is exact for what it is given (the
    pending set holds float32, whatever the index's dtype: `Graph.add`).
    """
    total = int(offsets[-1])
    best = np.full((len(queries), k), np.inf, dtype=np.float32)
    places = np.full((len(queries), k), total, dtype=np.int64)
    for start in range(0, len(queries), QUERY_BLOCK):
        part = -queries[start : start + QUERY_BLOCK]
        step = max(1, BLOCK_BYTES // (4 * len(part)))
        buffer = np.empty(len(part) * min(step, max(len(keys) for keys, _ in chunks)), dtype=np.float32)
        with np.errstate(over="ignore", invalid="ignore"):  # see the NaN rule above
            for (_, vectors), offset in zip(chunks, offsets.tolist(), strict=False):
                for row in range(0, len(vectors), step):
                    block = np.asarray(vectors[row : row + step], dtype=np.float32)  # a view when float32
                    # Rows by queries: BLAS takes this shape fastest here (half the time for a few queries).
                    out = buffer[: len(block) * len(part)].reshape(len(block), len(part))
                    ranks = np.matmul(block, part.T, out=out)
                    if metric == MetricKind.Cos:
                        norms = np.sqrt(np.einsum("ij,ij->i", block, block))
                        ranks *= np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)[:, None]
                    ranks[np.isnan(ranks)] = np.inf
                    at = slice(start, start + QUERY_BLOCK)
                    _fold(ranks, offset + row, best[at], places[at], total)
    if metric == MetricKind.Cos:
        best *= 1.0 / np.sqrt(np.einsum("ij,ij->i", queries, queries))[:, None]
    return best + np.float32(1.0), places


def _fold(ranks: Distances, offset: int, best: Distances, places: Rows, total: int) -> None:
    """Keep in `best` and `places` the k best per query of them and a block's `ranks` (rows from `offset`).

    `ranks` is rows by queries. Most rows of a block beat no query's k-th
    best; those that do are taken one by one, or, past `DENSE` for a query
    (in its first block, say), its k best by partition.
    """
    k = best.shape[1]
    hit = np.flatnonzero(ranks.min(axis=0) < best[:, -1])
    if not len(hit):
        return
    if len(hit) < ranks.shape[1]:
        ranks = ranks[:, hit]
    better = ranks < best[hit, -1]
    counts = np.count_nonzero(better, axis=0)
    dense = counts > DENSE
    width = max(int(counts[~dense].max(initial=0)), min(k, len(ranks)) if dense.any() else 0)
    new_ranks = np.full((len(hit), k + width), np.inf, dtype=np.float32)
    new_places = np.full((len(hit), k + width), total, dtype=np.int64)
    new_ranks[:, :k], new_places[:, :k] = best[hit], places[hit]
    if dense.any():
        some = np.ascontiguousarray((ranks if dense.all() else ranks[:, dense]).T)
        cols = _first_k(some, k)
        new_ranks[dense, k : k + cols.shape[1]] = np.take_along_axis(some, cols, axis=1)
        new_places[dense, k : k + cols.shape[1]] = cols + offset
    if not dense.all():
        sparse = np.flatnonzero(~dense)
        rows, of = np.nonzero(better if len(sparse) == len(hit) else better[:, sparse])
        order = np.argsort(of, kind="stable")  # by query, each query's rows in order
        rows, of = rows[order], of[order]
        starts = np.cumsum(counts[sparse]) - counts[sparse]
        at = k + np.arange(len(rows)) - starts[of]
        new_ranks[sparse[of], at] = ranks[rows, sparse[of]]
        new_places[sparse[of], at] = rows + offset
    best[hit], places[hit] = _best(new_ranks, new_places, k)


def _first_k(ranks: Distances, k: int) -> Rows:
    """Per row, the columns of its k smallest ranks; of equal ranks at the edge, the first ones."""
    if ranks.shape[1] <= k:
        return np.broadcast_to(np.arange(ranks.shape[1], dtype=np.int64), ranks.shape).copy()
    cols = np.argpartition(ranks, k - 1, axis=1)[:, :k]
    edge = np.take_along_axis(ranks, cols, axis=1).max(axis=1)
    for row in np.flatnonzero(np.count_nonzero(ranks <= edge[:, None], axis=1) > k).tolist():
        cols[row] = np.argsort(ranks[row], kind="stable")[:k]  # ties at the edge: rare
    return cols


def _best(distances: Distances, places: Rows, k: int) -> tuple[Distances, Rows]:
    """Per row, the k smallest (distance, place) pairs, in that order; infinity pads a short row."""
    if distances.shape[1] < k:
        pad = k - distances.shape[1]
        distances = np.pad(distances, ((0, 0), (0, pad)), constant_values=np.inf)
        places = np.pad(places, ((0, 0), (0, pad)), constant_values=np.iinfo(np.int64).max)
    order = np.lexsort((places, distances), axis=1)[:, :k]
    return np.take_along_axis(distances, order, axis=1), np.take_along_axis(places, order, axis=1)


def _keys_at(chunks: list[Chunk], offsets: Rows, places: Rows) -> Keys:
    """The keys at these places (0 past the last row)."""
    keys = np.zeros(places.size, dtype=np.uint64)
    flat = places.ravel()
    real = np.flatnonzero(flat < offsets[-1])
    chunk_of = np.searchsorted(offsets, flat[real], side="right") - 1
    row_of = flat[real] - offsets[chunk_of]
    for chunk in np.unique(chunk_of).tolist():
        mine = chunk_of == chunk
        keys[real[mine]] = chunks[chunk][0][row_of[mine]]
    return keys.reshape(places.shape)


def lookup(chunks: list[Chunk]) -> tuple[Keys, Rows, Rows]:
    """Every key in the chunks, sorted, with its chunk and its row in that chunk."""
    keys = np.concatenate([k for k, _ in chunks]).astype(np.uint64)
    chunk_of = np.repeat(np.arange(len(chunks), dtype=np.int64), [len(k) for k, _ in chunks])
    row_of = np.concatenate([np.arange(len(k), dtype=np.int64) for k, _ in chunks])
    if len(keys) > 1 and not bool(np.all(keys[1:] > keys[:-1])):  # keys are assigned rising: rare
        order = np.argsort(keys, kind="stable")
        keys, chunk_of, row_of = keys[order], chunk_of[order], row_of[order]
    return keys, chunk_of, row_of


def without(chunks: list[Chunk], dropped: set[int]) -> list[Chunk]:
    """The chunks with the dropped keys' rows taken out (copying only chunks that had one)."""
    if not dropped:
        return chunks
    gone_keys = np.fromiter(dropped, dtype=np.uint64, count=len(dropped))
    kept = []
    for keys, vectors in chunks:
        gone = np.isin(keys, gone_keys)
        if gone.any():
            keys, vectors = keys[~gone], vectors[~gone]
        if len(keys):
            kept.append((keys, vectors))
    return kept


def coalesced(chunks: list[Chunk]) -> list[Chunk]:
    """The chunks in order, runs of ones under `MIN_CHUNK` rows merged (copying only those)."""
    out: list[Chunk] = []
    run: list[Chunk] = []
    rows = 0

    def close_run() -> None:
        if len(run) == 1:
            out.append(run[0])
        elif run:
            out.append((np.concatenate([k for k, _ in run]), np.concatenate([v for _, v in run])))
        run.clear()

    for chunk in chunks:
        if len(chunk[0]) >= MIN_CHUNK:
            close_run()
            out.append(chunk)
            rows = 0
            continue
        run.append(chunk)
        rows += len(chunk[0])
        if rows >= MIN_CHUNK:
            close_run()
            rows = 0
    close_run()
    return out


def _matrix(found: Any, queries: int) -> tuple[Rows, npt.NDArray[np.float32]]:
    """An exact search's rows and distances as (queries, k) arrays; missing places are at infinity."""
    rows = np.asarray(found.keys).reshape(queries, -1).astype(np.int64)
    distances = np.asarray(found.distances, dtype=np.float32).reshape(queries, -1)
    if isinstance(found, BatchMatches):
        beyond = np.arange(rows.shape[1])[None, :] >= np.asarray(found.counts)[:, None]
        if beyond.any():
            rows, distances = np.where(beyond, 0, rows), np.where(beyond, np.inf, distances)
    return rows, distances
