"""What the fake providers answer to a chat: deterministic replies, token counts, stream pieces."""

from __future__ import annotations

import json
from typing import Any


def reply_for(messages: list[dict[str, Any]], fmt: Any = None, fixed: str | None = None) -> str:
    """The fake model's answer: `fixed` when set, else an echo of the last user message."""
    last = next((str(m.get("content", "")) for m in reversed(messages) if m.get("role") == "user"), "")
    if fmt == "json" or isinstance(fmt, dict):
        return json.dumps({"echo": last})
    if fixed is not None:
        return fixed
    return f"echo: {last}"


def count_tokens(text: str) -> int:
    """A stand-in tokenizer: one token per whitespace-separated word."""
    return len(text.split())


def prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Tokens in every message's content."""
    return sum(count_tokens(str(m.get("content", ""))) for m in messages)


def pieces(text: str) -> list[str]:
    """`text` split into the pieces a streaming answer sends (words, keeping their spaces)."""
    words = text.split(" ")
    return [w if i == len(words) - 1 else w + " " for i, w in enumerate(words)]
