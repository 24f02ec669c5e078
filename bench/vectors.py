"""vectord against the raw engines: build, add rate, recall@10, batch and single queries, restarts.

    .venv/bin/python bench/vectors.py [--n 100000] [--dim 384] [--queries 1000] [--skip-others]
    .venv/bin/python bench/vectors.py --restart-only [--n 300000] [--in-graph]

Builds the same data (unit vectors around 1,000 centres; queries are data
points plus small noise) in usearch, hnswlib and faiss-cpu HNSW in this
process, all with vectord's graph parameters (M, ef_add, ef_search) and all
cores for builds and batches, one thread for single queries; then in a real
`lakehouse serve` over HTTP, adding as Arrow streams and searching with
base64 vectors. Prints each engine's build time and add rate, recall@10
against numpy brute force, batch queries/s and single-query p50 (over HTTP
with httpx and with the standard library's `http.client`, each on one
keep-alive connection: httpx alone costs about 0.6 ms a request), the HTTP to
in-process ratios against the best engine, and restarts: after kill -9 with
every vector only in the log (time to /health, to a search answering, and
until the replayed vectors are in the graph), and after a clean stop from a
snapshot. `--restart-only` measures the kill -9 restart alone, its log
written directly as vectord writes it, in seconds rather than minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import json
import os
import re
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.procs import LakehouseProcess, write_config

from lakehouse.client.vectors import ARROW_STREAM, arrow_stream
from lakehouse.config import VectordConfig
from lakehouse.storage.local import LocalStore
from lakehouse.vectors.durability import IndexFiles, read_specs
from lakehouse.vectors.records import Batch

# vectord's own defaults, so the in-process engines are tuned exactly as the server is.
_DEFAULTS = VectordConfig()
CONNECTIVITY, EXPANSION_ADD, EXPANSION_SEARCH = (
    _DEFAULTS.connectivity,
    _DEFAULTS.expansion_add,
    _DEFAULTS.expansion_search,
)
THREADS = os.cpu_count() or 1
ADD_BATCH = 5000
# vectord's log line once an index is loaded
LOADED = re.compile(r"items loaded \(\d+ log records replayed\) in (\d+) ms")


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


def p50_ms(fn: Callable[[np.ndarray], Any], q: np.ndarray) -> float:
    """Median milliseconds of one single-query call, over 300 queries after a warm-up."""
    for row in q[:20]:
        fn(row)
    single = []
    for row in q[:300]:
        started = time.perf_counter()
        fn(row)
        single.append(time.perf_counter() - started)
    return statistics.median(single) * 1000


def measured(
    build: float, n: int, found: list[set[int]], truth: np.ndarray, **rest: float
) -> dict[str, float]:
    """One engine's row."""
    return {"build_s": build, "adds_per_s": n / build, "recall": recall(found, truth), **rest}


