"""chatd end to end: a real `lakehouse serve` process in front of fake Ollama and OpenAI servers."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.conftest import StartLakehouse
from tests.fakes.ollama import FakeOllama, run_fake_ollama
from tests.fakes.openai import FakeOpenAI, run_fake_openai
from tests.support.procs import LAKEHOUSE, LakehouseProcess, closed_url, serving, write_config

NO_KEY_FILES = {f"{p}_key_file": "" for p in ("ollama_cloud", "openrouter", "opencode", "kimi")}
NO_KEYS = {name: "" for name in ("OLLAMA_API_KEY", "OPENROUTER_API_KEY", "OPENCODE_API_KEY", "KIMI_API_KEY")}
OR_KEY = "sk-or-e2e-secret"
HELLO = [{"role": "user", "content": "say hello"}]


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeOllama, FakeOpenAI]]:
    """One fake Ollama and one fake OpenRouter for the module."""
    with run_fake_ollama() as ollama, run_fake_openai(key=OR_KEY) as upstream:
        yield ollama, upstream


@pytest.fixture
def ollama(fakes: tuple[FakeOllama, FakeOpenAI]) -> FakeOllama:
    """The module's fake Ollama, with fresh behaviours."""
    fakes[0].reset()
    return fakes[0]


@pytest.fixture
def upstream_openai(fakes: tuple[FakeOllama, FakeOpenAI]) -> FakeOpenAI:
    """The module's fake OpenRouter, with fresh behaviours."""
    fakes[1].reset()
    return fakes[1]


@pytest.fixture(scope="module")
def shared_lakehouse(
    fakes: tuple[FakeOllama, FakeOpenAI], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LakehouseProcess]:
    """All services in one process for the module: local Ollama and OpenRouter registered, 1 s timeout."""
    ollama, upstream = fakes
    root = tmp_path_factory.mktemp("chat")
    chatd = {
        **NO_KEY_FILES,
        "ollama_url": ollama.url,
        "openrouter_url": upstream.url + "/v1",
        "timeout_secs": 1.0,
    }
    sections = {
        "storage": {"root": str(root / "data")},
        "chatd": chatd,
        "models": {"fast": "ollama/llama3.2"},
    }
    config = write_config(root / "lakehouse.toml", sections)
    with serving(config, env={**NO_KEYS, "OPENROUTER_API_KEY": OR_KEY}) as proc:
        yield proc


@pytest.fixture
def lakehouse(
    shared_lakehouse: LakehouseProcess, ollama: FakeOllama, upstream_openai: FakeOpenAI
) -> LakehouseProcess:
    """The module's lakehouse, its fakes reset."""
    return shared_lakehouse


def test_chatd_smoke(start_lakehouse: StartLakehouse, ollama: FakeOllama) -> None:
    """The seed's six chatd_smoke cases, in dev mode (local Ollama only)."""
    proc = start_lakehouse(config={"chatd": {**NO_KEY_FILES, "ollama_url": ollama.url}}, env=NO_KEYS)
    with proc.client() as client:
        # 1. the providers listed are exactly the registered ones
        listed = client.get("/v1/chat/providers")
        assert listed.status_code == 200
        assert listed.json() == {"default": "ollama", "providers": [{"name": "ollama", "kind": "ollama"}]}

        # 2. a bare model goes to Ollama: content, token counts, latency
        answer = client.post("/v1/chat", json={"model": "qwen3:4b", "messages": HELLO})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["provider"] == "ollama" and body["model"] == "qwen3:4b"
        assert body["content"] == "echo: say hello" and body["done_reason"] == "stop"
        assert body["input_tokens"] == 2 and body["output_tokens"] == 3 and body["latency_ms"] > 0
        assert ollama.requests[-1]["think"] is False and ollama.requests[-1]["stream"] is False

        # 3. ollama/<m> reaches the upstream without its prefix
        answer = client.post("/v1/chat", json={"model": "ollama/qwen3:4b", "messages": HELLO})
        assert answer.status_code == 200 and ollama.requests[-1]["model"] == "qwen3:4b"

        # 4. <m>:cloud without Ollama Cloud registered is 404, not a fall-through
        sent = len(ollama.requests)
        answer = client.post("/v1/chat", json={"model": "kimi-k2.6:cloud", "messages": HELLO})
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "provider_not_registered"
        assert len(ollama.requests) == sent

        # 5. unknown/<m> goes to the default unchanged; the upstream's 404 becomes 502
        answer = client.post("/v1/chat", json={"model": "unknown/qwen3:4b", "messages": HELLO})
        assert answer.status_code == 502
        assert answer.json()["error"]["code"] == "upstream_error"
        assert answer.json()["error"]["upstream_status"] == 404
        assert ollama.requests[-1]["model"] == "unknown/qwen3:4b"

        # 6. a missing model is 400
        answer = client.post("/v1/chat", json={"messages": HELLO})
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_request"


