"""A scripted tool-calling model: a real HTTP server speaking Ollama's and OpenAI's chat APIs.

A test gives it a script of turns. Each chat request takes the next turn:
`Turn(calls=[("sql", {"query": ...})])` answers with those tool calls, and
`Turn(answer=...)` with text (a string, or a function of the tool results the
request carries, parsed from JSON). A turn's `check` is called with the tool
results since the last assistant message (those answering the previous turn's calls):
whatever it raises is recorded in `failures` and answered with a 500, so a
test that forgets to look still fails. When the script runs out the last turn
repeats when `repeat_last` is set, else the answer is a 500 and a failure.

    POST /api/chat             Ollama's shape (stream or not)
    POST /v1/chat/completions  OpenAI's shape (not streamed)
    GET  /api/tags, /v1/models the models

`no_tools` names models that refuse tools as Ollama does (400 "... does not
support tools"); `fail_status` answers every chat with that status (429 with
`Retry-After: 7`); `delay` holds every chat answer back that many seconds.
Each request body is recorded in `requests`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.server import RunningServer, serve_in_thread

Results = list[Any]


@dataclass
class Turn:
    """One answer of the model: tool calls, or text (fixed, or made from the tool results it received)."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    answer: str | Callable[[Results], str] | None = None
    check: Callable[[Results], None] | None = None


class ScriptedModel:
    """State and handlers of the scripted model server."""

    def __init__(self) -> None:
        self.script: list[Turn] = []
        self.repeat_last = False
        self.no_tools: set[str] = {"gemma3:1b"}
        self.fail_status: int | None = None
        self.delay = 0.0
        self.requests: list[dict[str, Any]] = []
        self.failures: list[str] = []
        self.server: RunningServer | None = None
        self._next = 0

    def play(self, *turns: Turn, repeat_last: bool = False) -> ScriptedModel:
        """Start a new script (requests and failures forgotten)."""
        self.script = list(turns)
        self.repeat_last = repeat_last
        self.requests = []
        self.failures = []
        self.fail_status = None
        self.delay = 0.0
        self._next = 0
        return self

    @property
    def url(self) -> str:
        """Base URL of the running server."""
        assert self.server is not None, "the fake is not running"
        return self.server.url

    def app(self) -> Starlette:
        """The ASGI app."""
        return Starlette(
            routes=[
                Route("/api/chat", self.ollama_chat, methods=["POST"]),
                Route("/v1/chat/completions", self.openai_chat, methods=["POST"]),
                Route("/api/tags", self.tags, methods=["GET"]),
                Route("/v1/models", self.models, methods=["GET"]),
            ]
        )

    async def tags(self, request: Request) -> Response:
        """Ollama's model list."""
        return JSONResponse({"models": [{"name": "qwen3:4b", "model": "qwen3:4b"}]})

    async def models(self, request: Request) -> Response:
        """OpenAI's model list."""
        return JSONResponse(
            {"object": "list", "data": [{"id": "scripted", "object": "model", "owned_by": "t"}]}
        )

    def _turn(self, body: dict[str, Any]) -> tuple[Turn | None, Results]:
        """The turn for this request and the tool results it ends with; None after a failure."""
        self.requests.append(body)
        messages = body.get("messages") or []
        results: Results = []
        for message in reversed(messages):
            if message.get("role") == "assistant":
                break
            if message.get("role") != "tool":
                continue
            content = message.get("content")
            try:
                results.insert(0, json.loads(content) if isinstance(content, str) else content)
            except ValueError:
                results.insert(0, content)
        if self._next < len(self.script):
            turn = self.script[self._next]
            self._next += 1
        elif self.repeat_last and self.script:
            turn = self.script[-1]
        else:
            self.failures.append(
                f"request {len(self.requests)} is past the script's {len(self.script)} turns"
            )
            return None, results
        if turn.check is not None:
            try:
                turn.check(results)
            except Exception as exc:  # any failed check is recorded for the test
                self.failures.append(f"turn {self._next}: {type(exc).__name__}: {exc}")
                return None, results
        return turn, results

    async def ollama_chat(self, request: Request) -> Response:
        """Ollama's `/api/chat`: the turn's calls (arguments as objects) or its text."""
        body = await request.json()
        model = str(body.get("model", ""))
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail_status is not None:
            headers = {"Retry-After": "7"} if self.fail_status == 429 else None
            return JSONResponse({"error": "busy"}, self.fail_status, headers)
        if body.get("tools") and model in self.no_tools:
            return JSONResponse({"error": f"registry.ollama.ai/library/{model} does not support tools"}, 400)
        turn, results = self._turn(body)
        if turn is None:
            return JSONResponse({"error": "the script failed: " + self.failures[-1]}, 500)
        message: dict[str, Any] = {"role": "assistant", "content": "" if turn.calls else _text(turn, results)}
        if turn.calls:
            message["tool_calls"] = [{"function": {"name": n, "arguments": a}} for n, a in turn.calls]
        done = {"model": model, "done": True, "done_reason": "stop", "prompt_eval_count": 10, "eval_count": 5}
        if body.get("stream") is False:
            return JSONResponse({**done, "message": message})
        lines = [{"model": model, "message": message, "done": False}, {**done, "message": {"content": ""}}]
        return Response("".join(json.dumps(x) + "\n" for x in lines), media_type="application/x-ndjson")

    async def openai_chat(self, request: Request) -> Response:
        """OpenAI's `/v1/chat/completions` (whole answers only)."""
        body = await request.json()
        turn, results = self._turn(body)
        if turn is None:
            return JSONResponse({"error": {"message": self.failures[-1], "type": "server_error"}}, 500)
        message: dict[str, Any] = {
            "role": "assistant",
            "content": None if turn.calls else _text(turn, results),
        }
        if turn.calls:
            message["tool_calls"] = [
                {"id": f"call_{i}", "type": "function", "function": {"name": n, "arguments": json.dumps(a)}}
                for i, (n, a) in enumerate(turn.calls)
            ]
        choice = {"index": 0, "message": message, "finish_reason": "tool_calls" if turn.calls else "stop"}
        usage = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
        answer = {"id": "chatcmpl-scripted", "object": "chat.completion", "model": body.get("model")}
        return JSONResponse({**answer, "choices": [choice], "usage": usage})


def _text(turn: Turn, results: Results) -> str:
    if callable(turn.answer):
        return turn.answer(results)
    return turn.answer or ""


@contextmanager
def run_scripted_model() -> Iterator[ScriptedModel]:
    """Serve a ScriptedModel on 127.0.0.1 for the duration of the block."""
    fake = ScriptedModel()
    with serve_in_thread(fake.app()) as server:
        fake.server = server
        yield fake
