"""VectorService: indexes, upserts, filters, recall and crash recovery over real stores."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lakehouse.config import Settings
from lakehouse.errors import AlreadyExists, Busy, DimMismatch, InvalidName, InvalidRequest, NotFound
from lakehouse.providers.embeddings import Embedder
from lakehouse.storage import VECTORS_PREFIX, ObjectStore, open_store
from lakehouse.vectors import NewItem, VectorService
from lakehouse.vectors.records import Batch, CorruptRecord, decode, encode
from tests.fakes.ollama import FakeOllama, fake_vector, run_fake_ollama


def clustered(n: int, dim: int, clusters: int = 50, seed: int = 0) -> np.ndarray:
    """`n` unit vectors gathered around `clusters` random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    data = centres[rng.integers(0, clusters, n)] + 0.3 * rng.normal(size=(n, dim)).astype(np.float32)
    return (data / np.linalg.norm(data, axis=1, keepdims=True)).astype(np.float32)


def items(vectors: np.ndarray, start: int = 0, **meta: Any) -> list[NewItem]:
    """Items `v<start>`, `v<start+1>`, ... for the given vectors."""
    return [NewItem(f"v{start + i}", vec.tolist(), None, dict(meta)) for i, vec in enumerate(vectors)]


@pytest.fixture(scope="module")
def ollama() -> Iterator[FakeOllama]:
    """A fake Ollama with a 16-dimensional model."""
    with run_fake_ollama({"nomic-embed-text": 768, "tiny-embed": 16}) as fake:
        yield fake


@pytest.fixture(params=["local", "s3"])
def settings(request: pytest.FixtureRequest, tmp_path: Path, ollama: FakeOllama) -> Settings:
    """Settings over a fresh local folder or a fresh moto bucket."""
    sections: dict[str, Any] = {
        "storage": {"root": str(tmp_path / "data")},
        "vectord": {"snapshot_every": 100},
        "embedd": {"ollama_url": ollama.url},
    }
    if request.param == "s3":
        sections["storage"] = request.getfixturevalue("s3_storage")
    return Settings.model_validate(sections)


@pytest.fixture
def local_settings(tmp_path: Path, ollama: FakeOllama) -> Settings:
    """Settings over a local folder only, for tests of pure index behaviour."""
    return Settings.model_validate(
        {
            "storage": {"root": str(tmp_path / "data")},
            "vectord": {"snapshot_every": 100},
            "embedd": {"ollama_url": ollama.url},
        }
    )


