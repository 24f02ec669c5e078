"""Dataset-linked indexes: fill, follow appends, changes, replaces and deletes, resume after a crash."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from lakehouse.catalog import Catalog
from lakehouse.config import Settings
from lakehouse.errors import Conflict, InvalidRequest, NotFound
from lakehouse.ingest import Ingester
from lakehouse.providers.embeddings import Embedder
from lakehouse.storage import ObjectStore, open_store
from lakehouse.vectors import NewItem, VectorService, linked
from tests.fakes.ollama import FakeOllama, run_fake_ollama

SOURCE = {"dataset": "candidates", "id_column": "id", "text_columns": ["bio"]}


@pytest.fixture(scope="module")
def ollama() -> Iterator[FakeOllama]:
    """A fake Ollama with a 16-dimensional model."""
    with run_fake_ollama({"tiny-embed": 16}) as fake:
        yield fake


class Lake:
    """A store, catalog, ingester and embedder, as one vectord process would have them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: ObjectStore = open_store(settings)
        self.catalog = Catalog(self.store)
        self.ingester = Ingester(settings, self.store, self.catalog)
        self.embedder = Embedder(settings)

    async def service(self) -> VectorService:
        """A freshly loaded service (a restart without shutdown)."""
        svc = VectorService(self.settings, self.store, self.embedder, catalog=lambda: self.catalog)
        await svc.load()
        await svc.wait_loaded()
        return svc

    async def ingest(self, rows: list[tuple[Any, ...]], mode: str = "append") -> None:
        """Ingest candidate rows (id, bio, rate, city) as CSV."""
        lines = ["id,bio,rate,city"] + [",".join("" if v is None else str(v) for v in row) for row in rows]

        async def body() -> AsyncIterator[bytes]:
            yield ("\n".join(lines) + "\n").encode()

        await self.ingester.ingest("candidates", body(), "text/csv", mode)  # type: ignore[arg-type]


@pytest.fixture
async def lake(tmp_path: Path, ollama: FakeOllama) -> AsyncIterator[Lake]:
    """A fresh lake over a local folder; the background follower effectively never wakes."""
    settings = Settings.model_validate(
        {
            "storage": {"root": str(tmp_path / "data")},
            "vectord": {"snapshot_every": 20, "sync_interval_secs": 3600},
            "embedd": {"ollama_url": ollama.url, "default_model": "tiny-embed"},
        }
    )
    handle = Lake(settings)
    yield handle
    await handle.embedder.close()
    await handle.store.close()


def embedded(ollama: FakeOllama) -> list[str]:
    """Every text the fake provider has been asked to embed."""
    texts: list[str] = []
    for body in ollama.requests:
        if "input" in body:
            value = body["input"]
            texts.extend([value] if isinstance(value, str) else value)
    return texts


def people(start: int, n: int, rate: int = 20) -> list[tuple[Any, ...]]:
    """Rows c<start>... with distinct bios."""
    return [(i, f"candidate {i} forklift CDL-A", rate + i % 10, "Austin") for i in range(start, start + n)]


async def test_fill_append_change_replace_and_delete(lake: Lake, ollama: FakeOllama) -> None:
    await lake.ingest(people(0, 30))
    svc = await lake.service()
    ollama.requests.clear()
    info = await svc.create("profiles", 16, model="tiny-embed", source=SOURCE)
    assert info["source"] == {**SOURCE, "metadata_columns": ["rate", "city"]}
    info = await svc.sync("profiles")
    assert (info["count"], info["synced_version"], info["pending"]) == (30, 1, 0)
    assert sorted(embedded(ollama)) == sorted(row[1] for row in people(0, 30))

    ollama.requests.clear()
    await lake.ingest(people(30, 3))
    info = await svc.sync("profiles")
    assert (info["count"], info["synced_version"]) == (33, 2)
    assert sorted(embedded(ollama)) == sorted(row[1] for row in people(30, 3))  # only the new rows

    ollama.requests.clear()
    rows = people(0, 33)
    rows[4] = (4, "now a welder with OSHA-30", 24, "Austin")  # text changed
    rows[5] = (5, rows[5][1], 99, "Dallas")  # metadata only
    await lake.ingest(rows, mode="replace")
    await svc.sync("profiles")
    assert embedded(ollama) == ["now a welder with OSHA-30"]
    hits = (await svc.search("profiles", text="OSHA-30", mode="keyword"))[0]
    assert hits[0].id == "4"  # the whole term first (then "candidate 30", by the part "30")
    hits = (await svc.search("profiles", text="x", where={"rate": {"$gte": 99}}, k=5))[0]
    assert [(h.id, h.metadata) for h in hits] == [("5", {"rate": 99, "city": "Dallas"})]

    ollama.requests.clear()
    await lake.ingest(people(0, 10), mode="replace")
    info = await svc.sync("profiles")
    assert info["count"] == 10 and embedded(ollama) == ["candidate 4 forklift CDL-A"]

    await lake.catalog.delete("candidates")
    info = await svc.sync("profiles")
    assert (info["count"], info["synced_version"]) == (0, None)
    await svc.close()


