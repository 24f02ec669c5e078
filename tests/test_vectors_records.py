"""Log records and their replay: both layouts, damage caught, old logs replayed, pending chunks exact."""

from __future__ import annotations

import struct
import zlib
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lakehouse.config import Settings
from lakehouse.vectors import NewItem
from lakehouse.vectors.index import VectorIndex
from lakehouse.vectors.records import Batch, CorruptRecord, decode, encode, encode_v1
from tests.fakes.ollama import FakeOllama, run_fake_ollama
from tests.test_vectors import Opened, clustered
from tests.test_vectors_recovery import spec

LAYOUTS = {"LHV2": encode, "LHV1": encode_v1}


@pytest.fixture(scope="module")
def ollama() -> Iterator[FakeOllama]:
    """A fake Ollama the services' embedder points at (these tests send vectors)."""
    with run_fake_ollama({"nomic-embed-text": 16}) as fake:
        yield fake


@pytest.fixture
async def local(tmp_path: Path, ollama: FakeOllama) -> AsyncIterator[Opened]:
    """Store and embedder over a local folder, opened as every restart of a process would."""
    settings = Settings.model_validate(
        {"storage": {"root": str(tmp_path / "data")}, "embedd": {"ollama_url": ollama.url}}
    )
    handle = Opened(settings)
    yield handle
    await handle.embedder.close()
    await handle.store.close()


def kinds_of_batch() -> list[Batch]:
    """One batch of each shape a log holds."""
    vectors = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    return [
        Batch("add", ["a", "é", "c\n\x00"], [4, 5, 6], vectors, [{}, {}, {}], [None] * 3),
        Batch(
            "add",
            ["x", "y", "z"],
            [9, 2, 30],  # not one rising run
            vectors,
            [{"n": 1, "tags": ["p", "q"]}, {}, {"nested": {"k": None}}],
            ["some text", None, "ünïcode"],
            ["d1", None, "d3"],
        ),
        Batch("delete", ["a", "x"], []),
        Batch("synced", [], [], version=7),
    ]


