"""The chat provider interface: what a caller asks, what comes back, what a provider implements."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from lakehouse.errors import InvalidRequest

if TYPE_CHECKING:
    import aiohttp

ChatFormat = Literal["json"]
# A tool call in OpenAI's shape: {"id", "type": "function", "function": {"name", "arguments": "<json>"}};
# in a streamed Chunk, a delta of one with its "index".
ToolCall = dict[str, Any]


@dataclass(frozen=True)
class Message:
    """One turn of a conversation: text, image URLs, the assistant's tool calls or a tool's result."""

    role: str
    content: str
    images: tuple[str, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None
    name: str | None = None


@dataclass(frozen=True)
class ChatRequest:
    """A chat call: the model name (as the caller wrote it, or as sent upstream) and its options."""

    model: str
    messages: tuple[Message, ...]
    format: ChatFormat | dict[str, Any] | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    think: bool | None = None
    tools: tuple[dict[str, Any], ...] = ()
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    # Sampling options beyond the ones above (top_p, stop, seed, presence/frequency_penalty).
    options: Mapping[str, Any] = field(default_factory=dict)
    # The caller's OpenAI Chat Completions body as sent: OpenAI-compatible providers get it as is.
    openai: Mapping[str, Any] | None = field(default=None, compare=False)

    def check(self) -> None:
        """Raise InvalidRequest when the model or the messages are missing or empty."""
        if not self.model.strip():
            raise InvalidRequest('\'model\' must name a model, e.g. "qwen3:4b" or "openrouter/<v>/<m>"')
        if not self.messages:
            raise InvalidRequest("'messages' must hold at least one message")
        for i, message in enumerate(self.messages):
            if not message.role.strip():
                raise InvalidRequest(f"'messages.{i}.role' must not be empty")


@dataclass(frozen=True)
class Completion:
    """A provider's whole answer."""

    content: str
    done_reason: str
    input_tokens: int
    output_tokens: int
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class Chunk:
    """A piece of a streamed answer; the last one carries the done reason and the token counts."""

    content: str = ""
    done_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def done(self) -> bool:
        """Whether this is the closing chunk."""
        return self.done_reason is not None


@dataclass(frozen=True)
class ChatResponse:
    """The contract's answer to `POST /v1/chat`."""

    model: str
    provider: str
    content: str
    done_reason: str
    input_tokens: int
    output_tokens: int
    latency_ms: float
    upstream_model: str = field(default="", compare=False)
    tool_calls: tuple[ToolCall, ...] = ()


class ChatProvider(Protocol):
    """One upstream that answers chats; `request.model` is already the upstream model name."""

    name: str
    kind: str

    async def chat(self, http: aiohttp.ClientSession, request: ChatRequest) -> Completion:
        """The whole answer.

        Raises:
            ProviderUnavailable, UpstreamTimeout, RateLimited, UpstreamError.
        """
        ...

    def stream(self, http: aiohttp.ClientSession, request: ChatRequest) -> AsyncIterator[Chunk]:
        """The answer piece by piece as the upstream produces it, ending with a closing Chunk."""
        ...

    async def models(self, http: aiohttp.ClientSession) -> list[str]:
        """The model names the upstream offers, as a caller routes to them (prefix included)."""
        ...
