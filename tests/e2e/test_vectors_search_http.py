"""Filters, keyword and hybrid search, and dataset-linked indexes through a real `lakehouse serve`."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from lakehouse.client import Client
from tests.conftest import StartCluster, StartLakehouse
from tests.fakes.ollama import FakeOllama, run_fake_ollama
from tests.support.procs import LAKEHOUSE, LakehouseProcess
from tests.support.vectors import wait_ready

pytestmark = pytest.mark.e2e


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    """A fake Ollama with a 16-dimensional model."""
    with run_fake_ollama({"tiny-embed": 16}) as fake:
        yield fake


@pytest.fixture
def lakehouse(start_lakehouse: StartLakehouse, ollama: FakeOllama) -> LakehouseProcess:
    """`lakehouse serve` with the fake Ollama; linked indexes followed every second."""
    return start_lakehouse(
        config={
            "embedd": {"ollama_url": ollama.url, "default_model": "tiny-embed"},
            "vectord": {"sync_interval_secs": 1, "snapshot_every": 200},
        }
    )


def unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """`n` random unit vectors."""
    data = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    out: np.ndarray = data / np.linalg.norm(data, axis=1, keepdims=True)
    return out


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    """The contract's error body with this status and code."""
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


def embedded(ollama: FakeOllama) -> list[str]:
    """Every text the fake provider was asked to embed."""
    texts: list[str] = []
    for body in ollama.requests:
        value = body.get("input")
        if value is not None:
            texts.extend([value] if isinstance(value, str) else value)
    return texts


def csv_of(rows: list[tuple[Any, ...]]) -> bytes:
    """Candidates (id, bio, hourly_rate, city) as CSV."""
    lines = ["id,bio,hourly_rate,city", *(",".join(str(v) for v in row) for row in rows)]
    return ("\n".join(lines) + "\n").encode()


def candidates(start: int, n: int) -> list[tuple[Any, ...]]:
    """Distinct candidate rows."""
    return [(i, f"candidate {i} warehouse picker", 30 + i % 20, "Austin") for i in range(start, start + n)]


def test_range_filter_returns_k_among_many_non_matching(lakehouse: LakehouseProcess) -> None:
    data = unit(6000, 16)
    cheap = set(range(11, 6000, 500))  # 12 of 6000 under 25 an hour
    with lakehouse.client() as c:
        assert c.post("/v1/vectors/index", json={"name": "p", "dim": 16}).status_code == 201
        for start in range(0, 6000, 2000):
            items = [
                {
                    "id": f"v{i}",
                    "vector": data[i].tolist(),
                    "metadata": {"rate": 18 if i in cheap else 40 + i % 9},
                }
                for i in range(start, start + 2000)
            ]
            assert c.post("/v1/vectors/index/p/add", json={"items": items}).status_code == 200
        query = {"vector": unit(1, 16, 5)[0].tolist(), "k": 10}
        for flt in ({"rate": {"$lt": 25}}, {"$and": [{"rate": {"$gte": 10}}, {"rate": {"$lte": 20}}]}):
            hits = c.post("/v1/vectors/index/p/search", json={**query, "filter": flt}).json()["hits"]
            assert len(hits) == 10 and {h["id"] for h in hits} <= {f"v{i}" for i in cheap}
            assert all(
                h["found_by"] == ["vector"] and h["ranks"]["vector"] == n for n, h in enumerate(hits, 1)
            )
        broad = {"rate": {"$nin": [18, 40]}}  # about 8 in 9 items
        hits = c.post("/v1/vectors/index/p/search", json={**query, "filter": broad}).json()["hits"]
        assert len(hits) == 10 and all(h["metadata"]["rate"] not in (18, 40) for h in hits)
        string_vs_number = {"rate": {"$lt": "25"}}
        assert c.post("/v1/vectors/index/p/search", json={**query, "filter": string_vs_number}).json() == {
            "hits": []
        }