BAD_BODIES: list[dict[str, Any]] = [
    {"messages": HELLO},
    {"model": "", "messages": HELLO},
    {"model": "qwen3:4b"},
    {"model": "qwen3:4b", "messages": []},
    {"model": "qwen3:4b", "messages": [{"role": "user"}]},
    {"model": "qwen3:4b", "messages": [{"role": "", "content": "hi"}]},
    {"model": "qwen3:4b", "messages": "hi"},
    {"model": "qwen3:4b", "messages": HELLO, "format": "yaml"},
    {"model": "qwen3:4b", "messages": HELLO, "max_tokens": 0},
    {"model": 7, "messages": HELLO},
]


def test_bad_chat_requests_are_400_and_reach_no_provider(
    lakehouse: LakehouseProcess, ollama: FakeOllama
) -> None:
    with lakehouse.client() as client:
        for body in BAD_BODIES:
            for path in ("/v1/chat", "/v1/chat/completions"):
                answer = client.post(path, json=body)
                assert answer.status_code == 400, (path, body, answer.text)
                # OpenAI's request has no `format` field: refused by name, never ignored
                unknown = path.endswith("completions") and "format" in body
                expected = "unsupported_parameter" if unknown else "invalid_request"
                assert answer.json()["error"]["code"] == expected, (path, body, answer.text)
        answer = client.post("/v1/chat", content=b"{not json", headers={"content-type": "application/json"})
        assert answer.status_code == 400
        image = [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]
        answer = client.post(
            "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": image}]}
        )
        assert answer.status_code == 400 and "data: URLs" in answer.json()["error"]["message"]
        assert answer.json()["error"]["code"] == "unsupported_parameter"
        answer = client.get("/v1/chat")
        assert answer.status_code == 405
    assert ollama.requests == []


def test_upstream_failures_keep_their_meaning_over_http(
    lakehouse: LakehouseProcess, ollama: FakeOllama, upstream_openai: FakeOpenAI
) -> None:
    with lakehouse.client() as client:
        upstream_openai.fail_status = 429
        answer = client.post("/v1/chat", json={"model": "openrouter/a/b", "messages": HELLO})
        assert answer.status_code == 429 and answer.headers["retry-after"] == "7"
        assert answer.json()["error"]["code"] == "rate_limited"

        upstream_openai.fail_status = None
        upstream_openai.zero_choices = True
        answer = client.post("/v1/chat", json={"model": "openrouter/a/b", "messages": HELLO})
        assert answer.status_code == 502 and answer.json()["error"]["code"] == "upstream_error"

        ollama.delay = 1.5
        answer = client.post("/v1/chat", json={"model": "fast", "messages": HELLO})
        assert answer.status_code == 504 and answer.json()["error"]["code"] == "upstream_timeout"
        assert ollama.requests[-1]["model"] == "llama3.2"

        listed = client.get("/v1/chat/providers").json()
        assert [p["name"] for p in listed["providers"]] == ["ollama", "openrouter"]
        assert OR_KEY not in json.dumps(listed)
    assert OR_KEY not in lakehouse.log()


def test_unreachable_ollama_is_503(start_lakehouse: StartLakehouse) -> None:
    chatd = {**NO_KEY_FILES, "ollama_url": closed_url()}
    proc = start_lakehouse(config={"chatd": chatd}, env=NO_KEYS)
    with proc.client() as client:
        answer = client.post("/v1/chat", json={"model": "qwen3:4b", "messages": HELLO})
        assert answer.status_code == 503
        assert answer.json()["error"]["code"] == "provider_unavailable"
        assert "ollama serve" in answer.json()["error"]["message"]


