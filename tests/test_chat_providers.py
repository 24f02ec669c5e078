"""Chat providers against fake upstreams that are real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lakehouse.config import ChatdConfig, Settings
from lakehouse.errors import (
    LakehouseError,
    NotFound,
    ProviderUnavailable,
    RateLimited,
    UnsupportedParameter,
    UpstreamError,
    UpstreamTimeout,
)
from lakehouse.providers.chat import ChatRouter
from lakehouse.providers.keys import resolve_key
from lakehouse.providers.models import find_model, list_models
from lakehouse.providers.ollama_cloud import flatten_messages
from lakehouse.providers.transport import Upstream
from lakehouse.providers.types import ChatRequest, ChatResponse, Chunk, Message
from tests.fakes.ollama import FakeOllama, run_fake_ollama
from tests.fakes.openai import FakeOpenAI, run_fake_openai
from tests.support.procs import closed_url


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("KIMI_API_KEY=sk-plain", "sk-plain"),
        ('KIMI_API_KEY="sk-double quoted"', "sk-double quoted"),
        ("KIMI_API_KEY='sk-single'", "sk-single"),
        ("export KIMI_API_KEY=sk-exported", "sk-exported"),
        ("KIMI_API_KEY=sk-commented # the coding plan", "sk-commented"),
        ("# KIMI_API_KEY=sk-disabled", None),
        ("KIMI_API_KEY=", None),
    ],
)
def test_key_from_env_file(tmp_path: Path, line: str, expected: str | None) -> None:
    env_file = tmp_path / "kimi.env"
    env_file.write_text(f"# keys for kimi\nOTHER=1\n\n{line}\n")
    assert resolve_key("KIMI_API_KEY", env_file, environ={}) == expected


def test_environment_wins_over_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / "kimi.env"
    env_file.write_text("KIMI_API_KEY=from-file\n")
    assert resolve_key("KIMI_API_KEY", env_file, environ={"KIMI_API_KEY": "from-env"}) == "from-env"
    assert resolve_key("KIMI_API_KEY", env_file, environ={"KIMI_API_KEY": ""}) == "from-file"


def test_missing_or_unreadable_env_file_means_no_key(tmp_path: Path) -> None:
    assert resolve_key("KIMI_API_KEY", tmp_path / "absent.env", environ={}) is None
    assert resolve_key("KIMI_API_KEY", tmp_path, environ={}) is None
    assert resolve_key("KIMI_API_KEY", "", environ={}) is None
    binary = tmp_path / "binary.env"
    binary.write_bytes(b"\xff\xfe\x00KIMI")
    assert resolve_key("KIMI_API_KEY", binary, environ={}) is None


# --- providers against the fakes -------------------------------------------------------------

KEYS = {"OLLAMA_API_KEY": "sk-cloud-123", "OPENROUTER_API_KEY": "sk-or-123", "KIMI_API_KEY": "sk-kimi-123"}
KEYS["OPENCODE_API_KEY"] = "sk-oc-123"
HELLO = (Message("system", "You are terse."), Message("user", "say hello"))


@pytest.fixture
def ollama() -> Iterator[FakeOllama]:
    with run_fake_ollama() as fake:
        yield fake


@pytest.fixture
def openai() -> Iterator[FakeOpenAI]:
    with run_fake_openai() as fake:
        yield fake


def make_router(
    ollama: FakeOllama | None = None,
    openai: FakeOpenAI | None = None,
    environ: dict[str, str] | None = None,
    **chatd: Any,
) -> ChatRouter:
    config: dict[str, Any] = {f"{p}_key_file": "" for p in ("ollama_cloud", "openrouter", "opencode", "kimi")}
    if ollama is not None:
        config.update(ollama_url=ollama.url, ollama_cloud_url=ollama.url)
    if openai is not None:
        config.update({f"{p}_url": openai.url + "/v1" for p in ("openrouter", "opencode", "kimi")})
    config.update(chatd)
    return ChatRouter(Settings(chatd=ChatdConfig(**config)), environ=KEYS if environ is None else environ)


async def ask(router: ChatRouter, model: str, **options: Any) -> ChatResponse:
    try:
        return await router.chat(ChatRequest(model, HELLO, **options))
    finally:
        await router.close()


async def ask_streamed(router: ChatRouter, model: str, **options: Any) -> tuple[list[Chunk], list[float]]:
    chunks: list[Chunk] = []
    arrivals: list[float] = []
    try:
        async for chunk in router.stream(ChatRequest(model, HELLO, **options)):
            chunks.append(chunk)
            arrivals.append(time.perf_counter())
    finally:
        await router.close()
    return chunks, arrivals


async def test_ollama_answers_with_content_tokens_and_latency(ollama: FakeOllama) -> None:
    answer = await ask(make_router(ollama), "qwen3:4b")
    assert (answer.model, answer.provider, answer.content) == ("qwen3:4b", "ollama", "echo: say hello")
    assert (answer.done_reason, answer.input_tokens, answer.output_tokens) == ("stop", 5, 3)
    assert answer.latency_ms > 0
    sent = ollama.requests[-1]
    assert ollama.paths == ["/api/chat"]
    assert sent["stream"] is False and sent["think"] is False
    assert sent["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "say hello"},
    ]
    assert "format" not in sent and "options" not in sent


async def test_ollama_prefix_is_stripped_and_options_pass_through(ollama: FakeOllama) -> None:
    answer = await ask(make_router(ollama), "ollama/qwen3:4b", max_tokens=10, temperature=0.2, think=True)
    assert answer.model == "ollama/qwen3:4b" and answer.upstream_model == "qwen3:4b"
    sent = ollama.requests[-1]
    assert sent["model"] == "qwen3:4b" and sent["think"] is True
    assert sent["options"] == {"num_predict": 10, "temperature": 0.2}


async def test_ollama_format_json_passes_through(ollama: FakeOllama) -> None:
    answer = await ask(make_router(ollama), "qwen3:4b", format="json")
    assert ollama.requests[-1]["format"] == "json"
    assert json.loads(answer.content) == {"echo": "say hello"}


async def test_a_tier_name_reaches_upstream_as_its_model(ollama: FakeOllama) -> None:
    router = make_router(ollama)
    router.tiers["fast"] = "ollama/llama3.2"
    answer = await ask(router, "fast")
    assert (answer.model, answer.provider, ollama.requests[-1]["model"]) == ("fast", "ollama", "llama3.2")


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [(500, UpstreamError, "upstream_error"), (503, UpstreamError, "upstream_error")],
)
async def test_ollama_errors_become_502_with_the_upstream_status(
    ollama: FakeOllama, status: int, error: type[LakehouseError], code: str
) -> None:
    ollama.fail_status = status
    with pytest.raises(error) as caught:
        await ask(make_router(ollama), "qwen3:4b")
    assert (caught.value.status, caught.value.code) == (502, code)
    assert caught.value.detail["upstream_status"] == status
    assert "llama runner process has terminated" in caught.value.message


async def test_an_unknown_model_upstream_is_502_and_the_name_goes_unchanged(ollama: FakeOllama) -> None:
    with pytest.raises(UpstreamError) as caught:
        await ask(make_router(ollama), "unknown/qwen3:4b")
    assert caught.value.detail["upstream_status"] == 404
    assert ollama.requests[-1]["model"] == "unknown/qwen3:4b"


async def test_ollama_429_is_rate_limited_with_retry_after(ollama: FakeOllama) -> None:
    ollama.fail_status = 429
    with pytest.raises(RateLimited) as caught:
        await ask(make_router(ollama), "qwen3:4b")
    assert caught.value.status == 429
    assert caught.value.headers == {"Retry-After": "7"}


async def test_an_unreadable_answer_is_502(ollama: FakeOllama) -> None:
    ollama.garbage = True
    with pytest.raises(UpstreamError) as caught:
        await ask(make_router(ollama), "qwen3:4b")
    assert caught.value.detail["upstream_status"] == 200
    with pytest.raises(UpstreamError):
        await ask_streamed(make_router(ollama), "qwen3:4b")


async def test_past_the_timeout_is_504(ollama: FakeOllama) -> None:
    ollama.delay = 1.0  # the upstream would answer after 1 s: a 504 means the 0.2 s timeout gave up first
    with pytest.raises(UpstreamTimeout) as caught:
        await ask(make_router(ollama, timeout_secs=0.2), "qwen3:4b")
    assert caught.value.status == 504


async def test_connection_refused_is_503_with_how_to_start_ollama() -> None:
    router = make_router(ollama_url=closed_url())
    with pytest.raises(ProviderUnavailable) as caught:
        await ask(router, "qwen3:4b")
    assert caught.value.status == 503
    assert "ollama serve" in caught.value.message
    with pytest.raises(ProviderUnavailable):
        await ask_streamed(router, "qwen3:4b")


async def test_ollama_streams_pieces_as_they_come(ollama: FakeOllama) -> None:
    ollama.reply = "one two three four"
    ollama.chunk_delay = 0.1
    chunks, arrivals = await ask_streamed(make_router(ollama), "qwen3:4b")
    assert ollama.requests[-1]["stream"] is True and ollama.requests[-1]["think"] is False
    assert "".join(c.content for c in chunks) == "one two three four"
    assert [c.done for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert (chunks[-1].done_reason, chunks[-1].input_tokens, chunks[-1].output_tokens) == ("stop", 5, 4)
    # Pieces arrive as the upstream sends them, not all at once at the end.
    assert arrivals[-1] - arrivals[0] >= 0.25


async def test_a_streamed_upstream_error_surfaces_before_any_chunk(ollama: FakeOllama) -> None:
    ollama.fail_status = 429
    with pytest.raises(RateLimited):
        await ask_streamed(make_router(ollama), "qwen3:4b")


def test_flattened_messages_keep_system_and_roles_legible() -> None:
    prompt = flatten_messages(
        [
            Message("system", "Be brief."),
            Message("user", "hi"),
            Message("assistant", "hello"),
            Message("user", "bye"),
        ]
    )
    assert prompt == "System: Be brief.\n\nUser: hi\n\nAssistant: hello\n\nUser: bye\n\nAssistant:"


async def test_ollama_cloud_uses_generate_with_bearer_and_a_flat_prompt(ollama: FakeOllama) -> None:
    ollama.key = KEYS["OLLAMA_API_KEY"]
    answer = await ask(make_router(ollama), "kimi-k2.6:cloud", format="json")
    assert (answer.provider, answer.upstream_model) == ("ollama_cloud", "kimi-k2.6")
    assert ollama.paths == ["/api/generate"]
    assert ollama.auth == ["Bearer sk-cloud-123"]
    sent = ollama.requests[-1]
    assert sent["model"] == "kimi-k2.6" and sent["stream"] is False and sent["think"] is False
    assert sent["prompt"] == "System: You are terse.\n\nUser: say hello\n\nAssistant:"
    assert sent["format"] == "json"
    assert answer.input_tokens > 0 and answer.output_tokens > 0


async def test_ollama_cloud_key_from_the_env_file_fallback(ollama: FakeOllama, tmp_path: Path) -> None:
    ollama.key = "sk-from-file"
    env_file = tmp_path / "ollama_cloud.env"
    env_file.write_text('OLLAMA_API_KEY="sk-from-file"\n')
    router = make_router(ollama, environ={}, ollama_cloud_key_file=str(env_file))
    answer = await ask(router, "ollama_cloud/gpt-oss:120b")
    assert answer.content == "echo: " + flatten_messages(HELLO)
    assert ollama.auth == ["Bearer sk-from-file"]


async def test_ollama_cloud_rejected_key_is_502_without_the_key(ollama: FakeOllama) -> None:
    ollama.key = "the-right-key"
    with pytest.raises(UpstreamError) as caught:
        await ask(make_router(ollama), "gpt-oss:120b:cloud")
    assert caught.value.detail["upstream_status"] == 401
    assert KEYS["OLLAMA_API_KEY"] not in repr(caught.value.body())


async def test_ollama_cloud_streams(ollama: FakeOllama) -> None:
    chunks, _ = await ask_streamed(make_router(ollama), "gpt-oss:120b:cloud")
    assert ollama.paths == ["/api/generate"] and ollama.requests[-1]["stream"] is True
    assert "".join(c.content for c in chunks) == "echo: " + flatten_messages(HELLO)
    assert chunks[-1].done and chunks[-1].output_tokens > 0


@pytest.mark.parametrize(
    ("model", "provider", "upstream", "key"),
    [
        ("openrouter/anthropic/claude-sonnet-4", "openrouter", "anthropic/claude-sonnet-4", "sk-or-123"),
        ("opencode/grok-code", "opencode", "grok-code", "sk-oc-123"),
        ("kimi/kimi-for-coding", "kimi", "kimi-for-coding", "sk-kimi-123"),
    ],
)
async def test_openai_compatible_providers_share_one_client(
    openai: FakeOpenAI, model: str, provider: str, upstream: str, key: str
) -> None:
    answer = await ask(make_router(openai=openai), model, max_tokens=20, temperature=0.5)
    assert (answer.provider, answer.content, answer.done_reason) == (provider, "echo: say hello", "stop")
    assert (answer.input_tokens, answer.output_tokens) == (5, 3)
    assert openai.auth == [f"Bearer {key}"]
    sent = openai.requests[-1]
    assert sent["model"] == upstream and sent["stream"] is False
    assert (sent["max_tokens"], sent["temperature"]) == (20, 0.5)
    assert "response_format" not in sent


async def test_openai_compatible_format_json_is_response_format(openai: FakeOpenAI) -> None:
    answer = await ask(make_router(openai=openai), "kimi/kimi-for-coding", format="json")
    assert openai.requests[-1]["response_format"] == {"type": "json_object"}
    assert json.loads(answer.content) == {"echo": "say hello"}


async def test_openai_compatible_429_is_rate_limited_with_retry_after(openai: FakeOpenAI) -> None:
    openai.fail_status = 429
    with pytest.raises(RateLimited) as caught:
        await ask(make_router(openai=openai), "opencode/grok-code")
    assert caught.value.headers == {"Retry-After": "7"}
    assert caught.value.body()["error"]["retry_after"] == "7"


async def test_openai_compatible_500_is_502(openai: FakeOpenAI) -> None:
    openai.fail_status = 500
    with pytest.raises(UpstreamError) as caught:
        await ask(make_router(openai=openai), "opencode/grok-code")
    assert caught.value.detail["upstream_status"] == 500


async def test_zero_choices_is_502_never_an_empty_answer(openai: FakeOpenAI) -> None:
    openai.zero_choices = True
    with pytest.raises(UpstreamError) as caught:
        await ask(make_router(openai=openai), "openrouter/a/b")
    assert "no choices" in caught.value.message
    with pytest.raises(UpstreamError):
        await ask_streamed(make_router(openai=openai), "openrouter/a/b")


async def test_openai_compatible_timeout_is_504(openai: FakeOpenAI) -> None:
    openai.delay = 1.0
    with pytest.raises(UpstreamTimeout):
        await ask(make_router(openai=openai, timeout_secs=0.2), "kimi/kimi-for-coding")


async def test_openai_compatible_streams_sse_with_usage(openai: FakeOpenAI) -> None:
    openai.reply = "alpha beta gamma"
    openai.chunk_delay = 0.1
    chunks, arrivals = await ask_streamed(make_router(openai=openai), "openrouter/a/b")
    sent = openai.requests[-1]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert "".join(c.content for c in chunks) == "alpha beta gamma"
    assert (chunks[-1].done_reason, chunks[-1].input_tokens, chunks[-1].output_tokens) == ("stop", 5, 3)
    assert arrivals[-1] - arrivals[0] >= 0.15


def test_upstream_text_is_scrubbed_of_the_key() -> None:
    upstream = Upstream("kimi", "http://127.0.0.1:1", secret="sk-kimi-123")
    assert "sk-kimi-123" not in upstream.scrub("Incorrect API key provided: sk-kimi-123.")
    assert "sk-kimi-123" not in repr(upstream)


# --- tools, schemas, images, model lists ---------------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}


async def test_ollama_tool_calls_come_back_in_openai_shape(ollama: FakeOllama) -> None:
    answer = await ask(make_router(ollama), "qwen3:4b", tools=(WEATHER,))
    assert ollama.requests[-1]["tools"] == [WEATHER]
    assert answer.done_reason == "tool_calls"
    (call,) = answer.tool_calls
    assert call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"] == {"name": "get_weather", "arguments": '{"query": "say hello"}'}


async def test_ollama_tool_turns_are_translated(ollama: FakeOllama) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"c": "Paris"}'},
    }
    turns = (
        Message("user", "weather?"),
        Message("assistant", "", tool_calls=(call,)),
        Message("tool", "sunny", tool_call_id="call_1"),
    )
    router = make_router(ollama)
    try:
        answer = await router.chat(ChatRequest("qwen3:4b", turns, tools=(WEATHER,)))
    finally:
        await router.close()
    sent = ollama.requests[-1]["messages"]
    assert sent[1]["tool_calls"] == [{"function": {"name": "get_weather", "arguments": {"c": "Paris"}}}]
    assert sent[2] == {"role": "tool", "content": "sunny", "tool_name": "get_weather"}
    assert answer.content == "tool said: sunny" and answer.tool_calls == ()


async def test_ollama_streamed_tool_calls_are_indexed_deltas(ollama: FakeOllama) -> None:
    router = make_router(ollama)
    try:
        stream = router.stream(ChatRequest("qwen3:4b", HELLO, tools=(WEATHER,)))
        chunks = [chunk async for chunk in stream]
    finally:
        await router.close()
    deltas = [d for c in chunks for d in c.tool_calls]
    assert [d["index"] for d in deltas] == [0] and deltas[0]["function"]["name"] == "get_weather"
    assert chunks[-1].done_reason == "tool_calls"
    assert [c["function"]["name"] for c in stream.response().tool_calls] == ["get_weather"]


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tool_choice": {"type": "function", "function": {"name": "get_weather"}}}, "tool_choice"),
        ({"parallel_tool_calls": False}, "parallel_tool_calls"),
        ({"options": {"logit_bias": {}}}, "logit_bias"),
    ],
)
async def test_what_ollama_cannot_honour_is_unsupported_parameter(
    ollama: FakeOllama, options: dict[str, Any], param: str
) -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        await ask(make_router(ollama), "qwen3:4b", tools=(WEATHER,), **options)
    assert caught.value.detail["param"] == param
    assert ollama.requests == []


async def test_ollama_gets_schema_format_sampling_options_and_images(ollama: FakeOllama) -> None:
    schema = {"type": "object", "properties": {"echo": {"type": "string"}}}
    turns = (Message("user", "look", images=("data:image/png;base64,AAAA",)),)
    router = make_router(ollama)
    try:
        await router.chat(ChatRequest("qwen3:4b", turns, format=schema, options={"stop": "END", "seed": 3}))
    finally:
        await router.close()
    sent = ollama.requests[-1]
    assert sent["format"] == schema
    assert sent["options"] == {"stop": ["END"], "seed": 3}
    assert sent["messages"] == [{"role": "user", "content": "look", "images": ["AAAA"]}]


async def test_ollama_cloud_takes_tools_through_api_chat(ollama: FakeOllama) -> None:
    answer = await ask(make_router(ollama), "ollama_cloud/gpt-oss:120b", tools=(WEATHER,))
    assert ollama.paths == ["/api/chat"] and ollama.auth == ["Bearer sk-cloud-123"]
    assert answer.tool_calls[0]["function"]["name"] == "get_weather"


async def test_openai_compatible_tools_from_the_native_route(openai: FakeOpenAI) -> None:
    call = {"id": "call_9", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
    turns = (
        *HELLO,
        Message("assistant", "", tool_calls=(call,)),
        Message("tool", "rain", tool_call_id="call_9"),
    )
    router = make_router(openai=openai)
    try:
        first = await router.chat(ChatRequest("openrouter/v/m", HELLO, tools=(WEATHER,), tool_choice="auto"))
        second = await router.chat(ChatRequest("openrouter/v/m", turns, tools=(WEATHER,)))
    finally:
        await router.close()
    assert first.done_reason == "tool_calls" and first.tool_calls[0]["id"] == "call_fake1"
    assert openai.requests[0]["tools"] == [WEATHER] and openai.requests[0]["tool_choice"] == "auto"
    assert openai.requests[1]["messages"][-2:] == [
        {"role": "assistant", "content": "", "tool_calls": [call]},
        {"role": "tool", "content": "rain", "tool_call_id": "call_9"},
    ]
    assert second.content == "tool said: rain"


async def test_openai_compatible_streamed_tool_call_deltas_merge(openai: FakeOpenAI) -> None:
    router = make_router(openai=openai)
    try:
        stream = router.stream(ChatRequest("openrouter/v/m", HELLO, tools=(WEATHER,)))
        chunks = [chunk async for chunk in stream]
    finally:
        await router.close()
    assert sum(1 for c in chunks if c.tool_calls) == 3
    assert chunks[-1].done_reason == "tool_calls"
    (call,) = stream.response().tool_calls
    assert call["id"] == "call_fake1" and json.loads(call["function"]["arguments"]) == {"query": "say hello"}


async def test_model_list_leaves_out_a_provider_that_is_down(ollama: FakeOllama, openai: FakeOpenAI) -> None:
    router = make_router(ollama, openai)
    settings = Settings(models={"fast": "qwen3:4b"})
    try:
        ids = [m["id"] for m in await list_models(router, settings)]
        assert ids[:2] == ["fast", "nomic-embed-text"]
        assert {
            "qwen3:4b",
            "ollama_cloud/qwen3:4b",
            "openrouter/meta/llama-3.1-8b",
            "kimi/moonshot/kimi-k2",
        } <= set(ids)
        openai.fail_status = 500
        ids = [m["id"] for m in await list_models(router, settings)]
        assert "qwen3:4b" in ids and not any(i.startswith(("openrouter/", "kimi/", "opencode/")) for i in ids)
        assert (await find_model(router, settings, "qwen3:4b"))["owned_by"] == "ollama"
        with pytest.raises(NotFound):
            await find_model(router, settings, "openrouter/meta/llama-3.1-8b")
    finally:
        await router.close()
