"""vectord against the raw engines: build time, recall@10 and queries/s on clustered vectors.

    .venv/bin/python bench/vectors.py [--n 100000] [--dim 384] [--queries 1000] [--skip-others]

Builds the same data (unit vectors around 1,000 centres; queries are data
points plus small noise) in usearch in-process, hnswlib and faiss-cpu HNSW
(both tuned to usearch's recall), and in a real `lakehouse serve` process
over HTTP. Prints build time, recall@10 against numpy brute force, batch and
single-query rates, the HTTP/in-process ratio, and the time a kill -9'd
process takes to serve the index again. hnswlib and faiss-cpu are needed
only here: `pip install hnswlib faiss-cpu`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.procs import LakehouseProcess, write_config

from lakehouse.config import VectordConfig

# vectord's own defaults, so the in-process engines are tuned exactly as the server is.
_DEFAULTS = VectordConfig()
CONNECTIVITY, EXPANSION_ADD, EXPANSION_SEARCH = (
    _DEFAULTS.connectivity,
    _DEFAULTS.expansion_add,
    _DEFAULTS.expansion_search,
)


def dataset(n: int, dim: int, queries: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clustered unit vectors, queries near them, and the exact top-10 of each query."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(1000, dim)).astype(np.float32)
    data = centres[rng.integers(0, 1000, n)] + 0.3 * rng.normal(size=(n, dim)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    q = data[rng.integers(0, n, queries)] + 0.05 * rng.normal(size=(queries, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    truth = np.argsort(-(q @ data.T), axis=1)[:, :10]
    return data, q.astype(np.float32), truth


def recall(found: list[set[int]], truth: np.ndarray) -> float:
    """Mean share of the true top-10 found."""
    return float(np.mean([len(f & set(row.tolist())) / 10 for f, row in zip(found, truth, strict=True)]))


def rate(fn: Callable[[], Any], count: int, repeat: int = 3) -> float:
    """Best queries/s over `repeat` runs of `fn` answering `count` queries."""
    best = min(_timed(fn) for _ in range(repeat))
    return count / best


def _timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def bench_usearch(data: np.ndarray, q: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """usearch in this process, with vectord's defaults."""
    from usearch.index import Index

    index = Index(
        ndim=data.shape[1],
        metric="cos",
        dtype="f32",
        connectivity=CONNECTIVITY,
        expansion_add=EXPANSION_ADD,
        expansion_search=EXPANSION_SEARCH,
    )
    build = _timed(lambda: index.add(np.arange(len(data)), data))
    found = index.search(q, 10)
    single = []
    for row in q[:300]:
        started = time.perf_counter()
        index.search(row, 10, threads=1)
        single.append(time.perf_counter() - started)
    return {
        "build_s": build,
        "recall": recall([set(found.keys[i][: found.counts[i]].tolist()) for i in range(len(q))], truth),
        "batch_qps": rate(lambda: index.search(q, 10), len(q)),
        "p50_ms": statistics.median(single) * 1000,
    }


def tuned(search: Callable[[int], list[set[int]]], truth: np.ndarray, target: float) -> int:
    """The smallest search depth reaching `target` recall."""
    for ef in (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512):
        if recall(search(ef), truth) >= target:
            return ef
    return 512


def bench_hnswlib(data: np.ndarray, q: np.ndarray, truth: np.ndarray, target: float) -> dict[str, float]:
    """hnswlib with the same graph parameters, depth tuned to `target` recall."""
    import hnswlib

    index = hnswlib.Index(space="cosine", dim=data.shape[1])
    index.init_index(max_elements=len(data), M=CONNECTIVITY, ef_construction=EXPANSION_ADD)
    build = _timed(lambda: index.add_items(data, np.arange(len(data))))

    def search(ef: int) -> list[set[int]]:
        index.set_ef(ef)
        labels, _ = index.knn_query(q, k=10)
        return [set(row.tolist()) for row in labels]

    ef = tuned(search, truth, target)
    index.set_ef(ef)
    return {
        "build_s": build,
        "ef": ef,
        "recall": recall(search(ef), truth),
        "batch_qps": rate(lambda: index.knn_query(q, k=10), len(q)),
    }