def bench_usearch(data: np.ndarray, q: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """usearch in this process, with vectord's parameters and all cores."""
    from usearch.index import Index

    index = Index(
        ndim=data.shape[1],
        metric="cos",
        dtype="f32",
        connectivity=CONNECTIVITY,
        expansion_add=EXPANSION_ADD,
        expansion_search=EXPANSION_SEARCH,
    )
    build = _timed(lambda: index.add(np.arange(len(data)), data, threads=THREADS))
    found = index.search(q, 10, threads=THREADS)
    return measured(
        build,
        len(data),
        [set(found.keys[i][: found.counts[i]].tolist()) for i in range(len(q))],
        truth,
        batch_qps=rate(lambda: index.search(q, 10, threads=THREADS), len(q)),
        p50_ms=p50_ms(lambda row: index.search(row, 10, threads=1), q),
    )


def bench_hnswlib(data: np.ndarray, q: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """hnswlib with the same graph parameters (the engine of float32 indexes before faiss)."""
    import hnswlib

    index = hnswlib.Index(space="cosine", dim=data.shape[1])
    index.init_index(max_elements=len(data), M=CONNECTIVITY, ef_construction=EXPANSION_ADD)
    index.set_ef(EXPANSION_SEARCH)
    build = _timed(lambda: index.add_items(data, np.arange(len(data)), num_threads=THREADS))
    labels, _ = index.knn_query(q, k=10, num_threads=THREADS)
    return measured(
        build,
        len(data),
        [set(row.tolist()) for row in labels],
        truth,
        batch_qps=rate(lambda: index.knn_query(q, k=10, num_threads=THREADS), len(q)),
        p50_ms=p50_ms(lambda row: index.knn_query(row[None, :], k=10, num_threads=1), q),
    )


def bench_faiss(data: np.ndarray, q: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """faiss-cpu IndexHNSWFlat (inner product on unit vectors), vectord's engine for float32 indexes."""
    import faiss

    index = faiss.IndexHNSWFlat(data.shape[1], CONNECTIVITY, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = EXPANSION_ADD
    index.hnsw.efSearch = EXPANSION_SEARCH
    faiss.omp_set_num_threads(THREADS)
    build = _timed(lambda: index.add(data))
    _, labels = index.search(q, 10)
    batch = rate(lambda: index.search(q, 10), len(q))
    faiss.omp_set_num_threads(1)
    single = p50_ms(lambda row: index.search(row[None, :], 10), q)
    faiss.omp_set_num_threads(THREADS)
    return measured(
        build, len(data), [set(row.tolist()) for row in labels], truth, batch_qps=batch, p50_ms=single
    )


def b64(vector: np.ndarray) -> str:
    """A vector as the base64 of its float32 bytes, as vectord reads it."""
    return base64.b64encode(np.ascontiguousarray(vector, dtype="<f4").tobytes()).decode()


def until_ok(fn: Callable[[], httpx.Response], timeout: float = 600.0) -> None:
    """Call until it answers 200."""
    deadline = time.monotonic() + timeout
    while fn().status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError("no 200 in time")
        time.sleep(0.02)


def bench_lakehouse(data: np.ndarray, q: np.ndarray, truth: np.ndarray, root: Path) -> dict[str, float]:
    """The same data through a real `lakehouse serve` over loopback HTTP, then its restarts.

    Snapshots are off while measuring, so the kill -9 leaves every vector in the log alone.
    """
    vectord = {"snapshot_every": 10**9, "snapshot_interval_secs": 10**6, "max_batch": ADD_BATCH}
    config = write_config(
        root / "lakehouse.toml", {"storage": {"root": str(root / "data")}, "vectord": vectord}
    )
    proc = LakehouseProcess(config).start()
    try:
        with httpx.Client(base_url=proc.url, timeout=600.0) as c:
            c.post("/v1/vectors/index", json={"name": "bench", "dim": data.shape[1]}).raise_for_status()
            bodies = [
                arrow_stream([str(i) for i in range(start, start + len(rows))], rows)
                for start in range(0, len(data), ADD_BATCH)
                for rows in [data[start : start + ADD_BATCH]]
            ]
            headers = {"content-type": ARROW_STREAM}
            started = time.perf_counter()
            for body in bodies:
                c.post("/v1/vectors/index/bench/add", content=body, headers=headers).raise_for_status()
            build = time.perf_counter() - started
            request = {"vectors": [b64(row) for row in q], "k": 10}

            def batch() -> list[dict[str, Any]]:
                answer = c.post("/v1/vectors/index/bench/search", json=request)
                answer.raise_for_status()
                results: list[dict[str, Any]] = answer.json()["results"]
                return results

            found = [{int(h["id"]) for h in r["hits"]} for r in batch()]

            def batch_arrow() -> pa.Table:
                answer = c.post(
                    "/v1/vectors/index/bench/search", json=request, headers={"accept": ARROW_STREAM}
                )
                answer.raise_for_status()
                return pa.ipc.open_stream(answer.content).read_all()

            rows = batch_arrow().select(["query", "id"]).to_pydict()
            by_arrow: list[set[int]] = [set() for _ in q]
            for query, hit in zip(rows["query"], rows["id"], strict=True):
                by_arrow[query].add(int(hit))
            assert by_arrow == found, "the Arrow answer holds other hits than the JSON one"

            def one(row: np.ndarray) -> None:
                c.post(
                    "/v1/vectors/index/bench/search", json={"vector": b64(row), "k": 10}
                ).raise_for_status()

            out = measured(
                build, len(data), found, truth, batch_qps=rate(batch, len(q)), p50_ms=p50_ms(one, q)
            )
            out["arrow_batch_qps"] = rate(batch_arrow, len(q))
            out["health_p50_ms"] = p50_ms(lambda _: c.get("/health").raise_for_status(), q)
        out["stdlib_p50_ms"], out["stdlib_health_p50_ms"] = stdlib_p50s(proc.url, q)
        query = {"vector": b64(q[0]), "k": 10}
        proc.kill9()
        started = time.perf_counter()
        proc.start(timeout=600)
        out["kill9_healthy_s"] = time.perf_counter() - started
        with httpx.Client(base_url=proc.url, timeout=60.0) as c:
            until_ok(lambda: c.post("/v1/vectors/index/bench/search", json=query))
            out["kill9_searchable_s"] = time.perf_counter() - started
            deadline = time.monotonic() + 1800
            while c.get("/v1/vectors/index/bench").json().get("unindexed") and time.monotonic() < deadline:
                time.sleep(0.1)
            out["kill9_in_graph_s"] = time.perf_counter() - started
        proc.stop()  # graceful: snapshots what the log holds
        started = time.perf_counter()
        proc.start(timeout=600)
        out["clean_healthy_s"] = time.perf_counter() - started
        with httpx.Client(base_url=proc.url, timeout=60.0) as c:
            until_ok(lambda: c.post("/v1/vectors/index/bench/search", json=query))
        out["clean_searchable_s"] = time.perf_counter() - started
        return out
    finally:
        proc.kill9()


def stdlib_p50s(url: str, q: np.ndarray) -> tuple[float, float]:
    """Single-query and `/health` p50 ms with `http.client`: one keep-alive connection, no-delay on."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=60)
    conn.connect()
    assert conn.sock is not None
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    headers = {"content-type": "application/json"}

    def call(method: str, path: str, body: bytes | None = None) -> None:
        conn.request(method, path, body=body, headers=headers)
        answer = conn.getresponse()
        answer.read()
        if answer.status != 200:
            raise RuntimeError(f"{method} {path} answered {answer.status}")

    try:
        search = p50_ms(
            lambda row: call(
                "POST",
                "/v1/vectors/index/bench/search",
                json.dumps({"vector": b64(row), "k": 10}).encode(),
            ),
            q,
        )
        return search, p50_ms(lambda _: call("GET", "/health"), q)
    finally:
        conn.close()


def bench_restart(data: np.ndarray, root: Path, in_graph: bool) -> dict[str, float]:
    """A kill -9 restart alone: the log written record by record as vectord writes it (one per
    `ADD_BATCH` add, nothing snapshotted), then the time to /health and to a search answering."""
    vectord = {"snapshot_every": 10**9, "snapshot_interval_secs": 10**6, "max_batch": ADD_BATCH}
    config = write_config(
        root / "lakehouse.toml", {"storage": {"root": str(root / "data")}, "vectord": vectord}
    )
    proc = LakehouseProcess(config).start()
    try:
        with httpx.Client(base_url=proc.url, timeout=60.0) as c:
            c.post("/v1/vectors/index", json={"name": "bench", "dim": data.shape[1]}).raise_for_status()
        proc.kill9()
        asyncio.run(write_log(root / "data", data))
        query = {"vector": b64(data[0]), "k": 10}
        out: dict[str, float] = {}
        started = time.perf_counter()
        proc.start(timeout=600)
        out["kill9_healthy_s"] = time.perf_counter() - started
        with httpx.Client(base_url=proc.url, timeout=60.0) as c:
            until_ok(lambda: c.post("/v1/vectors/index/bench/search", json=query))
            out["kill9_searchable_s"] = time.perf_counter() - started
            if in_graph:
                deadline = time.monotonic() + 1800
                while (
                    c.get("/v1/vectors/index/bench").json().get("unindexed") and time.monotonic() < deadline
                ):
                    time.sleep(0.1)
                out["kill9_in_graph_s"] = time.perf_counter() - started
        loaded = LOADED.search(proc.log())
        out["loaded_ms"] = float(loaded.group(1)) if loaded else float("nan")
        return out
    finally:
        proc.kill9()


async def write_log(data_root: Path, data: np.ndarray) -> None:
    """Append `data` to the one index's log as acknowledged adds of `ADD_BATCH` items would."""
    store = LocalStore(data_root)
    (spec,) = await read_specs(store)
    files = IndexFiles(store, spec)
    for seq, start in enumerate(range(0, len(data), ADD_BATCH), 1):
        rows = data[start : start + ADD_BATCH]
        ids = [str(i) for i in range(start, start + len(rows))]
        batch = Batch(
            "add", ids, list(range(start, start + len(rows))), rows, [{} for _ in ids], [None] * len(ids)
        )
        await files.append(seq, batch)
    await store.close()


def main() -> None:
    """Run every engine on the same data and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument(
        "--skip-others",
        action="store_true",
        help="skip hnswlib and usearch (faiss, the server's engine, always runs)",
    )
    parser.add_argument(
        "--restart-only",
        action="store_true",
        help="only the kill -9 restart, the log written directly (no engines, no adds over HTTP)",
    )
    parser.add_argument(
        "--in-graph", action="store_true", help="with --restart-only, also wait until all is linked"
    )
    args = parser.parse_args()
    if args.restart_only:
        data = dataset(args.n, args.dim, 1)[0]
        with tempfile.TemporaryDirectory(prefix="lakehouse-bench-") as tmp:
            r = bench_restart(data, Path(tmp), args.in_graph)
        graph = f", all in the graph {r['kill9_in_graph_s']:.1f} s" if args.in_graph else ""
        print(f"{args.n} vectors, dim {args.dim}, {len(range(0, args.n, ADD_BATCH))} log records")
        print(
            f"kill -9 with every vector in the log: healthy {r['kill9_healthy_s']:.2f} s, "
            f"searchable {r['kill9_searchable_s']:.2f} s{graph}"
        )
        print(f"index loaded (server log): {r['loaded_ms']:.0f} ms")
        return
    data, q, truth = dataset(args.n, args.dim, args.queries)
    print(f"{args.n} vectors, dim {args.dim}, {args.queries} queries, {THREADS} threads")
    results = {"faiss-cpu HNSW": bench_faiss(data, q, truth)}
    if not args.skip_others:
        results["hnswlib"] = bench_hnswlib(data, q, truth)
        results["usearch"] = bench_usearch(data, q, truth)
    with tempfile.TemporaryDirectory(prefix="lakehouse-bench-") as tmp:
        results["lakehouse HTTP"] = bench_lakehouse(data, q, truth, Path(tmp))
    print("| engine | build s | adds/s | recall@10 | batch q/s | p50 single ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(
            f"| {name} | {r['build_s']:.1f} | {r['adds_per_s']:.0f} | {r['recall']:.3f} "
            f"| {r['batch_qps']:.0f} | {r['p50_ms']:.2f} |"
        )
    http = results.pop("lakehouse HTTP")
    best_batch = max(results, key=lambda name: results[name]["batch_qps"])
    best_add = max(results, key=lambda name: results[name]["adds_per_s"])
    print(f"HTTP batch search / {best_batch}: {http['batch_qps'] / results[best_batch]['batch_qps']:.2f}x")
    arrow_ratio = http["arrow_batch_qps"] / results[best_batch]["batch_qps"]
    print(
        f"HTTP batch search, Arrow answer: {http['arrow_batch_qps']:.0f} q/s, {arrow_ratio:.2f}x {best_batch}"
    )
    print(f"HTTP adds / {best_add}: {http['adds_per_s'] / results[best_add]['adds_per_s']:.2f}x")
    print(f"HTTP /health p50: {http['health_p50_ms']:.2f} ms")
    print(
        f"with http.client: single-query p50 {http['stdlib_p50_ms']:.2f} ms, "
        f"/health p50 {http['stdlib_health_p50_ms']:.2f} ms"
    )
    print(
        f"kill -9 with every vector in the log: healthy {http['kill9_healthy_s']:.2f} s, "
        f"searchable {http['kill9_searchable_s']:.2f} s, all in the graph {http['kill9_in_graph_s']:.1f} s"
    )
    print(
        f"clean stop, from the snapshot: healthy {http['clean_healthy_s']:.2f} s, "
        f"searchable {http['clean_searchable_s']:.2f} s"
    )


if __name__ == "__main__":
    main()