class Opened:
    """A store and embedder that services are opened over, as a restarted process would."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: ObjectStore = open_store(settings)
        self.embedder = Embedder(settings)

    async def service(self) -> VectorService:
        """A freshly loaded service over the same store (a restart without shutdown)."""
        svc = VectorService(self.settings, self.store, self.embedder)
        await svc.load()
        await svc.wait_loaded()
        return svc


@pytest.fixture
async def opened(settings: Settings) -> AsyncIterator[Opened]:
    """Store and embedder over the parametrised backend."""
    handle = Opened(settings)
    yield handle
    await handle.embedder.close()
    await handle.store.close()


@pytest.fixture
async def local(local_settings: Settings) -> AsyncIterator[Opened]:
    """Store and embedder over a local folder."""
    handle = Opened(local_settings)
    yield handle
    await handle.embedder.close()
    await handle.store.close()


async def test_create_list_info_delete(local: Opened) -> None:
    svc = await local.service()
    info = await svc.create("docs", 8, "l2", model="tiny-embed")
    assert info == {**info, "name": "docs", "dim": 8, "metric": "l2", "count": 0, "model": "tiny-embed"}
    assert (await svc.create("other", 3))["model"] == "nomic-embed-text"
    assert [i["name"] for i in svc.indexes()] == ["docs", "other"]
    with pytest.raises(AlreadyExists):
        await svc.create("docs", 8)
    await svc.delete("docs")
    with pytest.raises(NotFound):
        svc.info("docs")
    with pytest.raises(NotFound):
        await svc.delete("docs")
    assert [i["name"] for i in (await local.service()).indexes()] == ["other"]


@pytest.mark.parametrize("name", ["", "Docs", "a/b", "../x", "1" * 64, "a b", "é", "abc\n", "abc\r\n"])
async def test_bad_names_are_refused(local: Opened, name: str) -> None:
    svc = await local.service()
    with pytest.raises(InvalidName):
        await svc.create(name, 4)


@pytest.mark.parametrize(
    ("dim", "metric", "dtype"),
    [(0, "cosine", None), (70000, "cosine", None), (4, "dot", None), (4, "l2", "f64")],
)
async def test_bad_definitions_are_refused(local: Opened, dim: int, metric: str, dtype: str | None) -> None:
    svc = await local.service()
    with pytest.raises(InvalidRequest):
        await svc.create("x", dim, metric, dtype=dtype)
    assert svc.indexes() == []


async def test_upsert_replaces_vector_and_metadata(local: Opened) -> None:
    svc = await local.service()
    await svc.create("u", 4)
    await svc.add("u", [NewItem("a", [1, 0, 0, 0], None, {"v": 1}), NewItem("b", [0, 1, 0, 0])])
    added, count = await svc.add("u", [NewItem("a", [0, 0, 1, 0], None, {"v": 2})])
    assert (added, count) == (1, 2)
    (hits,) = await svc.search("u", [[0, 0, 1, 0]], k=1)
    assert (hits[0].id, hits[0].metadata, round(hits[0].score, 5)) == ("a", {"v": 2}, 1.0)
    assert [h.id for h in (await svc.search("u", [[1, 0.5, 0, 0]], k=2))[0]] == ["b", "a"]
    # Repeated ids in one batch: the last one wins.
    added, count = await svc.add("u", [NewItem("c", [1, 1, 0, 0]), NewItem("c", [0, 0, 0, 1])])
    assert (added, count) == (1, 3)
    assert (await svc.search("u", [[0, 0, 0, 1]], k=1))[0][0].id == "c"


async def test_delete_item(local: Opened) -> None:
    svc = await local.service()
    await svc.create("d", 2)
    await svc.add("d", [NewItem("a", [1, 0]), NewItem("b", [0, 1])])
    await svc.delete_item("d", "a")
    assert svc.info("d")["count"] == 1
    assert [h.id for h in (await svc.search("d", [[1, 0]], k=5))[0]] == ["b"]
    with pytest.raises(NotFound):
        await svc.delete_item("d", "a")
    with pytest.raises(NotFound):
        await svc.delete_item("nope", "a")


async def test_dim_mismatch_adds_nothing_of_the_batch(local: Opened) -> None:
    svc = await local.service()
    await svc.create("m", 3)
    await svc.add("m", [NewItem("keep", [1, 0, 0])])
    with pytest.raises(DimMismatch) as err:
        await svc.add("m", [NewItem("a", [0, 1, 0]), NewItem("b", [0, 1]), NewItem("c", [0, 0, 1])])
    assert err.value.detail == {"id": "b", "expected": 3, "got": 2}
    assert svc.info("m")["count"] == 1
    with pytest.raises(DimMismatch):
        await svc.search("m", [[1, 0]])
    assert (await local.service()).info("m")["count"] == 1


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e39])
async def test_non_finite_values_are_refused(local: Opened, bad: float) -> None:
    svc = await local.service()
    await svc.create("n", 2)
    with pytest.raises(InvalidRequest, match="NaN or infinite"):
        await svc.add("n", [NewItem("ok", [1, 0]), NewItem("bad", [bad, 0])])
    with pytest.raises(InvalidRequest, match="NaN or infinite"):
        await svc.search("n", [[bad, 1]])
    assert svc.info("n")["count"] == 0


@pytest.mark.parametrize(
    "metadata", [{"rate": math.nan}, {"a": [1.0, math.inf]}, {"deep": {"x": [{"y": -math.inf}]}}]
)
async def test_metadata_json_cannot_carry_is_refused(local: Opened, metadata: dict[str, Any]) -> None:
    svc = await local.service()
    await svc.create("meta", 2)
    with pytest.raises(InvalidRequest, match="metadata holds NaN"):
        await svc.add(
            "meta", [NewItem("ok", [1, 0], None, {"rate": 1.5}), NewItem("bad", [0, 1], None, metadata)]
        )
    assert svc.info("meta")["count"] == 0


async def test_bad_batches_and_queries(local: Opened) -> None:
    svc = await local.service()
    await svc.create("b", 2)
    with pytest.raises(InvalidRequest):
        await svc.add("b", [])
    with pytest.raises(InvalidRequest, match="vector or a text"):
        await svc.add("b", [NewItem("x")])
    with pytest.raises(InvalidRequest, match="ids"):
        await svc.add("b", [NewItem("", [1, 0])])
    too_many = [NewItem(str(i), [1, 0]) for i in range(local.settings.vectord.max_batch + 1)]
    with pytest.raises(InvalidRequest, match="batch limit"):
        await svc.add("b", too_many)
    for k in (0, 1001):
        with pytest.raises(InvalidRequest, match="k must"):
            await svc.search("b", [[1, 0]], k=k)
    with pytest.raises(InvalidRequest):
        await svc.search("b")
    with pytest.raises(NotFound):
        await svc.add("zzz", [NewItem("a", [1, 0])])
    with pytest.raises(NotFound):
        await svc.search("zzz", [[1, 0]])
    assert await svc.search("b", [[1, 0]]) == [[]]


async def test_filter_returns_k_hits_even_when_matches_are_rare(local: Opened) -> None:
    svc = await local.service()
    await svc.create("f", 32)
    data = clustered(5000, 32, seed=3)
    batch = [
        NewItem(f"v{i}", vec.tolist(), None, {"team": "rare" if i % 700 == 0 else "common", "half": i % 2})
        for i, vec in enumerate(data)
    ]
    await svc.add("f", batch)
    rare = {f"v{i}" for i in range(0, 5000, 700)}  # 8 items
    query = data[1].tolist()
    (hits,) = await svc.search("f", [query], k=5, where={"team": "rare"})
    assert len(hits) == 5 and {h.id for h in hits} <= rare
    (hits,) = await svc.search("f", [query], k=20, where={"team": "rare"})
    assert {h.id for h in hits} == rare
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    # A broad filter walks the graph; still k hits, all matching, best first.
    (hits,) = await svc.search("f", [query], k=10, where={"half": 1})
    assert len(hits) == 10 and all(h.metadata["half"] == 1 for h in hits)
    assert hits[0].id == "v1"
    (hits,) = await svc.search("f", [query], k=10, where={"team": "rare", "half": 0})
    assert {h.id for h in hits} == {i for i in rare if int(i[1:]) % 2 == 0}
    assert await svc.search("f", [query], k=3, where={"team": "absent"}) == [[]]
    assert await svc.search("f", [query], k=3, where={"nofield": 1}) == [[]]


async def test_recall_at_10_against_brute_force(local: Opened) -> None:
    svc = await local.service()
    await svc.create("r", 64)
    data = clustered(10000, 64, clusters=100, seed=5)
    for start in range(0, 10000, 2500):
        await svc.add("r", items(data[start : start + 2500], start))
    rng = np.random.default_rng(9)
    queries = data[rng.integers(0, 10000, 200)] + 0.05 * rng.normal(size=(200, 64)).astype(np.float32)
    results = await svc.search("r", queries.tolist(), k=10)
    normed = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    truth = np.argsort(-(normed @ data.T), axis=1)[:, :10]
    recall = np.mean(
        [
            len({h.id for h in hits} & {f"v{j}" for j in row}) / 10
            for hits, row in zip(results, truth, strict=True)
        ]
    )
    assert recall >= 0.95


@pytest.mark.parametrize(
    ("metric", "dtype"),
    [("l2", "f32"), ("l2", "f16"), ("ip", "f32"), ("ip", "f16"), ("cosine", "f16"), ("cosine", "i8")],
)
async def test_metrics_and_dtypes_score_as_documented(local: Opened, metric: str, dtype: str) -> None:
    svc = await local.service()
    with pytest.raises(InvalidRequest, match="cosine"):
        await svc.create("i8", 3, "l2", dtype="i8")
    await svc.create("s", 3, metric, dtype=dtype)
    await svc.add("s", [NewItem("a", [0.6, 0.8, 0]), NewItem("b", [0, 0, 1])])
    (hits,) = await svc.search("s", [[0.6, 0.8, 0]], k=2)
    assert [h.id for h in hits] == ["a", "b"]
    if metric == "l2":
        assert hits[0].score == pytest.approx(0, abs=0.05)
        assert hits[1].score == pytest.approx(math.sqrt(2), abs=0.05)
    else:
        assert hits[0].score == pytest.approx(1, abs=0.05)
        assert hits[1].score == pytest.approx(0, abs=0.05)
    assert svc.info("s")["dtype"] == dtype


async def test_text_items_and_queries_use_the_index_model(local: Opened, ollama: FakeOllama) -> None:
    svc = await local.service()
    await svc.create("t", 16, model="tiny-embed")
    await svc.add("t", [NewItem("a", None, "forklift operator"), NewItem("b", None, "line cook")])
    (hits,) = await svc.search("t", text="forklift operator", k=1)
    assert (hits[0].id, hits[0].text) == ("a", "forklift operator")
    assert hits[0].score == pytest.approx(1, abs=1e-4)
    assert ollama.requests[-1]["model"] == "tiny-embed"
    # The default model gives 768 dimensions: the index's 16 do not fit.
    await svc.create("wrong", 16)
    with pytest.raises(DimMismatch):
        await svc.add("wrong", [NewItem("a", None, "hello")])
    assert svc.info("wrong")["count"] == 0
    assert fake_vector("x", 4)  # the fake is deterministic per text


async def test_concurrent_adds_and_searches(local: Opened) -> None:
    svc = await local.service()
    await svc.create("c", 16)
    data = clustered(2000, 16, seed=2)

    async def add(start: int) -> None:
        await svc.add("c", items(data[start : start + 100], start))

    async def search() -> None:
        await svc.search("c", data[:5].tolist(), k=3)

    await asyncio.gather(*(add(s) for s in range(0, 2000, 100)), *(search() for _ in range(30)))
    assert svc.info("c")["count"] == 2000
    (hits,) = await svc.search("c", [data[1234].tolist()], k=1)
    assert hits[0].id == "v1234"


async def assert_durable(
    svc: VectorService, name: str, expected: dict[int, tuple[np.ndarray, dict[str, Any]]], deleted: set[int]
) -> None:
    """Every expected item is there with its vector and metadata; every deleted one is gone.

    Each item is looked up alone (its own number as the filter: one candidate,
    searched exactly), so this checks durability, not approximate-search ordering.
    """
    for n, (vector, metadata) in expected.items():
        (hits,) = await svc.search(name, [vector.tolist()], k=1, where={"n": n})
        assert [(h.id, h.metadata) for h in hits] == [(f"v{n}", metadata)]
        assert hits[0].score == pytest.approx(1.0, abs=1e-3)
    dim = len(next(iter(expected.values()))[0])
    for n in deleted:
        assert await svc.search(name, [[1.0] * dim], k=1, where={"n": n}) == [[]]


async def test_every_acknowledged_change_survives_a_crash(opened: Opened) -> None:
    svc = await opened.service()
    await svc.create("k", 8)
    data = clustered(450, 8, seed=1)
    for start in range(0, 450, 50):  # snapshot_every=100: snapshots plus a log tail
        batch = [
            NewItem(f"v{n}", data[n].tolist(), None, {"tag": "x", "n": n}) for n in range(start, start + 50)
        ]
        await svc.add("k", batch)
    # Snapshots run in the background: settle them, so what follows is exactly a two-record log tail.
    live = svc._live["k"]
    if live.snapshotting is not None:
        await live.snapshotting
    await svc._lifecycle.snapshot(live)
    await svc.add("k", [NewItem("v3", (-data[3]).tolist(), None, {"tag": "moved", "n": 3})])
    await svc.delete_item("k", "v7")
    objects, _ = await opened.store.list(VECTORS_PREFIX + "k/")
    logs = [o.key for o in objects if "/wal/" in o.key]
    assert len(logs) == 2  # the snapshot pruned the log it covers; the tail is replayed below
    # No close(): the new service sees only what reached the store.
    again = await opened.service()
    assert again.info("k")["count"] == 449
    expected = {n: (data[n], {"tag": "x", "n": n}) for n in range(450) if n != 7}
    expected[3] = (-data[3], {"tag": "moved", "n": 3})
    await assert_durable(again, "k", expected, deleted={7})


async def test_a_torn_log_tail_is_ignored(local: Opened) -> None:
    svc = await local.service()
    await svc.create("torn", 2)
    await svc.add("torn", [NewItem("a", [1, 0])])
    await svc.add("torn", [NewItem("b", [0, 1])])
    key = svc._live["torn"].files.wal_key(2)
    whole = await local.store.get_bytes(key)
    await local.store.put_bytes(key, whole[: len(whole) // 2])
    again = await local.service()
    assert again.info("torn")["count"] == 1
    await again.add("torn", [NewItem("c", [1, 1])])  # the log goes on after the torn record
    assert (await local.service()).info("torn")["count"] == 2


async def test_shutdown_snapshots_and_restart_loads_without_replay(local: Opened) -> None:
    svc = await local.service()
    await svc.create("s", 4)
    await svc.add("s", items(clustered(30, 4)))
    await svc.close()
    objects, _ = await local.store.list(VECTORS_PREFIX + "s/")
    assert not [o for o in objects if "/wal/" in o.key]
    assert (await local.service()).info("s")["count"] == 30


async def test_a_loading_index_is_busy_and_a_load_cut_short_changes_nothing(local: Opened) -> None:
    svc = await local.service()
    await svc.create("slow", 4)
    data = clustered(30, 4, seed=2)
    for start in range(0, 30, 10):
        await svc.add("slow", items(data[start : start + 10], start))
    # No close(): only the log holds the items. `load` returns before any index has loaded.
    loading = VectorService(local.settings, local.store, local.embedder)
    await loading.load()
    info = loading.info("slow")
    assert (info["name"], info["state"], info["progress"]["replayed"]) == ("slow", "loading", 0)
    with pytest.raises(Busy) as refused:
        await loading.search("slow", [[1, 0, 0, 0]])
    assert refused.value.status == 503 and refused.value.headers == {"Retry-After": "1"}
    for call in (
        loading.add("slow", items(data[:1])),
        loading.delete_item("slow", "v0"),
        loading.sync("slow"),
        loading.delete("slow"),
    ):
        with pytest.raises(Busy):
            await call
    with pytest.raises(AlreadyExists):
        await loading.create("slow", 4)
    await loading.close()  # cancels the load: nothing is snapshotted or pruned
    objects, _ = await local.store.list(VECTORS_PREFIX + "slow/")
    assert len([o for o in objects if "/wal/" in o.key]) == 3
    assert not [o for o in objects if "/snap/" in o.key]
    again = await local.service()
    assert again.info("slow") == {**again.info("slow"), "state": "ready", "count": 30}
    hits = await again.search("slow", [data[12].tolist()], k=1)
    assert hits[0][0].id == "v12"


async def test_a_recreated_index_starts_empty(opened: Opened) -> None:
    svc = await opened.service()
    await svc.create("again", 2)
    await svc.add("again", [NewItem("a", [1, 0])])
    await svc.delete("again")
    await svc.create("again", 2)
    assert (await opened.service()).info("again")["count"] == 0


def test_log_records_round_trip_and_detect_damage() -> None:
    batch = Batch(
        "add", ["a", "é"], [1, 2], np.array([[1, 2], [3, 4]], np.float32), [{"x": 1}, {}], ["t", None]
    )
    data = encode(batch)
    back = decode(data)
    assert (back.ids, back.keys, back.metadata, back.texts) == (
        batch.ids,
        batch.keys,
        batch.metadata,
        batch.texts,
    )
    assert np.array_equal(back.vectors, batch.vectors)
    for damaged in (data[:-1], data + b"x", data[:10], b"", data[:20] + bytes([data[20] ^ 1]) + data[21:]):
        with pytest.raises(CorruptRecord):
            decode(damaged)
