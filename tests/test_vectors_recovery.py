"""Recovery that answers at once (replayed vectors searchable before linking), engines, snapshots."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lakehouse.config import Settings
from lakehouse.providers.embeddings import Embedder
from lakehouse.storage import VECTORS_PREFIX, ObjectStore, open_store
from lakehouse.vectors import VectorService
from lakehouse.vectors.filters import parse_filter
from lakehouse.vectors.index import IndexSpec, VectorIndex
from lakehouse.vectors.records import Batch
from tests.fakes.ollama import FakeOllama, run_fake_ollama
from tests.test_vectors import clustered, items


def spec(engine: str, metric: str = "cosine", dtype: str = "f32", dim: int = 16) -> IndexSpec:
    """An index definition on the given engine."""
    return IndexSpec(
        name="r",
        dim=dim,
        metric=metric,  # type: ignore[arg-type]
        model="m",
        dtype=dtype,  # type: ignore[arg-type]
        connectivity=16,
        expansion_add=128,
        expansion_search=128,
        generation="g",
        created_at="now",
        engine=engine,  # type: ignore[arg-type]
    )


def history(data: np.ndarray) -> list[Batch]:
    """A log: adds in batches, upserts of some ids with new vectors, deletes of others."""
    n = len(data)
    batches, key = [], 0
    for start in range(0, n, 100):
        ids = [f"v{i}" for i in range(start, min(start + 100, n))]
        batches.append(
            Batch(
                "add",
                ids,
                list(range(key, key + len(ids))),
                data[start : start + len(ids)],
                [{"n": i, "even": i % 2 == 0} for i in range(start, start + len(ids))],
                [None] * len(ids),
            )
        )
        key += len(ids)
    moved = [f"v{i}" for i in range(0, n, 7)]
    batches.append(
        Batch(
            "add",
            moved,
            list(range(key, key + len(moved))),
            -data[0:n:7],
            [{"n": int(i[1:]), "even": int(i[1:]) % 2 == 0, "moved": True} for i in moved],
            [None] * len(moved),
        )
    )
    batches.append(Batch("delete", [f"v{i}" for i in range(3, n, 11)], []))
    return batches


def replayed(index: VectorIndex, log: list[Batch], defer: bool) -> VectorIndex:
    """The index after applying the log, linking vectors at once or leaving them pending."""
    for batch in log:
        index.apply(batch, defer=defer)
    return index


def answers(index: VectorIndex) -> tuple[float, float, int]:
    """What a user sees: the share of a spread of live items found first by their own stored
    vector, alone and under a filter, and the count. Exact search finds them all; a graph
    may miss one (usearch can leave a node unreachable after removals)."""
    live = sorted(i for i in index.keys if i.startswith("v"))[::23]
    found = [hits[0].id for hits in index.search(index.vectors_of(live), 1)]
    even = [i for i in live if index.item(i).metadata.get("even")]  # type: ignore[union-attr]
    assert len(even) > 10
    where = parse_filter({"even": True})
    filtered = [index.search(index.vectors_of([i]), 1, where)[0][0].id for i in even]
    return (
        float(np.mean([a == b for a, b in zip(found, live, strict=True)])),
        float(np.mean([a == b for a, b in zip(filtered, even, strict=True)])),
        index.count,
    )


def by_graph(index: VectorIndex) -> bool:
    """Whether the index answers like a graph should: nearly every item found by its own vector."""
    found, filtered, _ = answers(index)
    return found >= 0.9 and filtered >= 0.9


@pytest.mark.parametrize(
    ("engine", "dtype"), [("faiss", "f32"), ("hnswlib", "f32"), ("usearch", "f32"), ("usearch", "f16")]
)
def test_pending_vectors_answer_exactly_like_linked_ones(engine: str, dtype: str) -> None:
    data = clustered(1500, 16, seed=4)
    log = history(data)
    linked = replayed(VectorIndex.empty(spec(engine, dtype=dtype)), log, defer=False)
    pending = replayed(VectorIndex.empty(spec(engine, dtype=dtype)), log, defer=True)
    assert pending.pending == pending.count and linked.pending == 0
    assert answers(pending) == (1.0, 1.0, linked.count)  # pending vectors are searched exactly
    assert by_graph(linked) and answers(linked)[2] == linked.count
    stored = ["v1", "v15", "v20"]  # f16 graphs keep rounded vectors
    np.testing.assert_allclose(pending.vectors_of(stored), linked.vectors_of(stored), atol=2e-3)
    # Linked a slice at a time, with changes arriving between slices, it still agrees.
    assert pending.link_pending(500) == pending.count - 500
    more = Batch(
        "add", ["v14", "new"], [10**6, 10**6 + 1], -data[[100, 101]], [{"n": -1}, {"n": -2}], [None] * 2
    )
    for index in (pending, linked):
        index.apply(more)
        index.apply(Batch("delete", ["v21"], []))
    while pending.link_pending(500):
        pass
    assert pending.pending == 0
    assert by_graph(pending) and by_graph(linked) and pending.count == linked.count


@pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
def test_every_engine_ranks_and_scores_alike(metric: str) -> None:
    data = clustered(800, 16, seed=5)
    query = data[[3, 400]] + 0.02
    found = {}
    for engine in ("faiss", "hnswlib", "usearch"):
        index = VectorIndex.empty(spec(engine, metric=metric))
        index.apply(
            Batch("add", [f"v{i}" for i in range(800)], list(range(800)), data, [{}] * 800, [None] * 800)
        )
        found[engine] = [[(h.id, h.score) for h in hits[:3]] for hits in index.search(query, 10)]
    for engine in ("faiss", "hnswlib"):
        for ours, theirs in zip(found[engine], found["usearch"], strict=True):
            assert [i for i, _ in ours] == [i for i, _ in theirs]
            assert [score for _, score in ours] == pytest.approx([score for _, score in theirs], abs=1e-4)


def test_a_snapshot_round_trips_each_engine(tmp_path: Path) -> None:
    data = clustered(600, 16, seed=6)
    for engine in ("faiss", "hnswlib", "usearch"):
        index = replayed(VectorIndex.empty(spec(engine)), history(data), defer=False)
        files, state = index.save(tmp_path / engine)
        loaded = VectorIndex.load(spec(engine), files, state)
        assert answers(loaded) == answers(index)  # the same graph, loaded
        # a loaded graph takes new items and reuses nothing it should not
        new = Batch("add", ["z"], [10**5], data[[9]] * -1, [{}], [None])
        loaded.apply(new)
        assert loaded.search(-data[[9]], 1)[0][0].id == "z"


def test_a_graph_with_pending_vectors_is_never_saved(tmp_path: Path) -> None:
    index = replayed(VectorIndex.empty(spec("hnswlib")), history(clustered(200, 16)), defer=True)
    with pytest.raises(RuntimeError):
        index.save(tmp_path / "g")


@pytest.fixture(scope="module")
def ollama() -> Iterator[FakeOllama]:
    """A fake Ollama the services' embedder points at (these tests send vectors)."""
    with run_fake_ollama({"nomic-embed-text": 16}) as fake:
        yield fake


