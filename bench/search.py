"""Filtered, keyword and hybrid search through a real `lakehouse serve`, and linked-index sync throughput.

    .venv/bin/python bench/search.py [--n 100000] [--dim 384] [--queries 300] [--sync-rows 3000] [--skip-sync]

Search: `n` clustered unit vectors, each with a text (30 words from a 5,000-word
vocabulary, planted terms such as CDL-A in a few) and metadata `rate` uniform
in [0, 100). Over HTTP, one query per request, in sequence, it measures:
unfiltered search; range filters `{"rate": {"$lt": s}}` at 1%, 10% and 50%
selectivity (queries/s, ratio to unfiltered, recall@10 against the exact
filtered top 10 by numpy); keyword and hybrid p50 (hybrid given the vector, so
no embedding is timed). In this process: the BM25 rebuild over the same texts,
and the restart after kill -9 until the first vector, then keyword, search answers.

Sync (needs `lakehouse[local]`): `sync-rows` rows ingested as CSV, then an index
linked to them with `local/all-minilm-l6-v2` filled by `POST .../sync`; rows/s
against the model called directly on the same texts (target at least 0.8x).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.embed import load_model, sentences
from tests.support.procs import LakehouseProcess, write_config

from lakehouse.vectors.index import IndexSpec, VectorIndex
from lakehouse.vectors.records import Batch

SELECTIVITIES = (0.01, 0.10, 0.50)
PLANTED = ["CDL-A", "OSHA-30", "HAZMAT", "TWIC"]


def dataset(n: int, dim: int, queries: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Clustered unit vectors, queries near them, rates, and texts."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(1000, dim)).astype(np.float32)
    data = centres[rng.integers(0, 1000, n)] + 0.3 * rng.normal(size=(n, dim)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    q = data[rng.integers(0, n, queries)] + 0.05 * rng.normal(size=(queries, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    rates = rng.uniform(0, 100, n)
    words = [f"w{i}" for i in range(5000)]
    pick = random.Random(0)
    texts = []
    for i in range(n):
        text = " ".join(pick.choice(words) for _ in range(30))
        if i % 97 == 0:
            text += " " + PLANTED[i % len(PLANTED)]
        texts.append(text)
    return data, q.astype(np.float32), rates, texts


def filtered_truth(data: np.ndarray, q: np.ndarray, allowed: np.ndarray) -> list[set[int]]:
    """The exact top 10 of each query among the allowed rows."""
    rows = np.flatnonzero(allowed)
    sims = q @ data[rows].T
    top = np.argsort(-sims, axis=1)[:, :10]
    return [set(rows[t].tolist()) for t in top]


def timed_searches(c: httpx.Client, bodies: list[bytes]) -> tuple[list[float], list[list[dict[str, Any]]]]:
    """Each request's latency (s) and hits, one request at a time."""
    latencies, answers = [], []
    headers = {"content-type": "application/json"}
    for body in bodies:
        started = time.perf_counter()
        resp = c.post("/v1/vectors/index/bench/search", content=body, headers=headers)
        latencies.append(time.perf_counter() - started)
        resp.raise_for_status()
        answers.append(resp.json()["hits"])
    return latencies, answers


