"""Adding vectors over HTTP as JSON lists, base64 float32 and an Arrow stream, next to the engines' own add.

    .venv/bin/python bench/vector_adds.py [--n 100000] [--dim 384] [--batch 1000] [--engine usearch|hnswlib]

The same clustered unit vectors go, in batches of `--batch`, into one fresh
index per contender: usearch's `Index.add` and hnswlib's `add_items` in this
process with the server's settings ([vectord] connectivity and
expansion_add), and a real `lakehouse serve` process over loopback HTTP once
per wire format, one request at a time, each timed from the client's
encoding to the server's acknowledgement (durably logged and in the graph).
The contenders take turns batch by batch, so a machine shared with other
work slows them alike and the ratios hold even when the rates wander.
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
# Adds one batch: (its first id, its rows) -> None.
Adder = Callable[[int, np.ndarray], None]


def dataset(n: int, dim: int) -> np.ndarray:
    """`n` float32 unit vectors around 1,000 random centres."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(1000, dim)).astype(np.float32)
    data = centres[rng.integers(0, 1000, n)] + 0.3 * rng.normal(size=(n, dim)).astype(np.float32)
    return (data / np.linalg.norm(data, axis=1, keepdims=True)).astype(np.float32)


def usearch_adder(n: int, dim: int) -> Adder:
    """usearch's own `Index.add`, with the server's settings."""
    from usearch.index import Index

    index = Index(
        ndim=dim,
        metric="cos",
        dtype="f32",
        connectivity=DEFAULTS.connectivity,
        expansion_add=DEFAULTS.expansion_add,
    )
    return lambda start, rows: index.add(np.arange(start, start + len(rows)), rows)


def hnswlib_adder(n: int, dim: int) -> Adder | None:
    """hnswlib's own `add_items` with the same M and ef_construction (None without hnswlib)."""
    try:
        import hnswlib
    except ImportError:
        return None
    index = hnswlib.Index(space="cosine", dim=dim)
    index.init_index(max_elements=n, M=DEFAULTS.connectivity, ef_construction=DEFAULTS.expansion_add)
    return lambda start, rows: index.add_items(rows, np.arange(start, start + len(rows)))


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


class HttpAdder:
    """Adds batches to one index of a running lakehouse in one wire format, timing the encoding apart."""

    def __init__(self, client: httpx.Client, name: str, dim: int, encode: Callable[..., dict[str, Any]]):
        self.client, self.name, self.encode = client, name, encode
        self.encoding = 0.0
        client.post("/v1/vectors/index", json={"name": name, "dim": dim}).raise_for_status()

    def __call__(self, start: int, rows: np.ndarray) -> None:
        began = time.perf_counter()
        ids = [str(start + i) for i in range(len(rows))]
        request = self.client.build_request(
            "POST", f"/v1/vectors/index/{self.name}/add", **self.encode(ids, rows)
        )
        self.encoding += time.perf_counter() - began
        self.client.send(request).raise_for_status()


def run(data: np.ndarray, batch: int, adders: dict[str, Adder]) -> dict[str, float]:
    """Seconds each adder spent on all of `data`, the adders taking turns batch by batch."""
    spent = dict.fromkeys(adders, 0.0)
    for start in range(0, len(data), batch):
        rows = data[start : start + batch]
        for label, add in adders.items():
            began = time.perf_counter()
            add(start, rows)
            spent[label] += time.perf_counter() - began
    return spent


def main() -> None:
    """Run every add and print the rates and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--engine", choices=["usearch", "hnswlib"], default=None)
    args = parser.parse_args()
    n, dim, batch = args.n, args.dim, args.batch
    data = dataset(n, dim)
    engine = args.engine or getattr(DEFAULTS, "engine", "usearch")
    print(
        f"{n:,} x {dim}-d vectors, batches of {batch}, connectivity {DEFAULTS.connectivity}, "
        f"expansion_add {DEFAULTS.expansion_add}; the server's engine: {engine}"
    )
    adders: dict[str, Adder] = {"usearch Index.add (in-process)": usearch_adder(n, dim)}
    hnsw = hnswlib_adder(n, dim)
    if hnsw is not None:
        adders["hnswlib add_items (in-process)"] = hnsw
    vectord: dict[str, Any] = {"max_batch": max(batch, DEFAULTS.max_batch)}
    if args.engine is not None:
        vectord["engine"] = args.engine
    with tempfile.TemporaryDirectory(prefix="bench-vector-adds-") as tmp:
        sections = {
            "storage": {"root": str(Path(tmp) / "data")},
            "vectord": vectord,
            "http": {"max_json_bytes": 256 * 1024 * 1024},  # JSON lists of 1,000 x 384 floats pass 16 MiB
        }
        proc = LakehouseProcess(write_config(Path(tmp) / "lakehouse.toml", sections)).start()
        try:
            with httpx.Client(base_url=proc.url, timeout=600.0) as client:
                http = {
                    f"HTTP, {label}": HttpAdder(client, f"adds_{k}", dim, encode)
                    for k, (label, encode) in enumerate(FORMATS.items())
                }
                spent = run(data, batch, {**adders, **http})
                for adder in http.values():
                    assert client.get(f"/v1/vectors/index/{adder.name}").json()["count"] == n
        finally:
            proc.kill9()
    rates = {label: n / seconds for label, seconds in spent.items()}
    width = max(len(label) for label in rates)
    for label, value in rates.items():
        note = f"  ({http[label].encoding / spent[label]:.0%} of it encoding)" if label in http else ""
        print(f"{label:<{width}}  {value:>9,.0f} vectors/s{note}")
    own = rates.get(f"{engine} {'Index.add' if engine == 'usearch' else 'add_items'} (in-process)")
    for label in FORMATS:
        line = (
            f"HTTP {label}: {rates[f'HTTP, {label}'] / rates['usearch Index.add (in-process)']:.2f}x usearch"
        )
        if engine != "usearch" and own is not None:
            line += f", {rates[f'HTTP, {label}'] / own:.2f}x {engine} (the server's engine)"
        print(line)


if __name__ == "__main__":
    main()