def opened(tmp_path: Path, ollama: FakeOllama, **vectord: Any) -> tuple[Settings, ObjectStore, Embedder]:
    """Settings, store and embedder over one local folder, as every restart of a process would open."""
    settings = Settings.model_validate(
        {
            "storage": {"root": str(tmp_path / "data")},
            "vectord": vectord,
            "embedd": {"ollama_url": ollama.url},
        }
    )
    return settings, open_store(settings), Embedder(settings)


async def start(parts: tuple[Settings, ObjectStore, Embedder]) -> VectorService:
    """A service loaded over the store, as a restarted process."""
    svc = VectorService(*parts)
    await svc.load()
    await svc.wait_loaded()
    return svc


async def keys_under(store: ObjectStore, name: str, part: str) -> list[str]:
    """The index's stored keys in its `wal/` or `snap/` folder."""
    objects, _ = await store.list(VECTORS_PREFIX + name + "/")
    return [o.key for o in objects if f"/{part}/" in o.key]


async def until(check: Any, timeout: float = 60.0) -> None:
    """Poll a condition (a function giving a bool or an awaitable bool) until it holds."""
    deadline = time.monotonic() + timeout
    while not await _held(check()):
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def _held(value: Any) -> bool:
    return bool(await value) if asyncio.iscoroutine(value) else bool(value)


async def _none(keys: Any) -> bool:
    return not await keys


async def test_a_long_log_is_searchable_at_once_then_linked_and_snapshotted(
    tmp_path: Path, ollama: FakeOllama
) -> None:
    parts = opened(tmp_path, ollama, snapshot_every=10**6, snapshot_interval_secs=3600)
    svc = await start(parts)
    await svc.create("long", 16)
    data = clustered(6000, 16, seed=7)
    for start_at in range(0, 6000, 1000):
        await svc.add("long", items(data[start_at : start_at + 1000], start_at, kind="x"))
    await svc.delete_item("long", "v42")
    # A crash: no close, so only the log holds the items.
    again = await start(parts)
    assert again.info("long")["state"] == "ready" and again.info("long")["count"] == 5999
    for n in (0, 41, 43, 2500, 5999):
        (hits,) = await again.search("long", [data[n].tolist()], k=1)
        assert hits[0].id == f"v{n}"
    assert all(h.id != "v42" for h in (await again.search("long", [data[42].tolist()], k=5))[0])
    live = again._live["long"]
    await until(lambda: live.index.pending == 0 and "unindexed" not in again.info("long"))
    await until(lambda: _none(keys_under(parts[1], "long", "wal")))
    assert await keys_under(parts[1], "long", "snap")
    third = await start(parts)
    assert third.info("long")["count"] == 5999 and not third._live["long"].index.pending
    (hits,) = await third.search("long", [data[2500].tolist()], k=1)
    assert hits[0].id == "v2500"