def test_every_bad_filter_and_mode_is_a_400(lakehouse: LakehouseProcess) -> None:
    bad_filters: list[Any] = [
        {"rate": {"$foo": 1}},
        {"$not": {"rate": 1}},
        {"$and": {"rate": 1}},
        {"$or": []},
        {"rate": {"$in": 3}},
        {"rate": {"$lt": None}},
        {"rate": {"$gt": True}},
        {"rate": {"$lt": 1, "x": 2}},
        {"": 1},
        [1],
        "rate < 25",
    ]
    with lakehouse.client() as c:
        c.post("/v1/vectors/index", json={"name": "p", "dim": 2})
        c.post("/v1/vectors/index/p/add", json={"items": [{"id": "a", "vector": [1, 0], "text": "x"}]})
        for flt in bad_filters:
            for mode in ("vector", "keyword", "hybrid"):
                body = {"vector": [1, 0], "text": "x", "filter": flt, "mode": mode}
                if mode == "keyword":
                    del body["vector"]
                assert_error(c.post("/v1/vectors/index/p/search", json=body), 400, "invalid_request")
        for body in (
            {"text": "x", "mode": "fuzzy"},
            {"mode": "keyword"},
            {"mode": "keyword", "text": "x", "vector": [1, 0]},
            {"mode": "hybrid", "vector": [1, 0]},
        ):
            assert_error(c.post("/v1/vectors/index/p/search", json=body), 400, "invalid_request")


