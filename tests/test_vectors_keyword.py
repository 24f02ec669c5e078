"""Keyword (BM25) and hybrid search: exact terms, filters, fusion order, durability."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lakehouse.config import Settings
from lakehouse.errors import InvalidRequest
from lakehouse.providers.embeddings import Embedder
from lakehouse.storage import ObjectStore, open_store
from lakehouse.vectors import NewItem, VectorService
from lakehouse.vectors.fusion import fuse
from lakehouse.vectors.index import Hit
from lakehouse.vectors.keyword import tokenize
from tests.fakes.ollama import FakeOllama, run_fake_ollama

WORDS = [
    "forklift",
    "warehouse",
    "driver",
    "welder",
    "nurse",
    "cashier",
    "electrician",
    "plumber",
    "night",
    "shift",
    "weekend",
]


@pytest.fixture(scope="module")
def ollama() -> Iterator[FakeOllama]:
    """A fake Ollama with a 16-dimensional model."""
    with run_fake_ollama({"tiny-embed": 16}) as fake:
        yield fake


class Opened:
    """A store and embedder that services are opened over, as a restarted process would."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: ObjectStore = open_store(settings)
        self.embedder = Embedder(settings)

    async def service(self) -> VectorService:
        """A freshly loaded service over the same store."""
        svc = VectorService(self.settings, self.store, self.embedder)
        await svc.load()
        await svc.wait_loaded()
        return svc


@pytest.fixture
async def opened(tmp_path: Path, ollama: FakeOllama) -> AsyncIterator[Opened]:
    """Store and embedder over a local folder."""
    settings = Settings.model_validate(
        {
            "storage": {"root": str(tmp_path / "data")},
            "vectord": {"snapshot_every": 50},
            "embedd": {"ollama_url": ollama.url, "default_model": "tiny-embed"},
        }
    )
    handle = Opened(settings)
    yield handle
    await handle.embedder.close()
    await handle.store.close()


def unit(seed: int, dim: int = 16) -> list[float]:
    """A random unit vector."""
    v = np.random.default_rng(seed).normal(size=dim)
    return [float(x) for x in v / np.linalg.norm(v)]


def planted(n: int = 400) -> tuple[list[NewItem], set[str], set[str]]:
    """Items with filler texts; some hold CDL-A, some OSHA-30, some only the look-alike CDL-B."""
    rng = random.Random(7)
    items, cdl_a, osha = [], set(), set()
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(12)]
        if i % 37 == 3:
            words.insert(rng.randrange(12), "CDL-A")
            cdl_a.add(f"c{i}")
        elif i % 23 == 5:
            words.insert(rng.randrange(12), "CDL-B")
        if i % 41 == 9:
            words.append("OSHA-30")
            osha.add(f"c{i}")
        items.append(NewItem(f"c{i}", unit(i), " ".join(words), {"rate": 15 + i % 20, "n": i}))
    return items, cdl_a, osha


def test_tokenizer_keeps_exact_terms_and_their_parts() -> None:
    tokens = tokenize("Holds a CDL-A licence, OSHA-30 card; knows node.js and C# (10+ yrs).")
    for term in ("cdl-a", "cdl", "osha-30", "osha", "30", "node.js", "c#", "10+"):
        assert term in tokens


async def test_exact_keywords_are_found_first(opened: Opened, ollama: FakeOllama) -> None:
    svc = await opened.service()
    await svc.create("people", 16, model="tiny-embed")
    items, cdl_a, osha = planted()
    before = len(ollama.requests)
    await svc.add("people", items)
    assert len(ollama.requests) == before  # items with vectors are not embedded; their texts are kept
    hits = (await svc.search("people", text="CDL-A", k=len(cdl_a), mode="keyword"))[0]
    assert {h.id for h in hits} == cdl_a
    assert all(h.ranks == {"keyword": n} for n, h in enumerate(hits, 1))
    hits = (await svc.search("people", text="osha-30", k=50, mode="keyword"))[0]
    assert {h.id for h in hits} == osha
    assert (await svc.search("people", text="nothing-like-this", mode="keyword"))[0] == []
    await svc.close()


async def test_keyword_search_applies_filters(opened: Opened) -> None:
    svc = await opened.service()
    await svc.create("people", 16, model="tiny-embed")
    items, cdl_a, _ = planted()
    await svc.add("people", items)
    cheap = {i.id for i in items if i.id in cdl_a and i.metadata is not None and i.metadata["rate"] < 25}
    hits = (await svc.search("people", text="CDL-A", k=100, where={"rate": {"$lt": 25}}, mode="keyword"))[0]
    # The whole term ranks its holders first; look-alikes (CDL-B, by the part "cdl") follow.
    assert {h.id for h in hits[: len(cheap)]} == cheap
    assert all(h.metadata["rate"] < 25 for h in hits)
    assert 0 < len(cheap) < len(cdl_a)
    await svc.close()