async def test_sync_state_survives_restart(lake: Lake, ollama: FakeOllama) -> None:
    await lake.ingest(people(0, 12))
    svc = await lake.service()
    await svc.create("profiles", 16, model="tiny-embed", source=SOURCE)
    await svc.sync("profiles")
    again = await lake.service()
    ollama.requests.clear()
    info = await again.sync("profiles")
    assert (info["count"], info["synced_version"], embedded(ollama)) == (12, 1, [])
    await svc.close()
    await again.close()


async def test_resume_after_a_crash_embeds_only_what_was_not_acknowledged(
    lake: Lake, ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    await lake.ingest(people(0, 50))
    svc = await lake.service()
    monkeypatch.setattr(linked, "SYNC_BATCH", 10)
    ollama.requests.clear()
    calls = 0
    real = svc._embed

    async def dies_from_third_batch(spec: Any, texts: list[str]) -> Any:
        nonlocal calls
        calls += 1
        if calls >= 3:
            raise RuntimeError("process killed")
        return await real(spec, texts)

    svc._embed = dies_from_third_batch  # type: ignore[method-assign]
    await svc.create("profiles", 16, model="tiny-embed", source=SOURCE)  # its first fill dies
    with pytest.raises(RuntimeError):
        await svc.sync("profiles")
    acknowledged = set(embedded(ollama))
    assert len(acknowledged) == 20
    ollama.requests.clear()
    restarted = await lake.service()
    assert restarted.info("profiles")["count"] == 20
    info = await restarted.sync("profiles")
    assert info["count"] == 50 and info["synced_version"] == 1
    again = embedded(ollama)
    assert len(again) == 30 and not acknowledged & set(again)
    await restarted.close()


async def test_bad_sources_are_refused(lake: Lake) -> None:
    svc = await lake.service()
    with pytest.raises(NotFound):
        await svc.create("p", 16, source=SOURCE)
    await lake.ingest(people(0, 3))
    with pytest.raises(InvalidRequest, match="no column 'resume'"):
        await svc.create("p", 16, source={**SOURCE, "text_columns": ["resume"]})
    with pytest.raises(InvalidRequest):
        await svc.create("p", 16, source={"dataset": "candidates", "id_column": "id", "text_columns": []})
    with pytest.raises(InvalidRequest, match="follows no dataset"):
        await svc.create("plain", 16)
        await svc.sync("plain")
    await svc.create("p", 16, source=SOURCE)
    await svc.sync("p")
    with pytest.raises(Conflict):
        await svc.add("p", [NewItem("x", text="y")])
    await lake.ingest([(1, "again", 1, "Austin")])  # id 1 twice
    with pytest.raises(InvalidRequest, match="repeats"):
        await svc.sync("p")
    assert "repeats" in svc.info("p")["sync_error"]
    await lake.ingest([(None, "no id", 1, "Austin"), (2, "has one", 1, "Austin")], mode="replace")
    with pytest.raises(InvalidRequest, match="empty values"):
        await svc.sync("p")
    assert svc.info("p")["count"] == 3  # a bad version changes nothing
    await svc.close()


async def test_rows_longer_than_the_embedder_takes_are_embedded_by_their_start(
    tmp_path: Path, ollama: FakeOllama
) -> None:
    settings = Settings.model_validate(
        {
            "storage": {"root": str(tmp_path / "data")},
            "vectord": {"sync_interval_secs": 3600},
            "embedd": {"ollama_url": ollama.url, "default_model": "tiny-embed", "max_text_chars": 100},
        }
    )
    lake = Lake(settings)
    try:
        long_bio = "forklift " * 40 + "OSHA-30"
        await lake.ingest([(1, long_bio, 20, "Austin"), (2, "nurse", 20, "Austin")])
        svc = await lake.service()
        await svc.create("p", 16, model="tiny-embed", source=SOURCE)
        ollama.requests.clear()
        assert (await svc.sync("p"))["count"] == 2
        assert all(len(text) <= 100 for text in embedded(ollama))
        hits = (await svc.search("p", text="OSHA-30", mode="keyword"))[0]
        assert [h.id for h in hits] == ["1"]  # the whole text is kept for keyword search
        await svc.close()
    finally:
        await lake.embedder.close()
        await lake.store.close()
