"""Vector recovery in real processes: kill -9 while replayed vectors link or a snapshot starts; torn logs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import StartLakehouse
from tests.e2e.test_vectors_loading_http import vectors

pytestmark = pytest.mark.e2e

DIM = 32
# Small vectors keep linking tens of thousands to seconds; a deep search keeps the graph near exact.
GRAPH = {"expansion_search": 256}


def add(c: httpx.Client, name: str, data: np.ndarray, start: int, stop: int) -> None:
    """Add items v<start>..v<stop-1>, acknowledged when this returns."""
    items = [{"id": f"v{n}", "vector": data[n].tolist(), "metadata": {"n": n}} for n in range(start, stop)]
    answer = c.post(f"/v1/vectors/index/{name}/add", json={"items": items})
    assert answer.status_code == 200, answer.text


def ready(c: httpx.Client, name: str, timeout: float = 90.0) -> dict[str, Any]:
    """The index's info once it has loaded (searchable)."""
    deadline = time.monotonic() + timeout
    while True:
        info: dict[str, Any] = c.get(f"/v1/vectors/index/{name}").json()
        if info["state"] == "ready":
            return info
        assert time.monotonic() < deadline, f"still loading: {info}"
        time.sleep(0.05)


def assert_holds(c: httpx.Client, name: str, data: np.ndarray, present: range, gone: set[int]) -> None:
    """Every acknowledged item is found by its own vector, alone under its filter; deleted ones are not."""
    for n in [*range(present.start, present.stop, max(1, len(present) // 40)), present.stop - 1, *gone]:
        body = {"vector": data[n].tolist(), "k": 1, "filter": {"n": n}}
        hits = c.post(f"/v1/vectors/index/{name}/search", json=body).json()["hits"]
        assert [h["id"] for h in hits] == ([] if n in gone else [f"v{n}"]), n
    for n in (present.start, present.stop - 1):
        if n not in gone:
            hits = c.post(f"/v1/vectors/index/{name}/search", json={"vector": data[n].tolist(), "k": 3})
            assert f"v{n}" in [h["id"] for h in hits.json()["hits"]]


def objects_of(data: Path, name: str, part: str) -> list[Path]:
    """The local files of an index's `wal` or `snap` folder, under the storage root `data`."""
    folder = data / "objects" / "_lakehouse" / "vectors" / name
    return sorted(p for p in folder.glob(f"*/{part}/*") if p.is_file())


def test_kill_9_while_replayed_vectors_link_loses_nothing(
    start_lakehouse: StartLakehouse, tmp_path: Path
) -> None:
    vectord = {**GRAPH, "snapshot_every": 10**9, "snapshot_interval_secs": 10**6, "max_batch": 5000}
    proc = start_lakehouse(config={"vectord": vectord})
    items = 30_000
    data = vectors(items, DIM, seed=3)
    with proc.client() as c:
        assert c.post("/v1/vectors/index", json={"name": "log", "dim": DIM}).status_code == 201
        for start in range(0, items, 5000):
            add(c, "log", data, start, start + 5000)
        assert c.delete("/v1/vectors/index/log/items/v9").status_code == 204
    proc.kill9()
    proc.start()
    with proc.client(timeout=30.0) as c:
        info = ready(c, "log")
        assert info["count"] == items - 1
        linking = info.get("unindexed", 0)
    proc.kill9()  # while the replayed vectors are linked into the graph: nothing may be lost
    proc.start()
    with proc.client(timeout=30.0) as c:
        assert ready(c, "log")["count"] == items - 1
        # Searchable at once, while the replayed vectors are linked in the background.
        assert_holds(c, "log", data, range(items), {9})
        add(c, "log", data, 10, 20)  # upserts of replayed items, maybe still unlinked
        deadline = time.monotonic() + 120
        data_dir = tmp_path / "data"
        while c.get("/v1/vectors/index/log").json().get("unindexed") or not objects_of(
            data_dir, "log", "snap"
        ):
            assert time.monotonic() < deadline, "replayed vectors never linked and snapshotted"
            time.sleep(0.2)
    proc.kill9()
    proc.start()
    with proc.client(timeout=30.0) as c:
        info = ready(c, "log")
        assert info["count"] == items - 1  # the ten upserts after the snapshot replay again
        assert_holds(c, "log", data, range(items), {9})
    print(f"{linking} vectors were not yet in the graph at the first kill")


def test_kill_9_as_background_snapshots_start_loses_nothing(
    start_lakehouse: StartLakehouse, tmp_path: Path
) -> None:
    vectord = {**GRAPH, "snapshot_every": 4000, "snapshot_interval_secs": 0.3}
    proc = start_lakehouse(config={"vectord": vectord})
    data = vectors(16_000, DIM, seed=4)
    acknowledged = 0
    with proc.client() as c:
        assert c.post("/v1/vectors/index", json={"name": "snap", "dim": DIM}).status_code == 201
    for _ in range(2):
        with proc.client(timeout=30.0) as c:
            assert ready(c, "snap")["count"] == acknowledged
            # Each add that crosses snapshot_every starts a snapshot; the kill follows at once.
            for start in range(acknowledged, acknowledged + 8000, 2000):
                add(c, "snap", data, start, start + 2000)
            acknowledged += 8000
        proc.kill9()
        proc.start()
        with proc.client(timeout=30.0) as c:
            assert ready(c, "snap")["count"] == acknowledged
            assert_holds(c, "snap", data, range(acknowledged), set())
    assert objects_of(tmp_path / "data", "snap", "snap"), "no snapshot was ever completed"


def test_a_torn_log_tail_is_set_aside_and_the_log_goes_on(
    start_lakehouse: StartLakehouse, tmp_path: Path
) -> None:
    vectord = {**GRAPH, "snapshot_every": 10**9, "snapshot_interval_secs": 10**6}
    proc = start_lakehouse(config={"vectord": vectord})
    data = vectors(3000, DIM, seed=5)
    with proc.client() as c:
        assert c.post("/v1/vectors/index", json={"name": "torn", "dim": DIM}).status_code == 201
        for start in range(0, 2000, 500):
            add(c, "torn", data, start, start + 500)
    proc.kill9()
    # A record that never finished: the next sequence number, cut off half-way.
    last = objects_of(tmp_path / "data", "torn", "wal")[-1]
    whole = last.read_bytes()
    (last.parent / str(int(last.name) + 1).zfill(len(last.name))).write_bytes(whole[: len(whole) // 2])
    proc.start()
    with proc.client(timeout=30.0) as c:
        assert ready(c, "torn")["count"] == 2000
        assert_holds(c, "torn", data, range(2000), set())
        add(c, "torn", data, 2000, 3000)  # written after the torn record, under its number
    proc.kill9()
    proc.start()
    with proc.client(timeout=30.0) as c:
        assert ready(c, "torn")["count"] == 3000
        assert_holds(c, "torn", data, range(3000), set())
