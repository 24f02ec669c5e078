"""Latency chatd adds over calling the same fake upstream directly: p50 and p99.

Starts a fake Ollama and a fake OpenAI-compatible server (each in its own
process, on free ports) and a real `lakehouse serve` process in front of
them, then times, one request at a time after a warm-up:

    whole answer   POST /api/chat (stream false)       vs  POST /v1/chat
    whole answer   POST /v1/chat/completions (fake)    vs  POST /v1/chat/completions (openrouter/...)
    first token    POST /api/chat streamed (NDJSON)    vs  POST /v1/chat with stream true
    first token    fake SSE /v1/chat/completions       vs  POST /v1/chat/completions with stream true
    tool call      POST /api/chat with 5 tools         vs  POST /v1/chat/completions with them (translated)
    tool call      fake /v1/chat/completions + tools   vs  POST /v1/chat/completions (openrouter/..., as is)

    .venv/bin/python bench/chat.py [--requests 400] [--warmup 50]

Target: under 2 ms added at p50.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.procs import LakehouseProcess, write_config  # noqa: E402

KEY = "sk-bench"
MESSAGES = [{"role": "user", "content": "say hello to the benchmark"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": f"tool_{i}",
            "description": f"Benchmark tool number {i}",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
                "required": ["query"],
            },
        },
    }
    for i in range(5)
]


def serve_fake(kind: str) -> None:
    """Run one fake upstream in this process on port 0, first printing the port it got on stdout."""
    import uvicorn
    from tests.fakes.ollama import FakeOllama
    from tests.fakes.openai import FakeOpenAI

    from lakehouse.cli.listen import bind_socket

    app = FakeOllama().app() if kind == "ollama" else FakeOpenAI(key=KEY).app()
    sock = bind_socket("127.0.0.1", 0)
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


def start_fake(kind: str) -> tuple[subprocess.Popen[bytes], str]:
    """A fake upstream in a child process, once it answers."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-fake", kind], cwd=ROOT, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    url = f"http://127.0.0.1:{int(proc.stdout.readline())}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/", timeout=0.5)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"fake {kind} did not start")


def whole(client: httpx.Client, url: str, body: dict[str, Any], headers: dict[str, str]) -> float:
    """Seconds for one whole answer."""
    started = time.perf_counter()
    response = client.post(url, json=body, headers=headers)
    response.raise_for_status()
    return time.perf_counter() - started


def first_token(client: httpx.Client, url: str, body: dict[str, Any], headers: dict[str, str]) -> float:
    """Seconds until the first piece of content of a streamed answer (the rest is read, not timed)."""
    started = time.perf_counter()
    elapsed = 0.0
    with client.stream("POST", url, json=body, headers=headers) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not elapsed and '"content": "' in line.replace('":"', '": "') and '"content": ""' not in line:
                elapsed = time.perf_counter() - started
    return elapsed


def measure(fn: Callable[[], float], requests: int, warmup: int) -> list[float]:
    """Milliseconds of `requests` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    return [fn() * 1000 for _ in range(requests)]


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0..100)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def report(name: str, direct: list[float], via: list[float]) -> None:
    """One table row: direct and via chatd p50 / p99, and what chatd adds."""
    p50d, p99d, p50v, p99v = pct(direct, 50), pct(direct, 99), pct(via, 50), pct(via, 99)
    ratio = statistics.mean(via) / statistics.mean(direct)
    print(
        f"| {name:<30} | {p50d:6.2f} | {p99d:6.2f} | {p50v:6.2f} | {p99v:6.2f} "
        f"| {p50v - p50d:+6.2f} | {p99v - p99d:+6.2f} | {ratio:4.2f}x |"
    )


def main() -> None:
    """Start everything, measure, print a markdown table."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=50)
    args = parser.parse_args()

    ollama_proc, ollama = start_fake("ollama")
    openai_proc, openai = start_fake("openai")
    tmp = Path(tempfile.mkdtemp(prefix="bench-chat-"))
    chatd = {"ollama_url": ollama, "openrouter_url": openai + "/v1", "openrouter_key_file": ""}
    config = write_config(tmp / "lakehouse.toml", {"storage": {"root": str(tmp / "data")}, "chatd": chatd})
    lakehouse = LakehouseProcess(config, env={"OPENROUTER_API_KEY": KEY, "LAKEHOUSE_LOG__LEVEL": "warning"})
    try:
        lakehouse.start()
        auth = {"Authorization": f"Bearer {KEY}"}
        n, w = args.requests, args.warmup
        local = {"model": "qwen3:4b", "messages": MESSAGES}
        routed = {"model": "openrouter/vendor/model", "messages": MESSAGES}
        upstream = {"model": "vendor/model", "messages": MESSAGES}
        with httpx.Client(timeout=30) as client:
            rows = [
                (
                    "ollama, whole answer",
                    lambda: whole(client, ollama + "/api/chat", {**local, "stream": False}, {}),
                    lambda: whole(client, lakehouse.url + "/v1/chat", local, {}),
                ),
                (
                    "openrouter, whole answer",
                    lambda: whole(client, openai + "/v1/chat/completions", upstream, auth),
                    lambda: whole(client, lakehouse.url + "/v1/chat/completions", routed, {}),
                ),
                (
                    "ollama, first token (NDJSON)",
                    lambda: first_token(client, ollama + "/api/chat", {**local, "stream": True}, {}),
                    lambda: first_token(client, lakehouse.url + "/v1/chat", {**local, "stream": True}, {}),
                ),
                (
                    "openrouter, first token (SSE)",
                    lambda: first_token(
                        client, openai + "/v1/chat/completions", {**upstream, "stream": True}, auth
                    ),
                    lambda: first_token(
                        client, lakehouse.url + "/v1/chat/completions", {**routed, "stream": True}, {}
                    ),
                ),
                (
                    "ollama + tools, tool call",
                    lambda: whole(
                        client, ollama + "/api/chat", {**local, "tools": TOOLS, "stream": False}, {}
                    ),
                    lambda: whole(
                        client, lakehouse.url + "/v1/chat/completions", {**local, "tools": TOOLS}, {}
                    ),
                ),
                (
                    "openrouter + tools, tool call",
                    lambda: whole(
                        client, openai + "/v1/chat/completions", {**upstream, "tools": TOOLS}, auth
                    ),
                    lambda: whole(
                        client, lakehouse.url + "/v1/chat/completions", {**routed, "tools": TOOLS}, {}
                    ),
                ),
            ]
            print(f"{n} sequential requests each after {w} warm-up; milliseconds\n")
            print("| path | direct p50 | p99 | chatd p50 | p99 | added p50 | added p99 | mean ratio |")
            print("|---|---|---|---|---|---|---|---|")
            for name, direct_fn, via_fn in rows:
                report(name, measure(direct_fn, n, w), measure(via_fn, n, w))
    finally:
        lakehouse.stop()
        for proc in (ollama_proc, openai_proc):
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-fake":
        serve_fake(sys.argv[2])
    else:
        main()