def test_chat_streams_ndjson_as_the_upstream_produces_it(
    lakehouse: LakehouseProcess, ollama: FakeOllama
) -> None:
    ollama.reply = "one two three four"
    ollama.chunk_delay = 0.15
    lines: list[dict[str, Any]] = []
    arrivals: list[float] = []
    body = {"model": "qwen3:4b", "messages": HELLO, "stream": True}
    with lakehouse.client() as client, client.stream("POST", "/v1/chat", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        for line in response.iter_lines():
            if line:
                lines.append(json.loads(line))
                arrivals.append(time.perf_counter())
    assert "".join(line.get("content", "") for line in lines[:-1]) == "one two three four"
    last = lines[-1]
    assert last["done"] is True and last["content"] == "one two three four"
    assert (last["provider"], last["output_tokens"], last["done_reason"]) == ("ollama", 4, "stop")
    assert arrivals[-1] - arrivals[0] >= 0.3  # pieces were not buffered into one answer


def test_a_client_leaving_mid_stream_stops_the_upstream_answer(
    lakehouse: LakehouseProcess, ollama: FakeOllama
) -> None:
    ollama.reply = " ".join(f"word{i}" for i in range(40))
    ollama.chunk_delay = 0.1  # four seconds for the whole answer
    body = {"model": "qwen3:4b", "messages": HELLO, "stream": True}
    deadline = time.monotonic() + 15
    while ollama.streams_open and time.monotonic() < deadline:
        time.sleep(0.02)  # the previous test's answer may still be closing on the fake's side
    with lakehouse.client() as client, client.stream("POST", "/v1/chat", json=body) as response:
        # One iterator kept open: a generator over iter_lines() dropped after next() would close
        # the response at once, and the client would have left before the count below.
        lines = response.iter_lines()
        first = next(line for line in lines if line)
        assert json.loads(first) == {"content": "word0 "}
        assert ollama.streams_open == 1
    deadline = time.monotonic() + 15
    while ollama.streams_open and time.monotonic() < deadline:
        time.sleep(0.02)
    assert ollama.streams_open == 0  # chatd let go of the upstream instead of reading it to the end
    with lakehouse.client() as client:  # and still answers
        assert client.post("/v1/chat", json={**body, "stream": False}).status_code == 200


def test_a_streamed_request_failing_upstream_keeps_its_status(
    lakehouse: LakehouseProcess, upstream_openai: FakeOpenAI
) -> None:
    upstream_openai.fail_status = 500
    body = {"model": "openrouter/a/b", "messages": HELLO, "stream": True}
    with lakehouse.client() as client:
        for path in ("/v1/chat", "/v1/chat/completions"):
            answer = client.post(path, json=body)
            assert answer.status_code == 502
            assert answer.json()["error"]["upstream_status"] == 500
        answer = client.post(path, json={**body, "model": "kimi/k2"})
        assert answer.status_code == 404


def openai_client(proc: LakehouseProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=proc.url + "/v1", api_key="unused", max_retries=0, timeout=10)


@pytest.mark.parametrize("model", ["qwen3:4b", "openrouter/anthropic/claude-sonnet-4"])
def test_the_official_openai_client_works_unchanged(
    lakehouse: LakehouseProcess, upstream_openai: FakeOpenAI, model: str
) -> None:
    client = openai_client(lakehouse)
    completion = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "say hello"}], max_tokens=50
    )
    assert completion.choices[0].message.content == "echo: say hello"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    assert completion.model == model

    json_answer = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "say hello"}],
        response_format={"type": "json_object"},
    )
    assert json.loads(json_answer.choices[0].message.content or "") == {"echo": "say hello"}


