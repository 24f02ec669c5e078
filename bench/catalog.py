"""How the catalog's costs grow with its size: datasets, and versions of one dataset.

    .venv/bin/python bench/catalog.py [--sizes 10,100,1000] [--versions 300] [--repeat 50]

For each size N a store is filled in-process with N one-file datasets (5
rows each, written through the catalog as ingest would), then a real
`lakehouse serve` is started on it and timed: start-up to a healthy
`/health`, the first query, `SELECT count(*)` p50 over HTTP (against
in-process DuckDB on the same Parquet file), `GET /v1/catalog/datasets`
p50 and an ingest append p50. Then one dataset is grown to `--versions`
versions and the same count and append are timed on it.

Targets: query p50 at 1,000 datasets within 1.2x of 10 and within 3 ms of
in-process DuckDB; append p50 at 300 versions within 1.2x of 10; listing at
1,000 under 10 ms; start-up at 1,000 under 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import duckdb
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.procs import LakehouseProcess, write_config

from lakehouse.catalog import Catalog, Column, ObjectSpec
from lakehouse.catalog.iceberg import field_ids_sql
from lakehouse.config import Settings, StorageConfig
from lakehouse.storage import open_store

COLUMNS = [Column("id", "BIGINT"), Column("label", "VARCHAR")]


def p50_ms(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of `fn` in milliseconds (after two warm-up calls)."""
    fn()
    fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def fill(root: Path, datasets: int) -> Path:
    """`datasets` one-file datasets of 5 rows; returns the first one's Parquet file."""
    store = open_store(Settings(storage=StorageConfig(root=str(root))))
    catalog = Catalog(store)
    source = root.parent / "part.parquet"
    duckdb.execute(
        f"COPY (SELECT range AS id, 'row ' || range AS label FROM range(5)) TO '{source}' "
        f"(FORMAT parquet, {field_ids_sql(COLUMNS)})"
    )
    try:
        for index in range(datasets):
            key = f"_lakehouse/datasets/d{index:05d}/part-0.parquet"
            await store.put_file(key, source)
            await catalog.register(f"d{index:05d}", COLUMNS, [ObjectSpec(key, 5)], 5)
    finally:
        await store.close()
    return root / "objects" / "_lakehouse" / "datasets" / "d00000" / "part-0.parquet"


def measure(root: Path, first_file: Path, repeat: int, label: str) -> dict[str, float]:
    """Start a server on `root` and time what the docstring lists."""
    config = write_config(root.parent / f"lakehouse-{label}.toml", {"storage": {"root": str(root)}})
    proc = LakehouseProcess(config)
    started = time.perf_counter()
    proc.start(timeout=120)
    startup = time.perf_counter() - started
    figures: dict[str, float] = {"startup_s": startup}
    try:
        with httpx.Client(base_url=proc.url, timeout=60) as client:
            started = time.perf_counter()
            first = client.post("/v1/sql", json={"sql": "SELECT count(*) FROM d00000"})
            figures["first_query_s"] = time.perf_counter() - started
            assert first.status_code == 200, first.text

            def query() -> None:
                answer = client.post("/v1/sql", json={"sql": "SELECT count(*) FROM d00000"})
                assert answer.status_code == 200, answer.text

            con = duckdb.connect()
            figures["query_ms"] = p50_ms(query, repeat)
            figures["duckdb_ms"] = p50_ms(
                lambda: con.execute(f"SELECT count(*) FROM read_parquet('{first_file}')").fetchall(), repeat
            )
            figures["list_ms"] = p50_ms(lambda: client.get("/v1/catalog/datasets").raise_for_status(), repeat)

            def append() -> None:
                tag = uuid.uuid4().hex
                body = f"id,label\n{int(tag[:8], 16)},appended {tag}\n".encode()
                answer = client.post("/v1/ingest/d00001", content=body, headers={"Content-Type": "text/csv"})
                assert answer.status_code == 201, answer.text

            figures["append_ms"] = p50_ms(append, max(10, repeat // 3))
    finally:
        proc.stop()
    return figures


def grow(root: Path, versions: int) -> None:
    """Grow dataset d00001 to `versions` versions through a server."""
    config = write_config(root.parent / "lakehouse-grow.toml", {"storage": {"root": str(root)}})
    proc = LakehouseProcess(config).start(timeout=120)
    try:
        with httpx.Client(base_url=proc.url, timeout=60) as client:
            have = len(client.get("/v1/catalog/datasets/d00001/versions").json()["versions"])
            for row in range(have, versions):
                body = f"id,label\n{10**6 + row},grown {row}\n".encode()
                client.post(
                    "/v1/ingest/d00001", content=body, headers={"Content-Type": "text/csv"}
                ).raise_for_status()
    finally:
        proc.stop()


def main() -> None:
    """Run every size and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--versions", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory(prefix="lakehouse-bench-catalog-") as tmp:
        for size in sizes:
            root = Path(tmp) / f"n{size}" / "data"
            root.parent.mkdir(parents=True)
            first = asyncio.run(fill(root, size))
            rows.append((f"{size} datasets", measure(root, first, args.repeat, f"n{size}")))
            print(rows[-1][0], rows[-1][1], flush=True)
        root = Path(tmp) / f"n{sizes[0]}" / "data"
        grow(root, args.versions)
        first = root / "objects" / "_lakehouse" / "datasets" / "d00000" / "part-0.parquet"
        rows.append(
            (
                f"{sizes[0]} datasets, one at {args.versions} versions",
                measure(root, first, args.repeat, "grown"),
            )
        )
    print()
    print(f"{'':44} {'start s':>8} {'1st q s':>8} {'count ms':>9} {'duckdb':>7} {'list ms':>8} {'append':>8}")
    for label, f in rows:
        print(
            f"{label:44} {f['startup_s']:8.2f} {f['first_query_s']:8.2f} {f['query_ms']:9.2f} "
            f"{f['duckdb_ms']:7.2f} {f['list_ms']:8.2f} {f['append_ms']:8.1f}"
        )
    base, top = rows[0][1], rows[len(sizes) - 1][1]
    print()
    ratio = top["query_ms"] / base["query_ms"]
    print(f"query p50 at {sizes[-1]} vs {sizes[0]} datasets: {ratio:.2f}x (target <= 1.2x)")
    added = top["query_ms"] - top["duckdb_ms"]
    print(f"query p50 at {sizes[-1]} datasets over in-process DuckDB: +{added:.2f} ms (target < 3)")
    grown = rows[-1][1]["append_ms"] / base["append_ms"]
    print(f"append p50 at {args.versions} vs few versions: {grown:.2f}x (target <= 1.2x)")
    print(f"listing p50 at {sizes[-1]} datasets: {top['list_ms']:.2f} ms (target < 10)")
    print(f"start-up at {sizes[-1]} datasets: {top['startup_s']:.2f} s (target < 2)")


if __name__ == "__main__":
    main()