def bench_search(args: argparse.Namespace, root: Path) -> None:
    """Search figures over HTTP, and the keyword rebuild in process."""
    data, q, rates, texts = dataset(args.n, args.dim, args.queries)
    config = write_config(root / "lakehouse.toml", {"storage": {"root": str(root / "data")}})
    proc = LakehouseProcess(config).start()
    rows: list[tuple[str, str, str, str]] = []
    try:
        with httpx.Client(base_url=proc.url, timeout=600.0) as c:
            c.post("/v1/vectors/index", json={"name": "bench", "dim": args.dim}).raise_for_status()
            started = time.perf_counter()
            for start in range(0, args.n, 2000):
                items = [
                    {
                        "id": str(i),
                        "vector": data[i].tolist(),
                        "text": texts[i],
                        "metadata": {"rate": rates[i]},
                    }
                    for i in range(start, min(start + 2000, args.n))
                ]
                c.post("/v1/vectors/index/bench/add", json={"items": items}).raise_for_status()
            print(f"{args.n} items, dim {args.dim}, added over HTTP in {time.perf_counter() - started:.1f} s")
            # Warm-up: the first keyword search waits for the background BM25 build.
            started = time.perf_counter()
            c.post(
                "/v1/vectors/index/bench/search", json={"text": "w1", "mode": "keyword"}
            ).raise_for_status()
            print(f"first keyword search after the adds: {time.perf_counter() - started:.2f} s")

            def vector_bodies(flt: dict[str, Any] | None) -> list[bytes]:
                return [
                    json.dumps({"vector": v, "k": 10, **({"filter": flt} if flt else {})}).encode()
                    for v in q.tolist()
                ]

            base, _ = timed_searches(c, vector_bodies(None))
            base_qps = len(base) / sum(base)
            rows.append(("unfiltered", f"{base_qps:.0f}", "1.00x", f"{statistics.median(base) * 1000:.2f}"))
            for s in SELECTIVITIES:
                bound = float(np.quantile(rates, s))
                allowed = rates < bound
                lat, answers = timed_searches(c, vector_bodies({"rate": {"$lt": bound}}))
                truth = filtered_truth(data, q, allowed)
                found = [{int(h["id"]) for h in hits} for hits in answers]
                rec = float(np.mean([len(f & t) / 10 for f, t in zip(found, truth, strict=True)]))
                short = sum(len(hits) < 10 for hits in answers)
                qps = len(lat) / sum(lat)
                rows.append(
                    (
                        f"rate < p{int(s * 100)} ({allowed.mean():.0%}), recall@10 {rec:.3f}, short {short}",
                        f"{qps:.0f}",
                        f"{qps / base_qps:.2f}x",
                        f"{statistics.median(lat) * 1000:.2f}",
                    )
                )
            pick = random.Random(1)
            words = [f"w{pick.randrange(5000)} {pick.choice(PLANTED)}" for _ in range(len(q))]
            keyword = [json.dumps({"text": w, "k": 10, "mode": "keyword"}).encode() for w in words]
            lat, answers = timed_searches(c, keyword)
            rows.append(
                ("keyword (BM25)", f"{len(lat) / sum(lat):.0f}", "", f"{statistics.median(lat) * 1000:.2f}")
            )
            hybrid = [
                json.dumps({"text": w, "vector": v, "k": 10, "mode": "hybrid"}).encode()
                for w, v in zip(words, q.tolist(), strict=True)
            ]
            lat, _ = timed_searches(c, hybrid)
            rows.append(
                ("hybrid (RRF)", f"{len(lat) / sum(lat):.0f}", "", f"{statistics.median(lat) * 1000:.2f}")
            )
            flt = {"rate": {"$lt": float(np.quantile(rates, 0.10))}}
            hybrid_f = [
                json.dumps({"text": w, "vector": v, "k": 10, "mode": "hybrid", "filter": flt}).encode()
                for w, v in zip(words, q.tolist(), strict=True)
            ]
            lat, _ = timed_searches(c, hybrid_f)
            rows.append(
                (
                    "hybrid + rate filter (10%)",
                    f"{len(lat) / sum(lat):.0f}",
                    "",
                    f"{statistics.median(lat) * 1000:.2f}",
                )
            )
        proc.kill9()
        started = time.perf_counter()
        proc.start(timeout=300)
        with httpx.Client(base_url=proc.url, timeout=300.0) as c:
            vector = {"vector": q[0].tolist(), "k": 10}
            # The index loads in the background: 503 busy until its log is read.
            while c.post("/v1/vectors/index/bench/search", json=vector).status_code == 503:
                time.sleep(0.02)
            restart = time.perf_counter() - started
            first_keyword = {"text": "w1", "mode": "keyword"}
            c.post("/v1/vectors/index/bench/search", json=first_keyword).raise_for_status()
            keyword_restart = time.perf_counter() - started
        print(f"restart after kill -9 until the first vector search answers: {restart:.1f} s")
        print(
            f"... until the first keyword search answers (BM25 rebuilt from texts): {keyword_restart:.1f} s"
        )
    finally:
        proc.kill9()
    print("| search (HTTP, one query per request) | q/s | vs unfiltered | p50 ms |")
    print("|---|---:|---:|---:|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    spec = IndexSpec("b", args.dim, "cosine", "m", "f32", 16, 128, 128, "g", "now", engine="hnswlib")
    index = VectorIndex.empty(spec)
    small = np.zeros((args.n, args.dim), dtype=np.float32)
    small[:, 0] = 1.0
    ids = [str(i) for i in range(args.n)]
    index.apply(Batch("add", ids, list(range(args.n)), small, [{}] * args.n, list(texts)))
    started = time.perf_counter()
    index.refresh_keywords()
    print(f"BM25 build over {args.n} texts in this process: {time.perf_counter() - started:.2f} s")


def bench_sync(args: argparse.Namespace, root: Path) -> None:
    """Rows/s through a linked index with the local model vs the model called directly."""
    texts = sentences(args.sync_rows)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "bio", "rate"])
    for i, text in enumerate(texts):
        writer.writerow([i, text, i % 50])
    model = load_model()
    model.encode(texts[:64], batch_size=64, show_progress_bar=False)
    started = time.perf_counter()
    model.encode(texts, batch_size=64, show_progress_bar=False)
    direct = len(texts) / (time.perf_counter() - started)
    del model
    config = write_config(root / "sync.toml", {"storage": {"root": str(root / "sync-data")}})
    proc = LakehouseProcess(config).start()
    try:
        with httpx.Client(base_url=proc.url, timeout=900.0) as c:
            c.post("/v1/ingest/candidates", content=out.getvalue().encode()).raise_for_status()
            c.post(
                "/v1/embed", json={"texts": texts[:64], "model": "local/all-minilm-l6-v2"}
            ).raise_for_status()
            source = {"dataset": "candidates", "id_column": "id", "text_columns": ["bio"]}
            body = {"name": "p", "dim": 384, "model": "local/all-minilm-l6-v2", "source": source}
            started = time.perf_counter()
            c.post("/v1/vectors/index", json=body).raise_for_status()
            info = c.post("/v1/vectors/index/p/sync").json()
            linked = info["count"] / (time.perf_counter() - started)
            assert info["count"] == len(texts), info
    finally:
        proc.kill9()
    print(f"sync of {len(texts)} rows: linked index {linked:.0f} rows/s, model directly {direct:.0f} rows/s")
    print(f"linked / direct: {linked / direct:.2f}x")


def main() -> None:
    """Run the search and sync measurements and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--sync-rows", type=int, default=3000)
    parser.add_argument("--skip-sync", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lakehouse-bench-") as tmp:
        if not args.skip_search:
            bench_search(args, Path(tmp))
        if not args.skip_sync:
            bench_sync(args, Path(tmp))


if __name__ == "__main__":
    main()