async def test_a_change_is_snapshotted_within_the_interval(tmp_path: Path, ollama: FakeOllama) -> None:
    parts = opened(tmp_path, ollama, snapshot_every=10**6, snapshot_interval_secs=0.2)
    svc = await start(parts)
    await svc.create("timed", 16)
    await svc.add("timed", items(clustered(10, 16), kind="t"))
    await until(lambda: _none(keys_under(parts[1], "timed", "wal")))
    assert any(key.endswith(".faiss") for key in await keys_under(parts[1], "timed", "snap"))
    assert (await start(parts)).info("timed")["count"] == 10
    await svc.close()


async def test_an_index_keeps_the_engine_it_was_created_with(tmp_path: Path, ollama: FakeOllama) -> None:
    first = opened(tmp_path, ollama, engine="usearch")
    svc = await start(first)
    await svc.create("old", 16)
    await svc.create("small", 16, dtype="f16")
    data = clustered(50, 16, seed=8)
    for name in ("old", "small"):
        await svc.add(name, items(data, kind="o"))
    await svc.close()
    assert all(k.endswith((".usearch", ".json")) for k in await keys_under(first[1], "old", "snap"))
    later = await start(opened(tmp_path, ollama, engine="hnswlib"))
    await later.create("new", 16)
    await later.create("new16", 16, dtype="f16")
    assert [later._live[n].index.spec.engine for n in ("old", "small", "new", "new16")] == [
        "usearch",
        "usearch",
        "hnswlib",
        "usearch",
    ]
    (hits,) = await later.search("old", [data[7].tolist()], k=1)
    assert hits[0].id == "v7"
    await later.close()


async def test_a_compacted_graph_answers_meanwhile_and_is_linked_again_in_the_background(
    tmp_path: Path, ollama: FakeOllama
) -> None:
    parts = opened(tmp_path, ollama)
    svc = await start(parts)
    await svc.create("c", 16)
    data = clustered(1200, 16, seed=12)
    await svc.add("c", items(data))
    await svc.add("c", items(-data[:600]))  # upserts: 600 tombstones, 1,200 live
    live = svc._live["c"]
    engine = live.index.graph.engine
    assert (engine.size, engine.dead, live.index.pending) == (1800, 600, 0)  # type: ignore[attr-defined]
    # 600 more: the tombstones outnumber the 600 untouched, which go pending while the graph is rebuilt.
    await svc.add("c", items(-data[600:], start=600))
    (hits,) = await svc.search("c", [(-data[5]).tolist()], k=1)  # answered at once, exactly
    assert hits[0].id == "v5"
    await until(lambda: live.index.pending == 0)
    engine = live.index.graph.engine
    assert (engine.size, engine.dead, live.index.count) == (1200, 0, 1200)  # type: ignore[attr-defined]
    found = await svc.search("c", [(-data[5]).tolist(), (-data[900]).tolist()], k=1)
    assert [hits[0].id for hits in found] == ["v5", "v900"]
    await svc.close()
    again = await start(parts)  # the snapshot after relinking, and the log, give the same index
    assert again.info("c")["count"] == 1200
    (hits,) = await again.search("c", [(-data[7]).tolist()], k=1)
    assert hits[0].id == "v7"
    await again.close()


async def test_an_index_deleted_while_it_relinks_leaves_nothing_in_storage(
    tmp_path: Path, ollama: FakeOllama
) -> None:
    parts = opened(tmp_path, ollama)
    svc = await start(parts)
    await svc.create("gone", 16)
    data = clustered(20000, 16, seed=13)
    await svc.add("gone", items(data[:10000]))
    await svc.add("gone", items(data[10000:], start=10000))
    for start_at in (0, 5000, 10000, 15000):  # upserts: the last makes tombstones outnumber the live
        await svc.add("gone", items(-data[start_at : start_at + 5000], start=start_at))
    live = svc._live["gone"]
    assert live.index.pending and live.linking is not None
    await svc.delete("gone")
    await svc._lifecycle.wait_settled()
    await asyncio.sleep(0.2)
    objects, _ = await parts[1].list(VECTORS_PREFIX + "gone/")
    assert objects == []
    await svc.close()
