"""Model-name routing and the chat provider registry: every rule, every error, listing, tiers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakehouse.config import ChatdConfig, Settings
from lakehouse.errors import InvalidRequest, ProviderNotRegistered, UnsupportedParameter
from lakehouse.providers.chat import CHAT_PROVIDERS, ChatRouter
from lakehouse.providers.openai_shape import to_chat_request
from lakehouse.providers.routing import PREFIXED, Route, resolve
from lakehouse.providers.types import ChatRequest, Message

ALL_KEYS = {
    "OLLAMA_API_KEY": "sk-cloud-secret",
    "OPENROUTER_API_KEY": "sk-or-secret",
    "OPENCODE_API_KEY": "sk-oc-secret",
    "KIMI_API_KEY": "sk-kimi-secret",
}


@pytest.mark.parametrize(
    ("name", "provider", "model"),
    [
        ("ollama/qwen3:4b", "ollama", "qwen3:4b"),
        ("ollama_cloud/gpt-oss:120b", "ollama_cloud", "gpt-oss:120b"),
        ("kimi-k2.6:cloud", "ollama_cloud", "kimi-k2.6"),
        ("openrouter/anthropic/claude-sonnet-4", "openrouter", "anthropic/claude-sonnet-4"),
        ("opencode/grok-code", "opencode", "grok-code"),
        ("kimi/kimi-for-coding", "kimi", "kimi-for-coding"),
        ("qwen3:4b", "ollama", "qwen3:4b"),
        ("unknown/qwen3:4b", "ollama", "unknown/qwen3:4b"),
        ("ollama/kimi-k2.6:cloud", "ollama", "kimi-k2.6:cloud"),
        (":cloud", "ollama", ":cloud"),
        ("ollama/", "ollama", "ollama/"),
    ],
)
def test_contract_routing_table(name: str, provider: str, model: str) -> None:
    assert resolve(name, prefixes=CHAT_PROVIDERS) == Route(provider, model)


def test_embedding_only_prefixes_are_plain_names_for_chat() -> None:
    assert resolve("openai/text-embedding-3-small") == Route("openai", "text-embedding-3-small")
    assert resolve("openai/gpt-4o", prefixes=CHAT_PROVIDERS) == Route("ollama", "openai/gpt-4o")
    assert resolve("local/minilm", prefixes=CHAT_PROVIDERS) == Route("ollama", "local/minilm")


def test_tier_names_resolve_before_routing() -> None:
    tiers = {"fast": "qwen3:4b", "smart": "openrouter/anthropic/claude-sonnet-4", "big": "kimi-k2.6:cloud"}
    assert resolve("fast", tiers) == Route("ollama", "qwen3:4b")
    assert resolve("smart", tiers) == Route("openrouter", "anthropic/claude-sonnet-4")
    assert resolve("big", tiers) == Route("ollama_cloud", "kimi-k2.6")
    assert resolve("qwen3:4b", tiers) == Route("ollama", "qwen3:4b")


model_part = st.text(st.characters(blacklist_characters="/", blacklist_categories=("Cs",)), min_size=1)


@given(prefix=st.sampled_from(PREFIXED), rest=st.text(min_size=1))
def test_a_known_prefix_is_stripped_and_nothing_else_changes(prefix: str, rest: str) -> None:
    assert resolve(f"{prefix}/{rest}") == Route(prefix, rest)


@given(name=st.text())
def test_any_name_routes_somewhere_and_keeps_its_model(name: str) -> None:
    route = resolve(name, prefixes=CHAT_PROVIDERS)
    assert route.provider in CHAT_PROVIDERS
    if route.provider == "ollama":
        # The default never rewrites a name, unless an explicit ollama/ prefix was stripped.
        assert name in (route.model, f"ollama/{route.model}")
    elif route.provider == "ollama_cloud":
        assert name in (f"{route.model}:cloud", f"ollama_cloud/{route.model}")
    else:
        assert name == f"{route.provider}/{route.model}"


@given(model=model_part.filter(lambda m: not m.endswith(":cloud")))
def test_cloud_suffix_goes_to_ollama_cloud_without_its_tag(model: str) -> None:
    assert resolve(f"{model}:cloud") == Route("ollama_cloud", model)


@given(tier=st.text(min_size=1), model=st.text(min_size=1))
def test_a_tier_routes_exactly_like_its_model(tier: str, model: str) -> None:
    assert resolve(tier, {tier: model}) == resolve(model)


def settings(**chatd: str) -> Settings:
    return Settings(chatd=ChatdConfig(**chatd))


def no_files() -> dict[str, str]:
    return {f"{p}_key_file": "" for p in ("ollama_cloud", "openrouter", "opencode", "kimi")}


def test_dev_mode_registers_only_local_ollama() -> None:
    router = ChatRouter(settings(**no_files()), environ={})
    assert router.listing() == {"default": "ollama", "providers": [{"name": "ollama", "kind": "ollama"}]}


def test_every_provider_registers_when_its_key_resolves() -> None:
    router = ChatRouter(settings(**no_files()), environ=ALL_KEYS)
    assert router.listing()["providers"] == [
        {"name": "ollama", "kind": "ollama"},
        {"name": "ollama_cloud", "kind": "ollama_cloud"},
        {"name": "openrouter", "kind": "openai_compat"},
        {"name": "opencode", "kind": "openai_compat"},
        {"name": "kimi", "kind": "openai_compat"},
    ]


def test_keys_never_appear_in_the_listing_or_reprs() -> None:
    router = ChatRouter(settings(**no_files()), environ=ALL_KEYS)
    shown = repr(router.listing()) + "".join(repr(p) for p in router.providers.values())
    for key in ALL_KEYS.values():
        assert key not in shown


def test_key_env_names_and_env_files_come_from_config(tmp_path: Path) -> None:
    env_file = tmp_path / "kimi.env"
    env_file.write_text("export MY_KIMI='sk-from-file'\n")
    config = {**no_files(), "kimi_key_env": "MY_KIMI", "kimi_key_file": str(env_file)}
    router = ChatRouter(settings(**config), environ={"KIMI_API_KEY": "ignored"})
    assert [p["name"] for p in router.listing()["providers"]] == ["ollama", "kimi"]


def test_empty_ollama_url_leaves_local_ollama_unregistered() -> None:
    router = ChatRouter(settings(ollama_url="", **no_files()), environ={"KIMI_API_KEY": "k"})
    assert [p["name"] for p in router.listing()["providers"]] == ["kimi"]
    with pytest.raises(ProviderNotRegistered) as caught:
        router.route("qwen3:4b")
    assert caught.value.status == 404
    assert "ollama_url" in caught.value.message


@pytest.mark.parametrize(
    ("name", "provider"),
    [
        ("kimi-k2.6:cloud", "ollama_cloud"),
        ("ollama_cloud/gpt-oss:120b", "ollama_cloud"),
        ("openrouter/anthropic/claude-sonnet-4", "openrouter"),
        ("opencode/grok-code", "opencode"),
        ("kimi/kimi-for-coding", "kimi"),
    ],
)
def test_a_name_for_an_unregistered_provider_is_404_never_the_default(name: str, provider: str) -> None:
    router = ChatRouter(settings(**no_files()), environ={})
    with pytest.raises(ProviderNotRegistered) as caught:
        router.route(name)
    err = caught.value
    assert (err.status, err.code) == (404, "provider_not_registered")
    assert err.detail["provider"] == provider
    assert err.detail["registered"] == ["ollama"]


def test_route_gives_the_registered_provider_and_upstream_model() -> None:
    router = ChatRouter(settings(**no_files()), environ=ALL_KEYS)
    provider, route = router.route("openrouter/anthropic/claude-sonnet-4")
    assert (provider.name, route.model) == ("openrouter", "anthropic/claude-sonnet-4")
    router.tiers["judge"] = "kimi/kimi-for-coding"
    provider, route = router.route("judge")
    assert (provider.name, route.model) == ("kimi", "kimi-for-coding")


@pytest.mark.parametrize(
    "request_",
    [
        ChatRequest("", (Message("user", "hi"),)),
        ChatRequest("   ", (Message("user", "hi"),)),
        ChatRequest("qwen3:4b", ()),
        ChatRequest("qwen3:4b", (Message("", "hi"),)),
    ],
)
async def test_missing_model_or_messages_is_invalid(request_: ChatRequest) -> None:
    router = ChatRouter(settings(**no_files()), environ={})
    with pytest.raises(InvalidRequest):
        await router.chat(request_)
    with pytest.raises(InvalidRequest):
        router.stream(request_)
    await router.close()


# --- the OpenAI Chat Completions body: what is honoured, what is refused -------------------------

BASE: dict[str, Any] = {"model": "qwen3:4b", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 1}, "top_logprobs"),
        ({"logit_bias": {"1": 2}}, "logit_bias"),
        ({"audio": {"voice": "x"}}, "audio"),
        ({"modalities": ["audio"]}, "modalities"),
        ({"prediction": {"type": "content"}}, "prediction"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"function_call": "auto"}, "function_call"),
        ({"stream_options": {"include_obfuscation": True}}, "stream_options.include_obfuscation"),
        ({"store": True}, "store"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"tools": [{"type": "code_interpreter"}]}, "tools.0"),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "messages.0.content"),
        ({"messages": [{"role": "user", "content": "hi", "audio": {"id": "a"}}]}, "messages.0.audio"),
    ],
)
def test_what_no_provider_can_honour_is_refused_by_name(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(UnsupportedParameter) as caught:
        to_chat_request({**BASE, **extra})
    assert caught.value.detail["param"] == param
    assert param in caught.value.message


def test_what_is_honoured_reaches_the_request() -> None:
    schema = {"type": "object"}
    tools = [{"type": "function", "function": {"name": "f"}}]
    request = to_chat_request(
        {
            **BASE,
            "messages": [
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            ],
            "n": 1,
            "logprobs": False,
            "logit_bias": None,
            "modalities": ["text"],
            "stream_options": {"include_usage": True},
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}},
            "tools": tools,
            "tool_choice": "auto",
            "top_p": 0.5,
            "stop": ["x"],
            "max_completion_tokens": 9,
            "user": "u1",
        }
    )
    assert request.messages == (Message("system", "be brief"), Message("user", "a\nb"))
    assert request.format == schema and request.tools == tuple(tools) and request.tool_choice == "auto"
    assert request.options == {"top_p": 0.5, "stop": ["x"]} and request.max_tokens == 9
    assert request.openai is not None and "stream_options" not in request.openai
    assert request.openai["user"] == "u1"
    assert to_chat_request({**BASE, "response_format": {"type": "json_object"}}).format == "json"
    assert to_chat_request({**BASE, "response_format": {"type": "text"}}).format is None


def test_tool_turns_and_images_parse() -> None:
    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    request = to_chat_request(
        {
            **BASE,
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "see"}, image]},
                {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None},
                {"role": "tool", "tool_call_id": "c1", "content": "done"},
            ],
        }
    )
    assert request.messages[0].images == ("data:image/png;base64,AAAA",)
    assert request.messages[1].tool_calls == (call,)
    assert request.messages[2].tool_call_id == "c1"


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "tool", "content": "x"}],
        [{"role": "user"}],
        [{"role": "user", "content": 7}],
        [{"role": "user", "content": [{"type": "text"}]}],
        [{"role": "assistant", "content": None, "tool_calls": [{"function": {}}]}],
        [{"role": "", "content": "x"}],
        ["hi"],
    ],
)
def test_malformed_messages_are_invalid_request(messages: list[Any]) -> None:
    with pytest.raises(InvalidRequest) as caught:
        to_chat_request({**BASE, "messages": messages})
    assert caught.value.code == "invalid_request"