def bench_faiss(data: np.ndarray, q: np.ndarray, truth: np.ndarray, target: float) -> dict[str, float]:
    """faiss-cpu IndexHNSWFlat (inner product on unit vectors), depth tuned to `target` recall."""
    import faiss

    index = faiss.IndexHNSWFlat(data.shape[1], CONNECTIVITY, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = EXPANSION_ADD
    build = _timed(lambda: index.add(data))

    def search(ef: int) -> list[set[int]]:
        index.hnsw.efSearch = ef
        _, labels = index.search(q, 10)
        return [set(row.tolist()) for row in labels]

    ef = tuned(search, truth, target)
    index.hnsw.efSearch = ef
    return {
        "build_s": build,
        "ef": ef,
        "recall": recall(search(ef), truth),
        "batch_qps": rate(lambda: index.search(q, 10), len(q)),
    }


def bench_lakehouse(data: np.ndarray, q: np.ndarray, truth: np.ndarray, root: Path) -> dict[str, float]:
    """The same data through a real `lakehouse serve` over loopback HTTP."""
    config = write_config(root / "lakehouse.toml", {"storage": {"root": str(root / "data")}})
    proc = LakehouseProcess(config).start()
    try:
        with httpx.Client(base_url=proc.url, timeout=600.0) as c:
            c.post("/v1/vectors/index", json={"name": "bench", "dim": data.shape[1]}).raise_for_status()
            started = time.perf_counter()
            for start in range(0, len(data), 2000):
                rows = data[start : start + 2000].tolist()
                items = [{"id": str(start + i), "vector": v} for i, v in enumerate(rows)]
                c.post("/v1/vectors/index/bench/add", json={"items": items}).raise_for_status()
            build = time.perf_counter() - started
            queries = q.tolist()
            # Encoded once, as the in-process engines get ready-made arrays.
            request = json.dumps({"vectors": queries, "k": 10}).encode()
            headers = {"content-type": "application/json"}

            def batch() -> list[dict[str, Any]]:
                answer = c.post("/v1/vectors/index/bench/search", content=request, headers=headers)
                answer.raise_for_status()
                results: list[dict[str, Any]] = answer.json()["results"]
                return results

            found = [{int(h["id"]) for h in r["hits"]} for r in batch()]
            single = []
            for row in queries[:300]:
                started = time.perf_counter()
                c.post("/v1/vectors/index/bench/search", json={"vector": row, "k": 10}).raise_for_status()
                single.append(time.perf_counter() - started)
            out = {
                "build_s": build,
                "recall": recall(found, truth),
                "batch_qps": rate(batch, len(q)),
                "p50_ms": statistics.median(single) * 1000,
            }
        proc.kill9()
        started = time.perf_counter()
        proc.start(timeout=120)
        with httpx.Client(base_url=proc.url, timeout=60.0) as c:
            c.post("/v1/vectors/index/bench/search", json={"vector": queries[0], "k": 10}).raise_for_status()
        out["restart_kill9_s"] = time.perf_counter() - started
        proc.stop()  # graceful: snapshots what the log holds
        started = time.perf_counter()
        proc.start(timeout=120)
        out["restart_clean_s"] = time.perf_counter() - started
        return out
    finally:
        proc.kill9()


def main() -> None:
    """Run every engine on the same data and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--skip-others", action="store_true", help="skip hnswlib and faiss")
    args = parser.parse_args()
    data, q, truth = dataset(args.n, args.dim, args.queries)
    print(f"{args.n} vectors, dim {args.dim}, {args.queries} queries")
    results = {"usearch in-process": bench_usearch(data, q, truth)}
    target = results["usearch in-process"]["recall"]
    if not args.skip_others:
        results["hnswlib"] = bench_hnswlib(data, q, truth, target)
        results["faiss-cpu HNSW"] = bench_faiss(data, q, truth, target)
    with tempfile.TemporaryDirectory(prefix="lakehouse-bench-") as tmp:
        results["lakehouse HTTP"] = bench_lakehouse(data, q, truth, Path(tmp))
    print("| engine | build s | ef | recall@10 | batch q/s | p50 single ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        ef = int(r.get("ef", EXPANSION_SEARCH))
        p50 = f"{r['p50_ms']:.2f}" if "p50_ms" in r else "-"
        print(f"| {name} | {r['build_s']:.1f} | {ef} | {r['recall']:.3f} | {r['batch_qps']:.0f} | {p50} |")
    http, raw = results["lakehouse HTTP"], results["usearch in-process"]
    print(f"batch search through HTTP / in-process usearch: {http['batch_qps'] / raw['batch_qps']:.2f}x")
    print(f"restart after kill -9 until the first search answers: {http['restart_kill9_s']:.2f} s")
    print(f"restart after a clean stop until healthy: {http['restart_clean_s']:.2f} s")


if __name__ == "__main__":
    main()
