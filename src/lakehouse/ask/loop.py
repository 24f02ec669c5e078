"""The ask loop: a question, a model that calls the lakehouse's tools, and an answer with its citations.

Each round sends the conversation and the tools through the chat router (so
any provider that takes OpenAI-style tools works); every tool call the model
makes is run (`tools.py`) and its result sent back as a `tool` message. After
`max_steps` rounds the model is asked once more, without tools, to answer
from what it has. Everything is bounded: the question's length, the calls
per round, the text of each tool result the model reads, and the total time.
Provider failures raise as chat's do (`RateLimited`, `UpstreamError`, ...).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from lakehouse.ask.tools import Toolbox, ToolResult, tool_specs
from lakehouse.errors import InvalidRequest, UpstreamError, UpstreamTimeout
from lakehouse.providers.types import ChatRequest, ChatResponse, Message, ToolCall

MAX_QUESTION_CHARS = 4000
MAX_STEPS = 20
DEFAULT_STEPS = 6
MAX_CALLS_PER_ROUND = 8
MAX_RESULT_CHARS = 8000  # the JSON text of one tool result the model reads
MAX_NAMES = 20  # datasets or indexes one question may name

SYSTEM = (
    "You answer questions about the data in a lakehouse by calling its tools. Datasets are DuckDB views "
    'named after the dataset; version N of one is the view "<name>@<N>" (quote it). Use sql for counts, '
    "filters and aggregates (read-only DuckDB SQL; only a few rows come back, so aggregate or LIMIT). "
    "Use search to find items by meaning or by exact terms in an index. Answer only from what the tools "
    "returned, say so when they do not answer the question, and name the dataset, version and ids your "
    "answer rests on. When a tool answers with an error, fix the call or try another way."
)
LAST_ROUND = (
    "You have used every tool round this question allows. Answer now from the tool results above; "
    "say what is still unknown."
)


class Chat(Protocol):
    """What the loop needs of the chat router."""

    async def chat(self, request: ChatRequest) -> ChatResponse:
        """The whole answer to one chat request."""
        ...


@dataclass(frozen=True)
class AskRequest:
    """One question: the model to ask, the datasets and indexes it may use, and its step budget."""

    question: str
    model: str
    datasets: tuple[str, ...] | None = None
    indexes: tuple[str, ...] = ()
    max_steps: int = DEFAULT_STEPS

    def check(self) -> None:
        """Raise InvalidRequest for an empty or oversized question, or a budget out of range."""
        if not self.question.strip():
            raise InvalidRequest("'question' must not be empty")
        if len(self.question) > MAX_QUESTION_CHARS:
            raise InvalidRequest(f"'question' is longer than {MAX_QUESTION_CHARS} characters")
        if not self.model.strip():
            raise InvalidRequest("'model' must name a model that can call tools, e.g. \"qwen3:4b\"")
        if not 1 <= self.max_steps <= MAX_STEPS:
            raise InvalidRequest(f"'max_steps' must be from 1 to {MAX_STEPS}")
        for key, names in (("datasets", self.datasets or ()), ("indexes", self.indexes)):
            if len(names) > MAX_NAMES:
                raise InvalidRequest(f"'{key}' may name at most {MAX_NAMES}")
            if any(not n.strip() for n in names):
                raise InvalidRequest(f"'{key}' must hold non-empty names")


@dataclass(frozen=True)
class Step:
    """One tool call: the tool, the model's arguments, and the result it read."""

    tool: str
    input: Any
    output: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The contract's `{"tool", "input", "output"}`."""
        return {"tool": self.tool, "input": self.input, "output": self.output}


@dataclass
class AskAnswer:
    """The answer, the steps that led to it and what it cites."""

    answer: str
    model: str
    provider: str = ""
    steps: list[Step] = field(default_factory=list)
    citations: list[dict[str, Any]] = field(default_factory=list)
    finish: str = "answer"  # "answer", or "max_steps" when the budget ran out first
    rounds: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    elapsed_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The contract's answer body, with the counts beside it."""
        return {
            "answer": self.answer,
            "model": self.model,
            "provider": self.provider,
            "steps": [s.to_dict() for s in self.steps],
            "citations": self.citations,
            "finish": self.finish,
            "rounds": self.rounds,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "elapsed_ms": self.elapsed_ms,
        }


AskEvent = Step | AskAnswer