def same(a: Batch, b: Batch) -> bool:
    """Whether two batches make the same change (absent digests and all-null digests are alike)."""
    digests = (a.digests or [None] * len(a.ids), b.digests or [None] * len(b.ids))
    return (
        (a.op, a.ids, a.keys, a.metadata, a.texts, a.version)
        == (b.op, b.ids, b.keys, b.metadata, b.texts, b.version)
        and digests[0] == digests[1]
        and a.vectors.shape == b.vectors.shape
        and np.array_equal(a.vectors, b.vectors)
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_round_trips_every_kind_of_batch(layout: str) -> None:
    for batch in kinds_of_batch():
        data = LAYOUTS[layout](batch)
        assert data[:4] == layout.encode()
        back = decode(data)
        assert same(back, batch)
        assert back.vectors.dtype == np.float32 and back.vectors.flags.aligned


def test_new_records_are_the_compact_layout_with_vectors_read_in_place() -> None:
    batch = Batch(
        "add",
        [str(i) for i in range(1000)],
        list(range(50, 1050)),
        clustered(1000, 8),
        [{}] * 1000,
        [None] * 1000,
    )
    data = encode(batch)
    assert data[:4] == b"LHV2" and len(data) < len(encode_v1(batch))
    back = decode(data)
    assert np.shares_memory(np.frombuffer(data, dtype=np.uint8), back.vectors.view(np.uint8))
    assert back.keys == batch.keys and back.metadata == [{}] * 1000 and back.texts == [None] * 1000


@settings(max_examples=200, deadline=None)
@given(
    layout=st.sampled_from(sorted(LAYOUTS)), which=st.integers(0, 3), at=st.floats(0, 1), cut=st.booleans()
)
def test_any_damaged_or_torn_record_is_refused(layout: str, which: int, at: float, cut: bool) -> None:
    data = LAYOUTS[layout](kinds_of_batch()[which])
    position = min(int(at * len(data)), len(data) - 1)
    flipped = data[:position] + bytes([data[position] ^ 0x20]) + data[position + 1 :]
    damaged = data[:position] if cut else flipped
    with pytest.raises(CorruptRecord):
        decode(damaged)


def test_a_record_whose_parts_disagree_is_refused_not_replayed() -> None:
    # Checksummed but inconsistent (no writer makes one): replay must set it aside, not fail to load.
    header = b'{"op":"add","shape":[2,1],"ids":["a"],"key_start":0,"version":null}'
    vectors = np.zeros(2, dtype="<f4").tobytes()
    frame = struct.pack("<4sIQI", b"LHV2", len(header), len(vectors), zlib.crc32(vectors, zlib.crc32(header)))
    with pytest.raises(CorruptRecord):
        decode(frame + header + vectors)


async def test_a_log_of_first_layout_records_replays_and_goes_on_in_the_new_one(local: Opened) -> None:
    svc = await local.service()
    await svc.create("old", 8)
    files = svc._live["old"].files
    data = clustered(6000, 8, seed=3)
    # As a deployment from before LHV2 left it: adds (small and large records), an upsert, a delete.
    old_log = [
        Batch(
            "add",
            [f"v{n}" for n in range(start, end)],
            list(range(start, end)),
            data[start:end],
            [{"n": n} for n in range(start, end)],
            [f"text {n}" if n % 2 else None for n in range(start, end)],
        )
        for start, end in ((0, 100), (100, 3000))
    ]
    old_log.append(
        Batch(
            "add",
            ["v5", "v6"],
            [3000, 3001],
            -data[[5, 6]],
            [{"n": 5, "moved": True}, {"n": 6}],
            [None, None],
        )
    )
    old_log.append(Batch("delete", ["v7"], []))
    for seq, batch in enumerate(old_log, 1):
        await local.store.put_bytes(files.wal_key(seq), encode_v1(batch), if_absent=True)
    again = await local.service()
    await again.add("old", [NewItem(f"v{n}", data[n].tolist(), None, {"n": n}) for n in range(3000, 6000)])
    assert (await local.store.get_bytes(files.wal_key(5)))[:4] == b"LHV2"
    restarted = await local.service()
    assert restarted.info("old")["count"] == 5999
    for n, vector, metadata in [
        (1, data[1], {"n": 1}),
        (5, -data[5], {"n": 5, "moved": True}),
        (2000, data[2000], {"n": 2000}),
        (4500, data[4500], {"n": 4500}),
    ]:
        (hits,) = await restarted.search("old", [vector.tolist()], k=1, where={"n": n})
        assert [(h.id, h.metadata) for h in hits] == [(f"v{n}", metadata)]
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)
    assert await restarted.search("old", [data[7].tolist()], k=1, where={"n": 7}) == [[]]
    hits = await restarted.search("old", text="text 101", k=1, mode="keyword")
    assert hits[0][0].id == "v101"
    await restarted.close()


async def test_a_damaged_record_is_set_aside_with_all_after_it(local: Opened) -> None:
    svc = await local.service()
    await svc.create("d", 2)
    for n in range(5):
        await svc.add("d", [NewItem(f"v{n}", [1.0, float(n)], None, {"n": n})])
    files = svc._live["d"].files
    whole = bytearray(await local.store.get_bytes(files.wal_key(3)))
    whole[-1] ^= 1  # a flipped bit in its vectors
    await local.store.put_bytes(files.wal_key(3), bytes(whole))
    again = await local.service()
    assert again.info("d")["count"] == 2
    objects, _ = await local.store.list(files.base + "wal/")
    assert sorted(obj.key for obj in objects) == [files.wal_key(1), files.wal_key(2)]
    await again.add("d", [NewItem("later", [0.0, 1.0])])  # the log goes on where it was cut
    restarted = await local.service()
    assert restarted.info("d")["count"] == 3
    await restarted.close()


