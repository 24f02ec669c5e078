"""Adding vectors over HTTP as JSON lists, base64 float32 and an Arrow stream, next to the engines' own add.

    .venv/bin/python bench/vector_adds.py [--n 100000] [--dim 384] [--batch 1000] [--engine usearch|hnswlib]

The same clustered unit vectors go into a fresh index per wire format of one
real `lakehouse serve` process, in batches of `--batch`, one request at a
time, each timed from the client's encoding to the server's acknowledgement
(durably logged and in the graph). Next to them, the engines' own in-process
add of the same data with the server's settings ([vectord] connectivity and
expansion_add): usearch's `Index.add` (in batches of `--batch`, as the server
receives them, and the whole array at once) and hnswlib's `add_items`.
`--engine` sets the server's `[vectord] engine`; without it the server runs
its default. Prints vectors/s for each and the HTTP/engine ratios.
"""

from __future__ import annotations

import argparse
import base64
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

from lakehouse.client.vectors import ARROW_STREAM, arrow_stream
from lakehouse.config import VectordConfig

DEFAULTS = VectordConfig()


def dataset(n: int, dim: int) -> np.ndarray:
    """`n` float32 unit vectors around 1,000 random centres."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(1000, dim)).astype(np.float32)
    data = centres[rng.integers(0, 1000, n)] + 0.3 * rng.normal(size=(n, dim)).astype(np.float32)
    return (data / np.linalg.norm(data, axis=1, keepdims=True)).astype(np.float32)


def timed(fn: Callable[[], Any]) -> float:
    """Seconds `fn` took."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def usearch_adds(data: np.ndarray, batch: int) -> dict[str, float]:
    """usearch's own add, with the server's settings: in request-sized batches, then all at once."""
    from usearch.index import Index

    def fresh() -> Any:
        return Index(
            ndim=data.shape[1],
            metric="cos",
            dtype="f32",
            connectivity=DEFAULTS.connectivity,
            expansion_add=DEFAULTS.expansion_add,
        )

    batched = fresh()

    def in_batches() -> None:
        for start in range(0, len(data), batch):
            batched.add(np.arange(start, min(start + batch, len(data))), data[start : start + batch])

    whole = fresh()
    return {
        f"usearch Index.add, batches of {batch}": len(data) / timed(in_batches),
        "usearch Index.add, one call": len(data) / timed(lambda: whole.add(np.arange(len(data)), data)),
    }


def hnswlib_adds(data: np.ndarray, batch: int) -> dict[str, float]:
    """hnswlib's own add_items with the same M and ef_construction, in request-sized batches."""
    try:
        import hnswlib
    except ImportError:
        return {}
    index = hnswlib.Index(space="cosine", dim=data.shape[1])
    index.init_index(max_elements=len(data), M=DEFAULTS.connectivity, ef_construction=DEFAULTS.expansion_add)

    def in_batches() -> None:
        for start in range(0, len(data), batch):
            index.add_items(data[start : start + batch], np.arange(start, min(start + batch, len(data))))

    return {f"hnswlib add_items, batches of {batch}": len(data) / timed(in_batches)}


def json_body(ids: list[str], rows: np.ndarray) -> dict[str, Any]:
    """The request as JSON float lists."""
    return {"json": {"items": [{"id": i, "vector": v} for i, v in zip(ids, rows.tolist(), strict=True)]}}


def base64_body(ids: list[str], rows: np.ndarray) -> dict[str, Any]:
    """The request as JSON with base64 float32 vectors."""
    encoded = [base64.b64encode(row.astype("<f4").tobytes()).decode() for row in rows]
    return {"json": {"items": [{"id": i, "vector": v} for i, v in zip(ids, encoded, strict=True)]}}


def arrow_body(ids: list[str], rows: np.ndarray) -> dict[str, Any]:
    """The request as one Arrow IPC stream (what `Client.add_vectors` sends)."""
    return {"content": arrow_stream(ids, rows), "headers": {"Content-Type": ARROW_STREAM}}


FORMATS: dict[str, Callable[[list[str], np.ndarray], dict[str, Any]]] = {
    "JSON lists": json_body,
    "base64 float32": base64_body,
    "Arrow stream": arrow_body,
}


def http_adds(data: np.ndarray, batch: int, root: Path, engine: str | None) -> dict[str, float]:
    """Vectors/s adding `data` over loopback HTTP in each wire format, one index per format."""
    vectord: dict[str, Any] = {"max_batch": max(batch, DEFAULTS.max_batch)}
    if engine is not None:
        vectord["engine"] = engine
    sections = {
        "storage": {"root": str(root / "data")},
        "vectord": vectord,
        "http": {"max_json_bytes": 256 * 1024 * 1024},  # JSON lists of 1,000 x 384 floats pass 16 MiB
    }
    proc = LakehouseProcess(write_config(root / "lakehouse.toml", sections)).start()
    out: dict[str, float] = {}
    try:
        with httpx.Client(base_url=proc.url, timeout=600.0) as c:
            for n, (label, encode) in enumerate(FORMATS.items()):
                name = f"adds_{n}"
                c.post("/v1/vectors/index", json={"name": name, "dim": data.shape[1]}).raise_for_status()
                encoding = 0.0
                started = time.perf_counter()
                for start in range(0, len(data), batch):
                    rows = data[start : start + batch]
                    ids = [str(start + i) for i in range(len(rows))]
                    began = time.perf_counter()
                    request = c.build_request("POST", f"/v1/vectors/index/{name}/add", **encode(ids, rows))
                    encoding += time.perf_counter() - began
                    c.send(request).raise_for_status()
                elapsed = time.perf_counter() - started
                assert c.get(f"/v1/vectors/index/{name}").json()["count"] == len(data)
                out[f"HTTP, {label}"] = len(data) / elapsed
                print(f"  {label}: {len(data) / elapsed:,.0f} vectors/s ({encoding / elapsed:.0%} encoding)")
    finally:
        proc.kill9()
    return out


def main() -> None:
    """Run every add and print the rates and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--engine", choices=["usearch", "hnswlib"], default=None)
    args = parser.parse_args()
    data = dataset(args.n, args.dim)
    engine = args.engine or getattr(DEFAULTS, "engine", "usearch")
    print(
        f"{args.n:,} x {args.dim}-d vectors, batches of {args.batch}, connectivity {DEFAULTS.connectivity}, "
        f"expansion_add {DEFAULTS.expansion_add}; the server's engine: {engine}"
    )
    rates = usearch_adds(data, args.batch)
    rates.update(hnswlib_adds(data, args.batch))
    with tempfile.TemporaryDirectory(prefix="bench-vector-adds-") as tmp:
        rates.update(http_adds(data, args.batch, Path(tmp), args.engine))
    width = max(len(label) for label in rates)
    for label, value in rates.items():
        print(f"{label:<{width}}  {value:>10,.0f} vectors/s")
    usearch_batched = rates[f"usearch Index.add, batches of {args.batch}"]
    own_label = {"usearch": "usearch Index.add", "hnswlib": "hnswlib add_items"}[engine]
    own = rates.get(f"{own_label}, batches of {args.batch}", usearch_batched)
    for label in FORMATS:
        http = rates[f"HTTP, {label}"]
        print(
            f"HTTP {label}: {http / usearch_batched:.2f}x usearch's batched add, "
            f"{http / rates['usearch Index.add, one call']:.2f}x its one-call add, "
            f"{http / own:.2f}x the server engine's ({engine}) batched add"
        )


if __name__ == "__main__":
    main()
