"""An OpenAI Chat Completions body as a provider-neutral ChatRequest, refusing what is not honoured.

The fields honoured are listed in `HONOURED`; every other field, and every
honoured one set to something no provider here can do (`n` > 1, `logprobs`,
`stream_options` beyond `include_usage`, ...), is `UnsupportedParameter`
naming it, never silently dropped. What only some providers can do (a forced
`tool_choice`, image links) is checked by the provider the model routes to.
The body is also kept as sent, for OpenAI-compatible providers to receive
unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lakehouse.errors import InvalidRequest, UnsupportedParameter
from lakehouse.providers.types import ChatRequest, Message, ToolCall

# Fields passed on to the provider (sampling options go into ChatRequest.options).
SAMPLING = ("top_p", "stop", "seed", "presence_penalty", "frequency_penalty")
HONOURED = frozenset(
    {
        "model",
        "messages",
        "stream",
        "stream_options",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "response_format",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "n",
        "user",
        "logprobs",
        "modalities",
        "think",
        *SAMPLING,
    }
)
# Why some fields OpenAI defines are refused.
REFUSED = {
    "top_logprobs": "token log probabilities are not offered",
    "logit_bias": "logit bias is not offered",
    "audio": "audio output is not offered",
    "prediction": "predicted outputs are not offered",
    "functions": "legacy functions are not offered: send 'tools'",
    "function_call": "legacy function_call is not offered: send 'tool_choice'",
}
MESSAGE_FIELDS = frozenset({"role", "content", "name", "tool_calls", "tool_call_id", "refusal"})


def unsupported(param: str, why: str) -> UnsupportedParameter:
    """The 400 for a parameter that cannot be honoured."""
    return UnsupportedParameter(f"{param!r} is not supported: {why}", param=param)


def check_fields(doc: Mapping[str, Any]) -> None:
    """Refuse any field, or any value of an honoured one, that would otherwise be dropped."""
    for name, value in doc.items():
        if name in REFUSED:
            if value is None or value == {}:
                continue
            raise unsupported(name, REFUSED[name])
        if name not in HONOURED:
            raise unsupported(name, "this route does not know it")
    n = doc.get("n")
    if n is not None and n != 1:
        raise unsupported("n", "one choice per request only")
    if doc.get("logprobs"):
        raise unsupported("logprobs", "token log probabilities are not offered")
    modalities = doc.get("modalities")
    if modalities is not None and list(modalities) != ["text"]:
        raise unsupported("modalities", 'only ["text"] is offered')
    options = doc.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise InvalidRequest("'stream_options' must be an object")
        for key in options:
            if key != "include_usage":
                raise unsupported(f"stream_options.{key}", "only include_usage is offered")


def response_format(value: Any) -> Any:
    """The ChatRequest format for an OpenAI `response_format`: "json", a JSON schema, or None."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return "json"
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise InvalidRequest("'response_format.json_schema.schema' must be a JSON schema object")
        return schema
    raise unsupported("response_format", f"type {kind!r}; use text, json_object or json_schema")


def parse_message(index: int, doc: Any) -> Message:
    """One OpenAI message as a Message (text parts joined, image URLs kept)."""
    if not isinstance(doc, dict):
        raise InvalidRequest(f"'messages.{index}' must be an object")
    for key, value in doc.items():
        if key not in MESSAGE_FIELDS and value is not None:
            raise unsupported(f"messages.{index}.{key}", "this route does not know it")
    role = doc.get("role")
    if not isinstance(role, str) or not role.strip():
        raise InvalidRequest(f"'messages.{index}.role' must be a non-empty string")
    role = "system" if role == "developer" else role
    content = doc.get("content")
    calls = _tool_calls(index, doc.get("tool_calls"))
    text, images = _content(index, role, content, calls)
    call_id, name = doc.get("tool_call_id"), doc.get("name")
    if role == "tool" and not isinstance(call_id, str):
        raise InvalidRequest(f"'messages.{index}.tool_call_id' is required for a tool message")
    return Message(
        role,
        text,
        images=images,
        tool_calls=calls,
        tool_call_id=call_id if isinstance(call_id, str) else None,
        name=name if isinstance(name, str) else None,
    )


def _content(index: int, role: str, content: Any, calls: tuple[ToolCall, ...]) -> tuple[str, tuple[str, ...]]:
    if content is None:
        if role != "assistant":
            raise InvalidRequest(f"'messages.{index}.content' is required for role {role!r}")
        return "", ()
    if isinstance(content, str):
        return content, ()
    if not isinstance(content, list):
        raise InvalidRequest(f"'messages.{index}.content' must be a string or a list of parts")
    texts: list[str] = []
    images: list[str] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str) or not url:
                raise InvalidRequest(f"'messages.{index}': an image_url part needs a url")
            images.append(url)
        elif kind in ("text", None):
            raise InvalidRequest(f"'messages.{index}.content': a text part needs a 'text' string")
        else:
            raise unsupported(f"messages.{index}.content", f"parts of type {kind!r}; use text or image_url")
    return "\n".join(texts), tuple(images)


def _tool_calls(index: int, calls: Any) -> tuple[ToolCall, ...]:
    if calls is None:
        return ()
    if not isinstance(calls, list):
        raise InvalidRequest(f"'messages.{index}.tool_calls' must be a list")
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidRequest(f"'messages.{index}.tool_calls': each call needs a function name")
    return tuple(calls)


def parse_tools(tools: Any) -> tuple[dict[str, Any], ...]:
    """OpenAI function tools, checked for a name each."""
    if tools is None:
        return ()
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be a list")
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type", "function") != "function":
            raise unsupported(f"tools.{i}", "only function tools are offered")
        function = tool.get("function")
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise InvalidRequest(f"'tools.{i}.function.name' must be a string")
    return tuple(tools)


def to_chat_request(doc: Mapping[str, Any]) -> ChatRequest:
    """The ChatRequest for an OpenAI Chat Completions body (as sent; None values count as unset).

    Raises:
        UnsupportedParameter: a field, or a value, that cannot be honoured.
        InvalidRequest: a malformed message, tool or response format.
    """
    check_fields(doc)
    messages = doc.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must hold at least one message")
    options = {k: doc[k] for k in SAMPLING if doc.get(k) is not None}
    choice = doc.get("tool_choice")
    return ChatRequest(
        model=str(doc.get("model", "")),
        messages=tuple(parse_message(i, m) for i, m in enumerate(messages)),
        format=response_format(doc.get("response_format")),
        max_tokens=doc.get("max_completion_tokens") or doc.get("max_tokens"),
        temperature=doc.get("temperature"),
        think=doc.get("think"),
        tools=parse_tools(doc.get("tools")),
        tool_choice=choice if isinstance(choice, str | dict) else None,
        parallel_tool_calls=doc.get("parallel_tool_calls"),
        options=options,
        openai={k: v for k, v in doc.items() if k not in ("think", "stream", "stream_options")},
    )
