"""Pending vectors: searchable exactly, in the chunks they arrived in, until linked into a graph.

A replayed record's vectors stay where decoding left them, a read-only view
of the record's own bytes: gathering 300,000 of them into one matrix cost
the first search after a restart 0.5-1.5 s on fresh memory. Each chunk is
scanned exactly on its own and the results merged; runs of chunks under
`MIN_CHUNK` rows are merged once, so many small records do not mean many
small scans. `Graph` (graph.py) keeps the chunks and decides when these run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from usearch.compiled import MetricKind
from usearch.index import BatchMatches
from usearch.index import search as exact_search

from lakehouse.vectors.records import Vectors

# Chunks smaller than this are merged into one for scanning.
MIN_CHUNK = 4096

Keys = npt.NDArray[np.uint64]
Rows = npt.NDArray[np.int64]
Chunk = tuple[Keys, Vectors]


def scan(
    chunks: list[Chunk], queries: Vectors, k: int, metric: MetricKind, threads: int
) -> tuple[Keys, npt.NDArray[np.float32]]:
    """Per query (one row each), the k nearest keys of every chunk and their distances, unordered.

    A chunk with fewer than k rows fills its places past them with distance infinity.
    """
    # One query's exact scan runs on one thread however many it is given, and
    # starting threads for each chunk cost more than the scan (136 ms, not 45 ms, at 300,000).
    threads = 1 if len(queries) == 1 else threads
    near_keys, near_distances = [], []
    for keys, vectors in chunks:
        near = exact_search(vectors, queries, min(k, len(keys)), metric, exact=True, threads=threads)
        rows, distances = _matrix(near, len(queries))
        near_keys.append(keys[rows])
        near_distances.append(distances)
    return np.concatenate(near_keys, axis=1), np.concatenate(near_distances, axis=1)


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