async def test_keyword_index_follows_changes_and_restarts(opened: Opened) -> None:
    svc = await opened.service()
    await svc.create("people", 16, model="tiny-embed")
    items, cdl_a, _ = planted(120)
    await svc.add("people", items)
    first = sorted(cdl_a)[0]
    await svc.delete_item("people", first)
    await svc.add("people", [NewItem("new", text="Class A driver, CDL-A, hazmat", metadata={"rate": 30})])
    await svc.add("people", [NewItem(sorted(cdl_a)[1], unit(999), "retired welder", {"rate": 1})])
    expect = (cdl_a - {first, sorted(cdl_a)[1]}) | {"new"}
    hits = (await svc.search("people", text="CDL-A", k=len(expect), mode="keyword"))[0]
    assert {h.id for h in hits} == expect
    # A restart without shutdown (snapshot plus log) rebuilds the same keyword index.
    again = await opened.service()
    hits = (await again.search("people", text="CDL-A", k=len(expect), mode="keyword"))[0]
    assert {h.id for h in hits} == expect
    await again.close()
    await svc.close()


async def test_hybrid_fuses_by_reciprocal_rank(opened: Opened) -> None:
    svc = await opened.service()
    await svc.create("mix", 16, model="tiny-embed")
    query = np.asarray(unit(1))
    # Vector ranking: a, b, c, d (a nearest). Keyword ranking for "forklift": c, d, b (a lacks the word).
    mixes = [("a", 0.05), ("b", 0.2), ("c", 0.35), ("d", 0.5)]
    near = {name: query * (1 - s) + np.asarray(unit(50 + n)) * s for n, (name, s) in enumerate(mixes)}
    texts = {
        "a": "night shift cashier",
        "b": "forklift, warehouse, night, weekend, cashier, nurse",
        "c": "forklift forklift forklift",
        "d": "forklift forklift warehouse",
    }
    await svc.add(
        "mix",
        [NewItem(i, (v / np.linalg.norm(v)).tolist(), texts[i], {"k": i}) for i, v in near.items()]
        + [NewItem(f"f{j}", unit(900 + j), "welder plumber electrician", {}) for j in range(30)],
    )
    hits = (await svc.search("mix", [query.tolist()], text="forklift", k=4, mode="hybrid"))[0]
    # RRF: c = 1/63 + 1/61, b = 1/62 + 1/63, d = 1/64 + 1/62, a = 1/61 (vector only).
    assert [h.id for h in hits] == ["c", "b", "d", "a"]
    by_id = {h.id: h for h in hits}
    assert by_id["a"].ranks == {"vector": 1}
    assert set(by_id["c"].ranks) == {"vector", "keyword"}
    assert hits == sorted(hits, key=lambda h: -h.score)
    where = {"k": {"$in": ["a", "d"]}}
    hits = (await svc.search("mix", [query.tolist()], text="forklift", k=4, where=where, mode="hybrid"))[0]
    assert [(h.id, h.ranks) for h in hits] == [("d", {"vector": 2, "keyword": 1}), ("a", {"vector": 1})]
    # The same fusion, checked exactly on known rankings.
    vector = [_hit(x) for x in "abcd"]
    keyword = [_hit(x) for x in "cdb"]
    fused = fuse({"vector": vector, "keyword": keyword}, 4)
    assert [h.id for h in fused] == ["c", "b", "d", "a"]
    assert fused[0].ranks == {"vector": 3, "keyword": 1}
    assert fused[0].score == pytest.approx(1 / 63 + 1 / 61)
    await svc.close()


def _hit(item_id: str) -> Hit:
    return Hit(item_id, 0.5, 0.5, {})


async def test_text_only_items_are_embedded_and_keyword_searchable(opened: Opened) -> None:
    svc = await opened.service()
    await svc.create("t", 16, model="tiny-embed")
    await svc.add("t", [NewItem("x", text="OSHA-30 certified electrician"), NewItem("y", text="nurse")])
    assert [h.id for h in (await svc.search("t", text="OSHA-30", mode="keyword"))[0]] == ["x"]
    hits = (await svc.search("t", text="OSHA-30 certified electrician", k=1))[0]
    assert hits[0].id == "x" and hits[0].ranks == {"vector": 1}
    await svc.close()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mode": "fuzzy", "text": "x"},
        {"mode": "keyword"},
        {"mode": "keyword", "text": "  "},
        {"mode": "keyword", "text": "x", "vectors": [[0.0] * 16]},
        {"mode": "hybrid", "vectors": [[1.0] * 16]},
        {"mode": "hybrid", "text": "x", "vectors": [[1.0] * 16, [1.0] * 16]},
        {"mode": "keyword", "text": "x", "where": {"rate": {"$like": 1}}},
    ],
)
async def test_bad_mode_requests_are_refused(opened: Opened, kwargs: dict[str, Any]) -> None:
    svc = await opened.service()
    await svc.create("t", 16, model="tiny-embed")
    with pytest.raises(InvalidRequest):
        await svc.search("t", **kwargs)
    await svc.close()
