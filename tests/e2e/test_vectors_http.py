"""`/v1/vectors` through real `lakehouse serve` processes: errors, filters, text, recall, kill -9, S3."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import StartLakehouse
from tests.fakes.ollama import FakeOllama, run_fake_ollama
from tests.support.procs import LakehouseProcess, closed_url
from tests.support.vectors import wait_ready

pytestmark = pytest.mark.e2e


def clustered(n: int, dim: int, clusters: int = 50, seed: int = 0) -> np.ndarray:
    """`n` unit vectors gathered around `clusters` random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    data = centres[rng.integers(0, clusters, n)] + 0.3 * rng.normal(size=(n, dim)).astype(np.float32)
    return (data / np.linalg.norm(data, axis=1, keepdims=True)).astype(np.float32)


def add_all(client: httpx.Client, name: str, data: np.ndarray, batch: int = 1000, **meta: Any) -> None:
    """Add `data` as items `v0..` in batches, asserting each is acknowledged."""
    for start in range(0, len(data), batch):
        rows = data[start : start + batch]
        items = [
            {"id": f"v{start + i}", "vector": v.tolist(), "metadata": dict(meta)} for i, v in enumerate(rows)
        ]
        answer = client.post(f"/v1/vectors/index/{name}/add", json={"items": items})
        assert answer.status_code == 200, answer.text


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    """The contract's error body with this status and code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert response.headers.get("x-request-id")


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    """A fake Ollama with a 768- and a 16-dimensional model."""
    with run_fake_ollama({"nomic-embed-text": 768, "tiny-embed": 16}) as fake:
        yield fake


@pytest.fixture
def lakehouse(start_lakehouse: StartLakehouse, ollama: FakeOllama) -> LakehouseProcess:
    """`lakehouse serve` with the fake Ollama and frequent snapshots."""
    return start_lakehouse(config={"embedd": {"ollama_url": ollama.url}, "vectord": {"snapshot_every": 300}})


def test_index_lifecycle_and_every_bad_input(lakehouse: LakehouseProcess) -> None:
    with lakehouse.client() as c:
        created = c.post("/v1/vectors/index", json={"name": "docs", "dim": 3, "metric": "cosine"})
        assert created.status_code == 201, created.text
        assert {k: created.json()[k] for k in ("name", "dim", "metric", "count", "model")} == {
            "name": "docs",
            "dim": 3,
            "metric": "cosine",
            "count": 0,
            "model": "nomic-embed-text",
        }
        assert_error(c.post("/v1/vectors/index", json={"name": "docs", "dim": 3}), 409, "already_exists")
        for name in ("Bad Name", "a/b", "", "x" * 80):
            assert_error(c.post("/v1/vectors/index", json={"name": name, "dim": 3}), 400, "invalid_name")
        for body in ({"name": "x"}, {"name": "x", "dim": 0}, {"name": "x", "dim": 3, "metric": "dot"}, [1]):
            assert_error(c.post("/v1/vectors/index", json=body), 400, "invalid_request")
        assert_error(c.post("/v1/vectors/index", content=b"{not json"), 400, "invalid_request")
        assert [i["name"] for i in c.get("/v1/vectors/index").json()["indexes"]] == ["docs"]
        assert c.get("/v1/vectors/index/docs").json()["count"] == 0
        assert_error(c.get("/v1/vectors/index/nope"), 404, "not_found")

        items = [
            {"id": "a", "vector": [1, 0, 0], "metadata": {"team": "red"}},
            {"id": "b", "vector": [0, 1, 0], "metadata": {"team": "blue"}},
            {"id": "c", "vector": [0.9, 0.1, 0], "metadata": {"team": "blue"}},
        ]
        assert c.post("/v1/vectors/index/docs/add", json={"items": items}).json() == {"added": 3, "count": 3}
        mixed = {"items": [{"id": "d", "vector": [1, 1, 1]}, {"id": "e", "vector": [1, 1]}]}
        mismatch = c.post("/v1/vectors/index/docs/add", json=mixed)
        assert_error(mismatch, 400, "dim_mismatch")
        assert mismatch.json()["error"]["expected"] == 3
        nan = b'{"items": [{"id": "n", "vector": [NaN, 0, 0]}]}'
        assert_error(c.post("/v1/vectors/index/docs/add", content=nan), 400, "invalid_request")
        inf = b'{"items": [{"id": "n", "vector": [Infinity, 0, 0]}]}'
        assert_error(c.post("/v1/vectors/index/docs/add", content=inf), 400, "invalid_request")
        nan_meta = b'{"items": [{"id": "n", "vector": [1, 0, 0], "metadata": {"rate": NaN}}]}'
        assert_error(c.post("/v1/vectors/index/docs/add", content=nan_meta), 400, "invalid_request")
        for body in ({"items": []}, {"items": [{"id": "x"}]}, {"items": [{"vector": [1, 0, 0]}]}, {}):
            assert_error(c.post("/v1/vectors/index/docs/add", json=body), 400, "invalid_request")
        assert_error(c.post("/v1/vectors/index/nope/add", json={"items": items}), 404, "not_found")
        assert c.get("/v1/vectors/index/docs").json()["count"] == 3  # nothing of a bad batch landed

        hits = c.post("/v1/vectors/index/docs/search", json={"vector": [1, 0, 0], "k": 2}).json()["hits"]
        assert [h["id"] for h in hits] == ["a", "c"]
        assert hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
        assert hits[0]["metadata"] == {"team": "red"}
        filtered = c.post(
            "/v1/vectors/index/docs/search", json={"vector": [1, 0, 0], "k": 2, "filter": {"team": "blue"}}
        ).json()["hits"]
        assert [h["id"] for h in filtered] == ["c", "b"]
        batch = c.post("/v1/vectors/index/docs/search", json={"vectors": [[1, 0, 0], [0, 1, 0]], "k": 1})
        assert [r["hits"][0]["id"] for r in batch.json()["results"]] == ["a", "b"]
        for body in ({"vector": [1, 0, 0], "k": 0}, {"vector": [1, 0, 0], "k": 5000}, {}, {"vector": "x"}):
            assert_error(c.post("/v1/vectors/index/docs/search", json=body), 400, "invalid_request")
        assert_error(c.post("/v1/vectors/index/docs/search", json={"vector": [1, 0]}), 400, "dim_mismatch")
        assert_error(c.post("/v1/vectors/index/nope/search", json={"vector": [1, 0, 0]}), 404, "not_found")

        upsert = {"items": [{"id": "a", "vector": [0, 0, 1], "metadata": {"team": "green"}}]}
        assert c.post("/v1/vectors/index/docs/add", json=upsert).json() == {"added": 1, "count": 3}
        top = c.post("/v1/vectors/index/docs/search", json={"vector": [0, 0, 1], "k": 1}).json()["hits"][0]
        assert (top["id"], top["metadata"]) == ("a", {"team": "green"})

        assert c.delete("/v1/vectors/index/docs/items/b").status_code == 204
        assert_error(c.delete("/v1/vectors/index/docs/items/b"), 404, "not_found")
        assert_error(c.delete("/v1/vectors/index/nope/items/b"), 404, "not_found")
        assert c.get("/v1/vectors/index/docs").json()["count"] == 2
        assert c.delete("/v1/vectors/index/docs").status_code == 204
        assert_error(c.get("/v1/vectors/index/docs"), 404, "not_found")
        assert_error(c.delete("/v1/vectors/index/docs"), 404, "not_found")
        assert_error(c.put("/v1/vectors/index"), 405, "method_not_allowed")


def test_text_items_and_queries_go_through_the_index_model(
    lakehouse: LakehouseProcess, ollama: FakeOllama
) -> None:
    with lakehouse.client() as c:
        c.post("/v1/vectors/index", json={"name": "t", "dim": 16, "model": "tiny-embed"})
        items = [{"id": "f", "text": "forklift operator"}, {"id": "n", "text": "night nurse"}]
        assert c.post("/v1/vectors/index/t/add", json={"items": items}).json()["count"] == 2
        hit = c.post("/v1/vectors/index/t/search", json={"text": "night nurse", "k": 1}).json()["hits"][0]
        assert (hit["id"], hit["text"]) == ("n", "night nurse")
        assert ollama.requests[-1]["model"] == "tiny-embed"
        c.post("/v1/vectors/index", json={"name": "big", "dim": 16})  # default model: 768 dims
        assert_error(c.post("/v1/vectors/index/big/add", json={"items": items}), 400, "dim_mismatch")
        ollama.fail_status = 500
        assert_error(c.post("/v1/vectors/index/t/search", json={"text": "x"}), 502, "upstream_error")
        assert_error(c.post("/v1/vectors/index/t/add", json={"items": items}), 502, "upstream_error")
        assert c.get("/v1/vectors/index/t").json()["count"] == 2


def test_unreachable_embedder_is_503(start_lakehouse: StartLakehouse) -> None:
    proc = start_lakehouse(config={"embedd": {"ollama_url": closed_url()}})
    with proc.client() as c:
        c.post("/v1/vectors/index", json={"name": "t", "dim": 16})
        answer = c.post("/v1/vectors/index/t/add", json={"items": [{"id": "a", "text": "hello"}]})
        assert_error(answer, 503, "provider_unavailable")
        assert "ollama" in answer.json()["error"]["message"].lower()


def add_numbered(client: httpx.Client, name: str, data: np.ndarray, batch: int, **meta: Any) -> None:
    """Add `data` as items `v0..`, each with its own number `n` in its metadata (for exact lookups)."""
    for start in range(0, len(data), batch):
        items = [
            {"id": f"v{start + i}", "vector": v.tolist(), "metadata": {**meta, "n": start + i}}
            for i, v in enumerate(data[start : start + batch])
        ]
        answer = client.post(f"/v1/vectors/index/{name}/add", json={"items": items})
        assert answer.status_code == 200, answer.text


def assert_durable(
    client: httpx.Client, name: str, expected: dict[int, tuple[np.ndarray, dict[str, Any]]], deleted: set[int]
) -> None:
    """Every expected item is there with its vector and metadata; every deleted one is gone.

    Each item is looked up alone (a filter on its own number leaves one candidate,
    searched exactly), so this checks what durability promises, not ANN ordering.
    """
    for n, (vector, metadata) in expected.items():
        body = {"vector": vector.tolist(), "k": 1, "filter": {"n": n}}
        hits = client.post(f"/v1/vectors/index/{name}/search", json=body).json()["hits"]
        assert [(h["id"], h["metadata"]) for h in hits] == [(f"v{n}", metadata)]
        assert hits[0]["score"] == pytest.approx(1.0, abs=1e-3)  # its own vector, as acknowledged
    for n in deleted:
        body = {"vector": [1.0] * len(next(iter(expected.values()))[0]), "k": 1, "filter": {"n": n}}
        assert client.post(f"/v1/vectors/index/{name}/search", json=body).json()["hits"] == []


def test_acknowledged_writes_survive_kill_9(lakehouse: LakehouseProcess) -> None:
    data = clustered(1000, 32, seed=4)
    with lakehouse.client() as c:
        c.post("/v1/vectors/index", json={"name": "k", "dim": 32})
        add_numbered(c, "k", data, batch=200, source="bulk")
        moved = {"source": "moved", "n": 5}
        upsert = {"items": [{"id": "v5", "vector": (-data[5]).tolist(), "metadata": moved}]}
        assert c.post("/v1/vectors/index/k/add", json=upsert).status_code == 200
        assert c.delete("/v1/vectors/index/k/items/v9").status_code == 204
        c.post("/v1/vectors/index", json={"name": "gone", "dim": 2})
        assert c.delete("/v1/vectors/index/gone").status_code == 204
    lakehouse.kill9()
    lakehouse.start()
    expected = {n: (data[n], {"source": "bulk", "n": n}) for n in range(1000) if n != 9}
    expected[5] = (-data[5], moved)
    with lakehouse.client() as c:
        assert [i["name"] for i in c.get("/v1/vectors/index").json()["indexes"]] == ["k"]
        assert wait_ready(c, "k")["count"] == 999
        assert_durable(c, "k", expected, deleted={9})


def test_recall_at_10_over_http_on_10000_clustered_vectors(start_lakehouse: StartLakehouse) -> None:
    proc = start_lakehouse()
    data = clustered(10000, 64, clusters=100, seed=7)
    rng = np.random.default_rng(3)
    queries = data[rng.integers(0, len(data), 200)] + 0.05 * rng.normal(size=(200, 64)).astype(np.float32)
    with proc.client() as c:
        c.post("/v1/vectors/index", json={"name": "r", "dim": 64})
        add_all(c, "r", data, batch=2500)
        results = c.post("/v1/vectors/index/r/search", json={"vectors": queries.tolist(), "k": 10}).json()
    normed = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    truth = np.argsort(-(normed @ data.T), axis=1)[:, :10]
    found = [{h["id"] for h in r["hits"]} for r in results["results"]]
    recall = np.mean([len(f & {f"v{j}" for j in row}) / 10 for f, row in zip(found, truth, strict=True)])
    assert recall >= 0.95


@pytest.mark.s3
def test_s3_mode_survives_kill_9(start_lakehouse: StartLakehouse, s3_storage: dict[str, Any]) -> None:
    proc = start_lakehouse(config={"storage": s3_storage, "vectord": {"snapshot_every": 250}})
    data = clustered(600, 16, seed=8)
    with proc.client() as c:
        assert c.post("/v1/vectors/index", json={"name": "s", "dim": 16}).status_code == 201
        add_numbered(c, "s", data, batch=100, where="s3")
        assert c.delete("/v1/vectors/index/s/items/v0").status_code == 204
    proc.kill9()
    proc.start()
    with proc.client() as c:
        assert wait_ready(c, "s")["count"] == 599
        expected = {n: (data[n], {"where": "s3", "n": n}) for n in range(1, 600)}
        assert_durable(c, "s", expected, deleted={0})
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_storage["endpoint"], region_name="us-east-1")
    keys = s3.list_objects_v2(Bucket=s3_storage["bucket"])
    assert any("/snap/" in o["Key"] for o in keys.get("Contents", []))


@pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None, reason="needs lakehouse[local]"
)
def test_local_model_finds_forklift_operators(start_lakehouse: StartLakehouse) -> None:
    proc = start_lakehouse()
    profiles = {
        "p1": "Certified forklift operator loading pallets in a warehouse",
        "p2": "Forklift truck operator on night shifts",
        "p3": "Registered nurse on a surgical ward",
        "p4": "Python developer building web APIs",
        "p5": "Head chef running a restaurant kitchen",
        "p6": "Primary school teacher teaching maths",
    }
    with proc.client(timeout=180.0) as c:
        created = c.post(
            "/v1/vectors/index", json={"name": "staff", "dim": 384, "model": "local/all-minilm-l6-v2"}
        )
        assert created.status_code == 201
        items = [{"id": k, "text": v} for k, v in profiles.items()]
        assert c.post("/v1/vectors/index/staff/add", json={"items": items}).status_code == 200
        hits = c.post("/v1/vectors/index/staff/search", json={"text": "fork lift driver", "k": 2}).json()
    assert {h["id"] for h in hits["hits"]} == {"p1", "p2"}