class AskLoop:
    """Runs one question to its answer; `events` yields each Step as it happens, then the AskAnswer."""

    def __init__(self, chat: Chat, toolbox: Toolbox, *, timeout_secs: float, context: str = "") -> None:
        self.chat = chat
        self.toolbox = toolbox
        self.timeout_secs = timeout_secs
        self.context = context

    async def answer(self, request: AskRequest) -> AskAnswer:
        """The whole answer."""
        async for event in self.events(request):
            if isinstance(event, AskAnswer):
                return event
        raise UpstreamError("the ask ended without an answer")  # pragma: no cover - events always ends so

    async def events(self, request: AskRequest) -> AsyncGenerator[AskEvent]:
        """Each tool step as it is done, then the answer.

        Raises:
            UpstreamTimeout: past the time limit. Provider errors as the chat router raises them.
        """
        request.check()
        started = time.perf_counter()
        deadline = asyncio.get_running_loop().time() + self.timeout_secs
        tools = tool_specs(list(self.toolbox.indexes))
        system = SYSTEM + ("\n\n" + self.context if self.context else "")
        messages = [Message("system", system), Message("user", request.question)]
        answer = AskAnswer(answer="", model=request.model)
        while True:
            last = answer.rounds >= request.max_steps
            if last:
                messages.append(Message("user", LAST_ROUND))
            reply = await self._within(deadline, self._ask(request.model, messages, tools, last))
            answer.provider = reply.provider
            answer.input_tokens += reply.input_tokens
            answer.output_tokens += reply.output_tokens
            # Calls past the round's cap are dropped before they enter the conversation.
            calls = [] if last else _calls(reply.tool_calls)[:MAX_CALLS_PER_ROUND]
            if not calls:
                answer.answer = _clean(reply.content).strip()
                answer.finish = "max_steps" if last else "answer"
                if last and not answer.answer:
                    answer.answer = f"No answer within {request.max_steps} tool rounds."
                answer.elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
                yield answer
                return
            answer.rounds += 1
            messages.append(Message("assistant", _clean(reply.content), tool_calls=tuple(calls)))
            for call in calls:
                name, arguments = call["function"]["name"], _arguments(call["function"]["arguments"])
                if isinstance(arguments, _BadArguments):
                    result = ToolResult(_error("invalid_request", arguments.why))
                else:
                    result = await self._within(deadline, self.toolbox.run(name, arguments))
                output = fit(result.output, MAX_RESULT_CHARS)
                shown = arguments.text if isinstance(arguments, _BadArguments) else arguments
                step = Step(name, _bounded(shown), output)
                answer.steps.append(step)
                _cite(answer.citations, result.citations)
                messages.append(Message("tool", _dumps(output), tool_call_id=call["id"], name=name))
                yield step

    async def _ask(
        self, model: str, messages: Sequence[Message], tools: Sequence[dict[str, Any]], last: bool
    ) -> ChatResponse:
        # The last round still names the tools (some providers refuse tool calls in the history
        # otherwise) but forbids calling them: `tool_choice: "none"` (Ollama drops the tools).
        choice = "none" if last else None
        request = ChatRequest(model=model, messages=tuple(messages), tools=tuple(tools), tool_choice=choice)
        try:
            return await self.chat.chat(request)
        except UpstreamError as exc:
            if "support tools" in exc.message or "tool use" in exc.message:
                raise UpstreamError(
                    f"model {model!r} cannot call tools, which /v1/ask needs (e.g. qwen3 can): {exc.message}",
                    **exc.detail,
                ) from None
            raise

    async def _within(self, deadline: float, work: Any) -> Any:
        try:
            async with asyncio.timeout_at(deadline):
                return await work
        except TimeoutError:
            raise UpstreamTimeout(f"the question was not answered within {self.timeout_secs:g} s") from None


@dataclass(frozen=True)
class _BadArguments:
    text: str
    why: str


def _arguments(raw: Any) -> Any:
    """The model's arguments as JSON (providers send a JSON string, some an object)."""
    text = raw if isinstance(raw, str) else ""
    if not text.strip():
        return {}
    try:
        parsed = json.loads(text)
        _dumps(parsed).encode("utf-8")  # lone surrogates ("\ud800") could not reach a service
    except ValueError:  # UnicodeEncodeError included
        return _BadArguments(text[:MAX_RESULT_CHARS], "the arguments are not valid JSON text")
    return parsed


def _calls(calls: Sequence[ToolCall]) -> list[ToolCall]:
    """The model's tool calls, each with an id and a function name (ids made up where missing)."""
    out: list[ToolCall] = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not function.get("name"):
            continue
        out.append(
            {
                "id": str(call.get("id") or f"call_{uuid.uuid4().hex[:24]}"),
                "type": "function",
                "function": {
                    "name": _clean(str(function["name"])),
                    "arguments": _text_of(function.get("arguments")),
                },
            }
        )
    return out


def _bounded(value: Any) -> Any:
    """A step's input as echoed in the answer: the model's arguments, or their start when too long."""
    text = _dumps(value)
    return (
        value if len(text) <= MAX_RESULT_CHARS else {"cut": len(text), "start": text[: MAX_RESULT_CHARS // 2]}
    )


def _clean(text: str) -> str:
    """`text` with any lone surrogate (JSON can carry `"\\ud800"`) replaced, so it encodes as UTF-8."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _text_of(arguments: Any) -> str:
    """A call's arguments as the JSON text providers take back in the conversation."""
    if isinstance(arguments, str):
        return _clean(arguments) or "{}"
    return _clean(_dumps(arguments if arguments is not None else {}))


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def fit(output: dict[str, Any], limit: int) -> dict[str, Any]:
    """`output` cut until its JSON text is at most `limit` characters: trailing rows or hits first."""
    if len(_dumps(output)) <= limit:
        return output
    cut = dict(output)
    for key in ("rows", "hits", "datasets", "versions"):
        items = cut.get(key)
        if isinstance(items, list):
            items = list(items)
            while items and len(_dumps({**cut, key: items})) > limit:
                items.pop()
            cut[key] = items
            cut["cut"] = f"only {len(items)} {key} fit in what the model reads"
            if len(_dumps(cut)) <= limit:
                return cut
    text = _dumps(output)
    return {"cut": f"the result was {len(text)} characters; its start follows", "start": text[: limit // 2]}


def _cite(citations: list[dict[str, Any]], new: Sequence[dict[str, Any]]) -> None:
    for citation in new:
        if citation not in citations:
            citations.append(citation)
