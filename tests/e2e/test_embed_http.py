"""`POST /v1/embed` through real `lakehouse serve` processes, with a fake Ollama and the real local model."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.conftest import StartLakehouse
from tests.fakes.ollama import FakeOllama, fake_vector, run_fake_ollama
from tests.support.procs import LakehouseProcess, closed_url

pytestmark = pytest.mark.e2e


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    """A fake Ollama with nomic-embed-text (768) and all-minilm (384)."""
    with run_fake_ollama({"nomic-embed-text": 768, "all-minilm": 384}) as fake:
        yield fake


@pytest.fixture
def lakehouse(start_lakehouse: StartLakehouse, ollama: FakeOllama) -> LakehouseProcess:
    """`lakehouse serve` (all services) pointed at the fake Ollama, with small limits."""
    embedd = {"ollama_url": ollama.url, "provider_batch": 8, "max_texts": 100, "max_text_chars": 200}
    return start_lakehouse(config={"embedd": embedd})


def test_embed_default_model_through_the_gateway(lakehouse: LakehouseProcess, ollama: FakeOllama) -> None:
    texts = [f"candidate profile {i}" for i in range(50)]
    with lakehouse.client() as client:
        resp = client.post("/v1/embed", json={"texts": texts})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"] == "nomic-embed-text"
    assert body["dim"] == 768
    assert body["vectors"] == [fake_vector(t, 768) for t in texts]
    assert sorted(len(r["input"]) for r in ollama.requests) == [2] + [8] * 6
    assert resp.headers["x-request-id"]


BAD_INPUTS: list[tuple[dict[str, Any], str]] = [
    ({"texts": []}, "at least one"),
    ({"texts": ["fine", ""]}, "texts[1] is empty"),
    ({"texts": ["x" * 201]}, "limit of 200"),
    ({"texts": ["t"] * 101}, "limit of 100"),
    ({"texts": "one string"}, "texts"),
    ({"texts": ["a", 7]}, "texts"),
    ({"model": "nomic-embed-text"}, "texts"),
    ({"texts": ["a"], "model": "ollama_cloud/nomic-embed-text"}, "not offered"),
]


def test_bad_inputs_are_400_and_never_reach_ollama(lakehouse: LakehouseProcess, ollama: FakeOllama) -> None:
    with lakehouse.client() as client:
        for payload, fragment in BAD_INPUTS:
            resp = client.post("/v1/embed", json=payload)
            assert resp.status_code == 400, (payload, resp.text)
            error = resp.json()["error"]
            assert error["code"] == "invalid_request"
            assert fragment in error["message"], (payload, error)
        not_json = client.post("/v1/embed", content=b"{texts", headers={"content-type": "application/json"})
        assert not_json.status_code == 400
        assert not_json.json()["error"]["code"] == "invalid_request"
    assert ollama.requests == []


def test_provider_errors_map_to_the_contract(lakehouse: LakehouseProcess, ollama: FakeOllama) -> None:
    with lakehouse.client() as client:
        missing = client.post("/v1/embed", json={"texts": ["a"], "model": "ollama/snowflake-arctic-embed"})
        ollama.fail_status = 500
        broken = client.post("/v1/embed", json={"texts": ["a"]})
        unregistered = client.post(
            "/v1/embed", json={"texts": ["a"], "model": "openai/text-embedding-3-small"}
        )
    assert missing.status_code == 502
    assert missing.json()["error"]["code"] == "upstream_error"
    assert "ollama pull snowflake-arctic-embed" in missing.json()["error"]["message"]
    assert broken.status_code == 502
    assert broken.json()["error"]["upstream_status"] == 500
    assert unregistered.status_code == 404
    assert unregistered.json()["error"]["code"] == "provider_not_registered"


def test_unreachable_ollama_is_503_with_how_to_start_it(start_lakehouse: StartLakehouse) -> None:
    proc = start_lakehouse(config={"embedd": {"ollama_url": closed_url()}})
    with proc.client() as client:
        resp = client.post("/v1/embed", json={"texts": ["hello"]})
    assert resp.status_code == 503
    error = resp.json()["error"]
    assert error["code"] == "provider_unavailable"
    assert "ollama serve" in error["message"]
    assert "ollama pull nomic-embed-text" in error["message"]


def test_split_mode_gateway_passes_embed_answers_and_errors(
    start_lakehouse: StartLakehouse, ollama: FakeOllama
) -> None:
    embedd = start_lakehouse(config={"embedd": {"ollama_url": ollama.url}}, service="embedd")
    config = {"embedd": {"ollama_url": ollama.url}, "gateway": {"embedd_url": embedd.url}}
    gateway = start_lakehouse(config=config, service="gateway", name="gateway.toml")
    with gateway.client() as client:
        ok = client.post("/v1/embed", json={"texts": ["a", "b"], "model": "all-minilm"})
        bad = client.post("/v1/embed", json={"texts": []})
    assert ok.status_code == 200
    assert ok.json()["vectors"] == [fake_vector("a", 384), fake_vector("b", 384)]
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_request"


@pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None, reason="needs lakehouse[local]"
)
def test_local_model_through_the_process_ranks_forklift_operators_first(
    start_lakehouse: StartLakehouse,
) -> None:
    proc = start_lakehouse(config={"embedd": {"ollama_url": closed_url()}})
    profiles = [
        ("forklift", "Certified forklift operator loading pallets in a warehouse"),
        ("forklift", "Forklift truck operator on night shifts"),
        ("nurse", "Registered nurse on a surgical ward"),
        ("developer", "Python developer building web APIs"),
        ("chef", "Head chef running a restaurant kitchen"),
        ("driver", "HGV lorry driver on long-haul routes"),
        ("teacher", "Primary school teacher teaching maths"),
        ("accountant", "Chartered accountant preparing tax returns"),
    ]
    with proc.client(timeout=120.0) as client:
        docs = client.post(
            "/v1/embed", json={"texts": [t for _, t in profiles], "model": "local/all-minilm-l6-v2"}
        )
        query = client.post(
            "/v1/embed", json={"texts": ["fork lift driver"], "model": "local/all-minilm-l6-v2"}
        )
        unknown = client.post("/v1/embed", json={"texts": ["a"], "model": "local/no-such-model"})
    assert docs.status_code == 200, docs.text
    assert docs.json()["dim"] == 384
    matrix = np.asarray(docs.json()["vectors"], dtype=np.float32)
    q = np.asarray(query.json()["vectors"][0], dtype=np.float32)
    scores = matrix @ q / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(q))
    top = [profiles[i][0] for i in np.argsort(-scores)[:2]]
    assert top == ["forklift", "forklift"]
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