def test_the_official_openai_client_streams(
    lakehouse: LakehouseProcess, upstream_openai: FakeOpenAI, ollama: FakeOllama
) -> None:
    upstream_openai.reply = "alpha beta gamma delta"
    upstream_openai.chunk_delay = 0.15
    client = openai_client(lakehouse)
    stream = client.chat.completions.create(
        model="openrouter/a/b",
        messages=[{"role": "user", "content": "go"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces: list[str] = []
    arrivals: list[float] = []
    finish: list[str | None] = []
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            finish.append(choice.finish_reason)
            if choice.delta.content:
                pieces.append(choice.delta.content)
                arrivals.append(time.perf_counter())
    assert "".join(pieces) == "alpha beta gamma delta"
    assert finish[-1] == "stop"
    assert usage is not None and usage.completion_tokens == 4
    assert arrivals[-1] - arrivals[0] >= 0.3  # streamed from the upstream, not buffered

    ollama.reply = "from ollama"
    streamed = client.chat.completions.create(
        model="fast", messages=[{"role": "user", "content": "x"}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == "from ollama"


def test_openai_client_sees_contract_errors(lakehouse: LakehouseProcess, upstream_openai: FakeOpenAI) -> None:
    client = openai_client(lakehouse)
    with pytest.raises(openai.NotFoundError) as not_found:
        client.chat.completions.create(
            model="kimi/kimi-for-coding", messages=[{"role": "user", "content": "x"}]
        )
    assert not_found.value.status_code == 404
    assert isinstance(not_found.value.body, dict)
    assert not_found.value.body["code"] == "provider_not_registered"

    upstream_openai.fail_status = 429
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="openrouter/a/b", messages=[{"role": "user", "content": "x"}])
    assert limited.value.response.headers["retry-after"] == "7"


def test_split_mode_streams_through_the_gateway(start_lakehouse: StartLakehouse, ollama: FakeOllama) -> None:
    chatd = start_lakehouse(
        config={"chatd": {**NO_KEY_FILES, "ollama_url": ollama.url}}, service="chatd", env=NO_KEYS
    )
    gateway = start_lakehouse(config={"gateway": {"chatd_url": chatd.url}}, service="gateway", name="gw.toml")
    ollama.reply = "through the gateway"
    body = {"model": "qwen3:4b", "messages": HELLO, "stream": True}
    with gateway.client() as client:
        with client.stream("POST", "/v1/chat", json=body) as response:
            lines = [json.loads(line) for line in response.iter_lines() if line]
        assert lines[-1]["content"] == "through the gateway"
        answer = client.post("/v1/chat", json={"model": "kimi-k2.6:cloud", "messages": HELLO})
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "provider_not_registered"


def test_the_chat_command_streams_to_the_terminal(lakehouse: LakehouseProcess, ollama: FakeOllama) -> None:
    args = [LAKEHOUSE, "chat", "qwen3:4b", "say hello", "--system", "be brief", "--gateway", lakehouse.url]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "echo: say hello\n"
    assert "ollama" in done.stderr and "3 out" in done.stderr
    assert ollama.requests[-1]["messages"][0] == {"role": "system", "content": "be brief"}

    args = [LAKEHOUSE, "chat", "kimi/kimi-for-coding", "hi", "--gateway", lakehouse.url]
    failed = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1 and "provider_not_registered" in failed.stderr

    args = [LAKEHOUSE, "chat", "qwen3:4b", "hi", "--gateway", closed_url()]
    unreachable = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert unreachable.returncode == 1 and "cannot reach the lakehouse" in unreachable.stderr


def test_an_upstream_failing_mid_stream_ends_with_an_error_line(
    lakehouse: LakehouseProcess, ollama: FakeOllama
) -> None:
    ollama.reply = "first then-too-late"
    ollama.chunk_delay = 1.3  # past the 1 s timeout, after the first piece went out
    with lakehouse.client() as client:
        body = {"model": "qwen3:4b", "messages": HELLO, "stream": True}
        with client.stream("POST", "/v1/chat", json=body) as response:
            assert response.status_code == 200
            lines = [json.loads(line) for line in response.iter_lines() if line]
        assert lines[0] == {"content": "first "}
        assert lines[-1]["error"]["code"] == "upstream_timeout"

        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            events = [line for line in response.iter_lines() if line.startswith("data: ")]
        assert json.loads(events[0][6:])["choices"][0]["delta"]["content"] == "first "
        assert json.loads(events[-2][6:])["error"]["code"] == "upstream_timeout"
        assert events[-1] == "data: [DONE]"
