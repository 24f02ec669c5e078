"""Model-name routing shared by chat and embeddings.

    ollama/<m>            ollama        <m>
    ollama_cloud/<m>      ollama_cloud  <m>
    <m>:cloud             ollama_cloud  <m>
    openrouter/<v>/<m>    openrouter    <v>/<m>
    opencode/<m>          opencode      <m>
    kimi/<m>              kimi          <m>
    openai/<m>            openai        <m>   (embeddings: any OpenAI-compatible server)
    local/<m>             local         <m>   (embeddings: in-process model)
    anything else         ollama        unchanged

A tier name from `[models]` is replaced by its model id before routing.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

DEFAULT_PROVIDER = "ollama"

# Prefixes that name a provider; the prefix is stripped before the name goes upstream.
PREFIXED = ("ollama", "ollama_cloud", "openrouter", "opencode", "kimi", "openai", "local")
CLOUD_SUFFIX = ":cloud"


@dataclass(frozen=True)
class Route:
    """Where a model name goes: the provider and the name sent upstream."""

    provider: str
    model: str


def resolve(name: str, tiers: Mapping[str, str] | None = None, prefixes: Collection[str] = PREFIXED) -> Route:
    """Route a model name (or tier name) to its provider and upstream model.

    `prefixes` limits which prefixes name a provider (chat passes its own five,
    so `openai/<m>` is an ordinary Ollama model name there).
    """
    if tiers and name in tiers:
        name = tiers[name]
    prefix, sep, rest = name.partition("/")
    if sep and rest and prefix in prefixes:
        return Route(prefix, rest)
    if name.endswith(CLOUD_SUFFIX) and len(name) > len(CLOUD_SUFFIX):
        return Route("ollama_cloud", name[: -len(CLOUD_SUFFIX)])
    return Route(DEFAULT_PROVIDER, name)