def test_keyword_and_hybrid_search(lakehouse: LakehouseProcess) -> None:
    texts = {
        "a": "night shift cashier",
        "b": "forklift, warehouse, night, weekend, cashier, nurse",
        "c": "forklift forklift forklift",
        "d": "forklift forklift warehouse",
        "e": "truck driver with a CDL-A licence and OSHA-30",
        "f": "truck driver, CDL-B",
    }
    query = unit(1, 16, 1)[0]
    mixes = {"a": 0.05, "b": 0.2, "c": 0.35, "d": 0.5}
    with lakehouse.client() as c:
        c.post("/v1/vectors/index", json={"name": "m", "dim": 16})
        items = []
        for n, (item_id, text) in enumerate(texts.items()):
            mix = mixes.get(item_id, 0.95)
            v = query * (1 - mix) + unit(1, 16, 50 + n)[0] * mix
            items.append({"id": item_id, "vector": (v / np.linalg.norm(v)).tolist(), "text": text})
        assert c.post("/v1/vectors/index/m/add", json={"items": items}).status_code == 200
        hits = c.post("/v1/vectors/index/m/search", json={"text": "CDL-A", "mode": "keyword"}).json()["hits"]
        assert (
            hits[0]["id"] == "e" and hits[0]["found_by"] == ["keyword"] and hits[0]["ranks"] == {"keyword": 1}
        )
        body = {"text": "forklift", "vector": query.tolist(), "k": 4, "mode": "hybrid"}
        hits = c.post("/v1/vectors/index/m/search", json=body).json()["hits"]
        assert [h["id"] for h in hits] == ["c", "b", "d", "a"]
        assert hits[0]["found_by"] == ["vector", "keyword"] and hits[0]["ranks"] == {
            "vector": 3,
            "keyword": 1,
        }
        assert hits[3]["found_by"] == ["vector"]
        body["filter"] = {"$or": [{"missing": 1}]}
        assert c.post("/v1/vectors/index/m/search", json=body).json()["hits"] == []
    # The Python client and the CLI take the mode too.
    with Client(lakehouse.url) as client:
        hits = client.search("m", text="OSHA-30", mode="keyword", k=1)
        assert [(h.id, h.found_by, h.ranks) for h in hits] == [("e", ["keyword"], {"keyword": 1})]
    done = subprocess.run(
        [
            LAKEHOUSE,
            "search",
            "m",
            "CDL-A",
            "--mode",
            "keyword",
            "-k",
            "1",
            "--json",
            "--gateway",
            lakehouse.url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert [h["id"] for h in json.loads(done.stdout)["hits"]] == ["e"]


def test_linked_index_follows_its_dataset(lakehouse: LakehouseProcess, ollama: FakeOllama) -> None:
    with lakehouse.client() as c:
        source = {"dataset": "candidates", "id_column": "id", "text_columns": ["bio"]}
        new = {"name": "profiles", "dim": 16, "model": "tiny-embed", "source": source}
        assert_error(c.post("/v1/vectors/index", json=new), 404, "not_found")
        assert c.post("/v1/ingest/candidates", content=csv_of(candidates(0, 40))).status_code == 201
        bad = {**new, "source": {**source, "text_columns": ["resume"]}}
        assert_error(c.post("/v1/vectors/index", json=bad), 400, "invalid_request")
        bad = {**new, "source": {**source, "extra": 1}}
        assert_error(c.post("/v1/vectors/index", json=bad), 400, "invalid_request")
        ollama.requests.clear()
        created = c.post("/v1/vectors/index", json=new)
        assert created.status_code == 201, created.text
        assert created.json()["source"]["metadata_columns"] == ["hourly_rate", "city"]
        info = c.post("/v1/vectors/index/profiles/sync").json()
        assert (info["count"], info["synced_version"], info["pending"]) == (40, 1, 0)
        assert len(embedded(ollama)) == 40
        assert_error(
            c.post("/v1/vectors/index/profiles/add", json={"items": [{"id": "x", "text": "y"}]}),
            409,
            "conflict",
        )

        # Appended rows arrive by themselves within the sync interval; only they are embedded.
        ollama.requests.clear()
        c.post("/v1/ingest/candidates", content=csv_of(candidates(40, 5)))
        deadline = time.monotonic() + 20
        while c.get("/v1/vectors/index/profiles").json()["synced_version"] != 2:
            assert time.monotonic() < deadline, "the index did not follow the new version"
            time.sleep(0.1)
        assert c.get("/v1/vectors/index/profiles").json()["count"] == 45
        assert sorted(embedded(ollama)) == sorted(row[1] for row in candidates(40, 5))

        flt = {"hourly_rate": {"$lt": 32}}
        hits = c.post("/v1/vectors/index/profiles/search", json={"text": "picker", "k": 50, "filter": flt})
        assert {h["metadata"]["hourly_rate"] for h in hits.json()["hits"]} == {30, 31}

        c.post("/v1/ingest/candidates?mode=replace", content=csv_of(candidates(0, 10)))
        assert c.post("/v1/vectors/index/profiles/sync").json()["count"] == 10
        assert_error(c.post("/v1/vectors/index/nope/sync"), 404, "not_found")
        c.post("/v1/vectors/index", json={"name": "plain", "dim": 2})
        assert_error(c.post("/v1/vectors/index/plain/sync"), 400, "invalid_request")


def test_kill_9_mid_sync_resumes_without_re_embedding(
    start_lakehouse: StartLakehouse, ollama: FakeOllama
) -> None:
    proc = start_lakehouse(
        config={
            "embedd": {"ollama_url": ollama.url, "default_model": "tiny-embed", "provider_batch": 64},
            "vectord": {"sync_interval_secs": 3600},
        }
    )
    rows = candidates(0, 2560)  # ten batches of 256
    ollama.delay = 0.4
    with proc.client() as c:
        assert c.post("/v1/ingest/candidates", content=csv_of(rows)).status_code == 201
        source = {"dataset": "candidates", "id_column": "id", "text_columns": ["bio"]}
        new = {"name": "profiles", "dim": 16, "model": "tiny-embed", "source": source}
        assert c.post("/v1/vectors/index", json=new).status_code == 201
        deadline = time.monotonic() + 60
        while (seen := c.get("/v1/vectors/index/profiles").json())["count"] < 512:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert seen["pending"] > 0 and seen["count"] < len(rows)
    proc.kill9()
    acknowledged = {row[1] for row in rows[: seen["count"]]}  # batches commit in the dataset's order
    before = embedded(ollama)
    ollama.requests.clear()
    ollama.delay = 0.0
    proc.start()
    with proc.client() as c:
        wait_ready(c, "profiles")
        info = c.post("/v1/vectors/index/profiles/sync").json()
    assert (info["count"], info["synced_version"]) == (len(rows), 1)
    after = embedded(ollama)
    assert not acknowledged & set(after)  # no acknowledged row was embedded again
    assert len(after) <= len(rows) - seen["count"]
    assert set(before) | set(after) >= {row[1] for row in rows}


def test_linked_index_and_hybrid_search_in_both_serve_modes(
    start_cluster: StartCluster, ollama: FakeOllama
) -> None:
    """Split mode: vectord alone reads the dataset's Parquet objects through the shared store."""
    cluster = start_cluster(
        config={"embedd": {"ollama_url": ollama.url, "default_model": "tiny-embed"}},
        services=["storaged", "catalogd", "ingestd", "vectord", "embedd"],
    )
    rows = [*candidates(0, 20), (99, "truck driver with a CDL-A", 22, "Austin")]
    with cluster.client() as c:
        assert c.post("/v1/ingest/candidates", content=csv_of(rows)).status_code == 201
        source = {"dataset": "candidates", "id_column": "id", "text_columns": ["bio"]}
        new = {"name": "profiles", "dim": 16, "source": source}
        assert c.post("/v1/vectors/index", json=new).status_code == 201
        info = c.post("/v1/vectors/index/profiles/sync").json()
        assert (info["count"], info["synced_version"]) == (21, 1)
        body = {"text": "CDL-A", "k": 3, "mode": "hybrid", "filter": {"hourly_rate": {"$lt": 25}}}
        hits = c.post("/v1/vectors/index/profiles/search", json=body).json()["hits"]
        assert hits[0]["id"] == "99" and hits[0]["found_by"] == ["vector", "keyword"]