@pytest.mark.parametrize("engine", ["faiss", "hnswlib", "usearch"])
def test_pending_chunks_of_any_size_answer_exactly(engine: str) -> None:
    dim, sizes = 8, [5000, 1, 3, 4200, 10, 2000, 2500, 7]
    data = clustered(sum(sizes), dim, seed=9)
    index, start = VectorIndex.empty(spec(engine, dim=dim)), 0
    for size in sizes:
        ids = [f"v{n}" for n in range(start, start + size)]
        index.apply(
            Batch(
                "add",
                ids,
                list(range(start, start + size)),
                data[start : start + size],
                [{}] * size,
                [None] * size,
            ),
            defer=True,
        )
        start += size
    live = {f"v{n}": data[n] for n in range(start)}
    moved = [f"v{n}" for n in range(0, start, 97)]  # upserts and deletes reaching into every chunk
    index.apply(
        Batch(
            "add",
            moved,
            list(range(start, start + len(moved))),
            -data[0:start:97],
            [{}] * len(moved),
            [None] * len(moved),
        ),
        defer=True,
    )
    live.update({i: -data[int(i[1:])] for i in moved})
    gone = [f"v{n}" for n in range(5, start, 89) if f"v{n}" not in moved]
    index.apply(Batch("delete", gone, []))
    for i in gone:
        del live[i]
    queries = clustered(40, dim, seed=10)

    def agrees() -> None:
        ids = list(live)
        matrix = np.stack([live[i] for i in ids])
        truth = np.argsort(-(queries @ matrix.T), axis=1, kind="stable")[:, :10]
        found = index.search(queries, 10)
        assert [[h.id for h in hits] for hits in found] == [[ids[j] for j in row] for row in truth]
        sample = ids[::301]
        np.testing.assert_allclose(index.vectors_of(sample), np.stack([live[i] for i in sample]), atol=1e-6)

    assert index.pending == index.count == len(live)
    agrees()
    left = index.link_pending(3000)  # a slice spanning chunks
    assert left == len(live) - 3000
    index.apply(Batch("delete", ["v100", "v4999"], []))  # one linked, one pending
    del live["v100"], live["v4999"]
    np.testing.assert_allclose(
        index.vectors_of(["v6000", "v1"]), np.stack([live["v6000"], live["v1"]]), atol=1e-6
    )
    while index.link_pending(3000):
        pass
    assert index.pending == 0 and index.count == len(live)


def test_searches_racing_to_be_first_after_a_replay_all_see_every_vector() -> None:
    dim, n = 8, 6000
    data = clustered(n, dim, seed=11)
    queries, expected = data[[10, 2000, n - 1]], ["v10", "v2000", f"v{n - 1}"]
    for _ in range(5):
        index = VectorIndex.empty(spec("hnswlib", dim=dim))
        for start in range(0, n, 500):
            ids = [f"v{i}" for i in range(start, start + 500)]
            keys = list(range(start, start + 500))
            index.apply(Batch("add", ids, keys, data[start : start + 500], [{}] * 500, [None] * 500), True)
        index.apply(Batch("delete", ["v3"], []))
        with ThreadPoolExecutor(8) as pool:
            searches = [pool.submit(index.search, queries, 1) for _ in range(16)]
            found = [[hits[0].id for hits in search.result()] for search in searches]
        assert found == [expected] * 16
        assert index.link_pending(n) == 0 and index.count == n - 1


@pytest.mark.parametrize("engine", ["faiss", "hnswlib", "usearch"])
def test_an_engine_emptied_and_refilled_answers_with_every_item(engine: str) -> None:
    # HNSW walks can end short after many deletions (hnswlib raised, faiss padded
    # with -1): the graph's own vectors are then scanned exactly.
    dim = 8
    index = VectorIndex.empty(spec(engine, dim=dim))
    first = clustered(1000, dim, seed=31)
    ids = [f"v{i}" for i in range(1000)]
    index.apply(Batch("add", ids, list(range(1000)), first, [{}] * 1000, [None] * 1000))
    index.apply(Batch("delete", ids, []))
    again = clustered(5, dim, seed=32)
    index.apply(
        Batch("add", [f"n{i}" for i in range(5)], list(range(1000, 1005)), again, [{}] * 5, [None] * 5)
    )
    found = index.search(clustered(50, dim, seed=33), 5)
    assert all(sorted(h.id for h in hits) == [f"n{i}" for i in range(5)] for hits in found)
