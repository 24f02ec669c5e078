"""The official `openai` SDK, unchanged, against a real `lakehouse serve` in front of fake providers.

Every model is tried through local Ollama (translated) and through an
OpenAI-compatible provider (passed through); the fakes record what reached them.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from tests.fakes.ollama import FakeOllama, fake_vector, run_fake_ollama
from tests.fakes.openai import FakeOpenAI, run_fake_openai
from tests.support.cluster import LakehouseCluster
from tests.support.procs import LakehouseProcess, serving, write_config

pytestmark = pytest.mark.e2e

OR_KEY = "sk-or-sdk-secret"
OA_KEY = "sk-oa-sdk-secret"
NO_KEY_FILES = {f"{p}_key_file": "" for p in ("ollama_cloud", "openrouter", "opencode", "kimi")}
ENV = {
    "OLLAMA_API_KEY": "",
    "OPENCODE_API_KEY": "",
    "KIMI_API_KEY": "",
    "OPENROUTER_API_KEY": OR_KEY,
    "OPENAI_API_KEY": OA_KEY,
}
OLLAMA_MODEL = "qwen3:4b"
OR_MODEL = "openrouter/meta/llama-3.1-8b"
MODELS = [OLLAMA_MODEL, OR_MODEL]
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    },
}
ASK: Any = [{"role": "user", "content": "weather in Paris"}]
SCHEMA: Any = {"type": "object", "properties": {"echo": {"type": "string"}}, "required": ["echo"]}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


def sections(ollama: FakeOllama, upstream: FakeOpenAI, root: Path) -> dict[str, dict[str, Any]]:
    """A config with local Ollama, OpenRouter and an OpenAI-compatible embeddings server on the fakes."""
    return {
        "storage": {"root": str(root / "data")},
        "chatd": {**NO_KEY_FILES, "ollama_url": ollama.url, "openrouter_url": upstream.url + "/v1"},
        "embedd": {
            "ollama_url": ollama.url,
            "openai_url": upstream.url + "/v1",
            "openai_key_file": "",
            "max_texts": 5,
        },
        "models": {"fast": "ollama/llama3.2"},
    }


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeOllama, FakeOpenAI]]:
    """One fake Ollama and one fake OpenAI-compatible server (keyed as OpenRouter) for the module."""
    with run_fake_ollama() as ollama, run_fake_openai() as upstream:
        yield ollama, upstream


@pytest.fixture(scope="module")
def served(
    fakes: tuple[FakeOllama, FakeOpenAI], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LakehouseProcess]:
    """`lakehouse serve` (all services in one process) for the module."""
    root = tmp_path_factory.mktemp("sdk")
    with serving(write_config(root / "lakehouse.toml", sections(*fakes, root)), env=ENV) as proc:
        yield proc


@pytest.fixture
def ollama(fakes: tuple[FakeOllama, FakeOpenAI]) -> FakeOllama:
    """The fake Ollama, its behaviours and records fresh."""
    fakes[0].reset()
    return fakes[0]


@pytest.fixture
def upstream(fakes: tuple[FakeOllama, FakeOpenAI]) -> FakeOpenAI:
    """The fake OpenAI-compatible server, its behaviours and records fresh."""
    fakes[1].reset()
    return fakes[1]


@pytest.fixture
def client(served: LakehouseProcess, ollama: FakeOllama, upstream: FakeOpenAI) -> Iterator[openai.OpenAI]:
    """The official SDK pointed at the lakehouse, without retries."""
    sdk = openai.OpenAI(base_url=served.url + "/v1", api_key="unused", max_retries=0, timeout=20)
    try:
        yield sdk
    finally:
        sdk.close()


def last_request(model: str, ollama: FakeOllama, upstream: FakeOpenAI) -> dict[str, Any]:
    """What the provider `model` routes to received last."""
    return ollama.requests[-1] if model == OLLAMA_MODEL else upstream.requests[-1]


@pytest.mark.parametrize("model", MODELS)
def test_a_tool_call_comes_back_and_its_result_goes_upstream(
    client: openai.OpenAI, model: str, ollama: FakeOllama, upstream: FakeOpenAI
) -> None:
    first = client.chat.completions.create(model=model, messages=ASK, tools=[WEATHER])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"query": "weather in Paris"}
    assert last_request(model, ollama, upstream)["tools"] == [WEATHER]

    messages: list[Any] = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
    ]
    second = client.chat.completions.create(model=model, messages=messages, tools=[WEATHER])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "tool said: sunny, 21C"
    sent = last_request(model, ollama, upstream)["messages"]
    if model == OLLAMA_MODEL:
        assert sent[1]["tool_calls"] == [
            {"function": {"name": "get_weather", "arguments": {"query": "weather in Paris"}}}
        ]
        assert sent[2] == {"role": "tool", "content": "sunny, 21C", "tool_name": "get_weather"}
    else:
        assert sent[1:] == messages[1:]


@pytest.mark.parametrize("model", MODELS)
def test_streamed_tool_calls_accumulate_in_the_sdk(
    client: openai.OpenAI, model: str, ollama: FakeOllama, upstream: FakeOpenAI
) -> None:
    chunks = list(client.chat.completions.create(model=model, messages=ASK, tools=[WEATHER], stream=True))
    assert any(c.choices and c.choices[0].delta.tool_calls for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    with_usage = list(
        client.chat.completions.create(
            model=model, messages=ASK, tools=[WEATHER], stream=True, stream_options={"include_usage": True}
        )
    )
    assert with_usage[-1].choices == [] and with_usage[-1].usage is not None
    assert with_usage[-1].usage.prompt_tokens == 3
    with client.chat.completions.stream(model=model, messages=ASK, tools=[WEATHER]) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert calls and len(calls) == 1
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"query": "weather in Paris"}
    assert final.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("model", MODELS)
def test_a_json_schema_reaches_the_provider(
    client: openai.OpenAI, model: str, ollama: FakeOllama, upstream: FakeOpenAI
) -> None:
    response_format: Any = {"type": "json_schema", "json_schema": {"name": "echo", "schema": SCHEMA}}
    answer = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "hi"}],
        response_format=response_format,
    )
    assert json.loads(answer.choices[0].message.content or "") == {"echo": "hi"}
    sent = last_request(model, ollama, upstream)
    if model == OLLAMA_MODEL:
        assert sent["format"] == SCHEMA
    else:
        assert sent["response_format"] == response_format


@pytest.mark.parametrize("model", MODELS)
def test_image_parts_reach_the_provider(
    client: openai.OpenAI, model: str, ollama: FakeOllama, upstream: FakeOpenAI
) -> None:
    content: Any = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
    ]
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}])
    sent = last_request(model, ollama, upstream)["messages"][0]
    if model == OLLAMA_MODEL:
        assert sent == {"role": "user", "content": "what is this", "images": [PNG]}
    else:
        assert sent == {"role": "user", "content": content}


def test_an_image_link_cannot_reach_ollama(client: openai.OpenAI, ollama: FakeOllama) -> None:
    content: Any = [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=OLLAMA_MODEL, messages=[{"role": "user", "content": content}])
    assert caught.value.code == "unsupported_parameter"
    assert ollama.requests == []


REFUSED: list[tuple[str, dict[str, Any]]] = [
    ("n", {"n": 2}),
    ("logprobs", {"logprobs": True}),
    ("top_logprobs", {"top_logprobs": 2}),
    ("logit_bias", {"logit_bias": {"50256": -100}}),
    ("modalities", {"modalities": ["text", "audio"]}),
    ("prediction", {"prediction": {"type": "content", "content": "x"}}),
    ("functions", {"functions": [WEATHER["function"]]}),
    ("stream_options.foo", {"extra_body": {"stream_options": {"foo": True}}}),
    ("service_tier", {"extra_body": {"service_tier": "flex"}}),
]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(("param", "options"), REFUSED, ids=[p for p, _ in REFUSED])
def test_what_cannot_be_honoured_is_400_unsupported_parameter(
    client: openai.OpenAI,
    model: str,
    param: str,
    options: dict[str, Any],
    ollama: FakeOllama,
    upstream: FakeOpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=model, messages=ASK, **options)
    assert caught.value.code == "unsupported_parameter"
    assert isinstance(caught.value.body, dict) and caught.value.body["param"] == param
    assert ollama.requests == [] and upstream.requests == []


def test_what_ollama_alone_cannot_honour_passes_to_openai_compatible_providers(
    client: openai.OpenAI, ollama: FakeOllama, upstream: FakeOpenAI
) -> None:
    options: dict[str, Any] = {"tool_choice": "required", "parallel_tool_calls": False}
    for key, value in options.items():
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model=OLLAMA_MODEL, messages=ASK, tools=[WEATHER], **{key: value})
        assert caught.value.code == "unsupported_parameter", key
    assert ollama.requests == []
    client.chat.completions.create(model=OR_MODEL, messages=ASK, tools=[WEATHER], **options)
    assert {k: upstream.requests[-1][k] for k in options} == options


def test_embeddings_as_floats_and_base64(client: openai.OpenAI, ollama: FakeOllama) -> None:
    texts = ["first text", "second text"]
    expected = np.array([fake_vector(t, 768) for t in texts], dtype=np.float32)
    floats = client.embeddings.create(model="nomic-embed-text", input=texts, encoding_format="float")
    assert floats.model == "nomic-embed-text" and floats.object == "list"
    assert [d.index for d in floats.data] == [0, 1]
    assert np.allclose(np.array([d.embedding for d in floats.data]), expected, atol=1e-6)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == 4

    # Without encoding_format the SDK asks for base64 (numpy is installed) and decodes it itself.
    default = client.embeddings.create(model="nomic-embed-text", input=texts)
    assert np.array_equal(np.array([d.embedding for d in default.data], dtype=np.float32), expected)

    raw = client.embeddings.create(model="nomic-embed-text", input="first text", encoding_format="base64")
    encoded = raw.data[0].embedding
    assert isinstance(encoded, str)
    assert np.array_equal(np.frombuffer(base64.b64decode(encoded), dtype="<f4"), expected[0])
    assert [r["input"] for r in ollama.requests] == [texts, texts, ["first text"]]


def test_embeddings_through_an_openai_compatible_server(client: openai.OpenAI, upstream: FakeOpenAI) -> None:
    answer = client.embeddings.create(model="openai/text-embedding-3-small", input="hello")
    assert answer.model == "openai/text-embedding-3-small"
    vector = np.array(answer.data[0].embedding, dtype=np.float32)
    assert np.array_equal(vector, np.array(fake_vector("hello", 1536), dtype=np.float32))
    assert upstream.requests[-1]["model"] == "text-embedding-3-small"


def test_embeddings_dimensions_only_when_the_model_has_them(client: openai.OpenAI) -> None:
    assert len(client.embeddings.create(model="nomic-embed-text", input="a", dimensions=768).data) == 1
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="nomic-embed-text", input="a", dimensions=256)
    assert caught.value.code == "unsupported_parameter"


def test_models_list_and_retrieve(client: openai.OpenAI, upstream: FakeOpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert ids[:2] == ["fast", "nomic-embed-text"]
    assert {OLLAMA_MODEL, "llama3.2", OR_MODEL, "openrouter/moonshot/kimi-k2"} <= set(ids)
    assert len(ids) == len(set(ids))
    model = client.models.retrieve(OLLAMA_MODEL)
    assert model.id == OLLAMA_MODEL and model.object == "model" and model.owned_by == "ollama"
    assert client.models.retrieve(OR_MODEL).owned_by == "openrouter"
    assert client.models.retrieve("fast").owned_by == "lakehouse"
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model:7b")
    assert caught.value.code == "not_found"


def test_a_provider_that_is_down_is_left_out_of_the_list(
    client: openai.OpenAI, served: LakehouseProcess, upstream: FakeOpenAI
) -> None:
    upstream.fail_status = 500
    ids = [m.id for m in client.models.list()]
    assert OLLAMA_MODEL in ids and not any(i.startswith("openrouter/") for i in ids)


def test_native_chat_takes_tools_and_answers_tool_calls(served: LakehouseProcess, ollama: FakeOllama) -> None:
    with served.client() as http:
        answer = http.post("/v1/chat", json={"model": OLLAMA_MODEL, "messages": ASK, "tools": [WEATHER]})
        assert answer.status_code == 200, answer.text
        calls = answer.json()["tool_calls"]
        assert [c["function"]["name"] for c in calls] == ["get_weather"]
        assert answer.json()["done_reason"] == "tool_calls"
        streamed = http.post(
            "/v1/chat", json={"model": OLLAMA_MODEL, "messages": ASK, "tools": [WEATHER], "stream": True}
        )
        last = json.loads(streamed.text.strip().splitlines()[-1])
        assert last["done"] and [c["function"]["name"] for c in last["tool_calls"]] == ["get_weather"]
    assert ollama.requests[-1]["tools"] == [WEATHER]


BAD_EMBEDDINGS: list[tuple[dict[str, Any], int, str]] = [
    ({"model": "nomic-embed-text", "input": []}, 400, "invalid_request"),
    ({"model": "nomic-embed-text", "input": ""}, 400, "invalid_request"),
    ({"model": "nomic-embed-text", "input": ["a", ""]}, 400, "invalid_request"),
    ({"model": "nomic-embed-text", "input": 7}, 400, "invalid_request"),
    ({"model": "nomic-embed-text", "input": ["a", 7]}, 400, "invalid_request"),
    ({"model": "nomic-embed-text", "input": [[1, 2], [3]]}, 400, "unsupported_parameter"),
    ({"model": "nomic-embed-text", "input": [1, 2, 3]}, 400, "unsupported_parameter"),
    ({"model": "nomic-embed-text", "input": ["t"] * 6}, 400, "invalid_request"),
    ({"model": "nomic-embed-text", "input": "a", "encoding_format": "int8"}, 400, "invalid_request"),
    ({"model": "nomic-embed-text", "input": "a", "truncate": True}, 400, "unsupported_parameter"),
    ({"input": "a", "model": 7}, 400, "invalid_request"),
    ({"model": "openrouter/x/y", "input": "a"}, 400, "invalid_request"),
]
BAD_CHATS: list[tuple[dict[str, Any], int, str]] = [
    ({"model": OLLAMA_MODEL, "messages": ASK, "tools": "get_weather"}, 400, "invalid_request"),
    ({"model": OLLAMA_MODEL, "messages": ASK, "tools": [{"type": "function"}]}, 400, "invalid_request"),
    (
        {"model": OLLAMA_MODEL, "messages": ASK, "tools": [{"type": "web_search"}]},
        400,
        "unsupported_parameter",
    ),
    ({"model": OLLAMA_MODEL, "messages": [{"role": "tool", "content": "x"}]}, 400, "invalid_request"),
    (
        {"model": OLLAMA_MODEL, "messages": ASK, "response_format": {"type": "xml"}},
        400,
        "unsupported_parameter",
    ),
    (
        {"model": OLLAMA_MODEL, "messages": ASK, "response_format": {"type": "json_schema"}},
        400,
        "invalid_request",
    ),
    ({"model": OLLAMA_MODEL, "messages": [{"role": "user", "content": 7}]}, 400, "invalid_request"),
    ({"model": "kimi/k2", "messages": ASK}, 404, "provider_not_registered"),
]


def test_bad_inputs_are_refused_before_any_provider(
    served: LakehouseProcess, ollama: FakeOllama, upstream: FakeOpenAI
) -> None:
    with served.client() as http:
        for body, status, code in BAD_EMBEDDINGS:
            answer = http.post("/v1/embeddings", json=body)
            assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), (body, answer.text)
        for body, status, code in BAD_CHATS:
            answer = http.post("/v1/chat/completions", json=body)
            assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), (body, answer.text)
        answer = http.get("/v1/models/nope")
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
        assert http.post("/v1/models").status_code == 405
    assert ollama.requests == [] and upstream.requests == []


def test_split_mode_routes_embeddings_and_models(
    fakes: tuple[FakeOllama, FakeOpenAI], tmp_path: Path
) -> None:
    ollama, upstream = fakes
    ollama.reset()
    upstream.reset()
    config = sections(ollama, upstream, tmp_path)
    config["embedd"]["openai_url"] = ""  # openai/<m> routes to a provider that is not registered
    cluster = LakehouseCluster("split", tmp_path, config=config, env=ENV, services=["embedd", "chatd"])
    try:
        cluster.start_all()
        sdk = openai.OpenAI(base_url=cluster.url + "/v1", api_key="unused", max_retries=0)
        with sdk:
            assert len(sdk.embeddings.create(model="nomic-embed-text", input=["a", "b"]).data) == 2
            assert OLLAMA_MODEL in [m.id for m in sdk.models.list()]
            assert sdk.models.retrieve(OR_MODEL).id == OR_MODEL
            answer = sdk.chat.completions.create(model=OLLAMA_MODEL, messages=ASK, tools=[WEATHER])
            assert answer.choices[0].finish_reason == "tool_calls"
            with pytest.raises(openai.NotFoundError) as caught:
                sdk.embeddings.create(model="openai/text-embedding-3-small", input="a")
            assert caught.value.code == "provider_not_registered"
        with httpx.Client(base_url=cluster.service("embedd").url) as direct:
            assert direct.post("/v1/embeddings", json={"input": "a"}).status_code == 200
        with httpx.Client(base_url=cluster.service("chatd").url) as direct:
            assert direct.get("/v1/models/fast").json()["tier_of"] == "ollama/llama3.2"
    finally:
        cluster.stop_all()
