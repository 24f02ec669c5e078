"""The OpenAI model list behind `GET /v1/models`: tiers, default models and what providers report.

Every registered chat provider is asked at once (Ollama's `/api/tags`, an
OpenAI-compatible `/models`), each within `LIST_TIMEOUT` seconds; one that is
down or slow is left out of the list and logged, so the list itself never
fails. Names are given as a caller routes to them: bare names for local
Ollama, `ollama_cloud/<m>`, `openrouter/<v>/<m>` and so on.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from lakehouse.config import Settings
from lakehouse.errors import LakehouseError, NotFound
from lakehouse.providers.chat import ChatRouter
from lakehouse.providers.types import ChatProvider

log = logging.getLogger("lakehouse.chat")

LIST_TIMEOUT = 3.0
OWNER = "lakehouse"


def model_entry(model_id: str, owned_by: str, **extra: Any) -> dict[str, Any]:
    """One item of OpenAI's model list."""
    return {"id": model_id, "object": "model", "created": 0, "owned_by": owned_by, **extra}


async def _reported(router: ChatRouter, provider: ChatProvider) -> list[str]:
    try:
        return await asyncio.wait_for(provider.models(await router.http()), LIST_TIMEOUT)
    except (LakehouseError, TimeoutError) as exc:
        reason = exc.code if isinstance(exc, LakehouseError) else "timeout"
        log.warning("models: %s left out of the list (%s)", provider.name, reason)
        return []


async def list_models(router: ChatRouter, settings: Settings) -> list[dict[str, Any]]:
    """Tiers first, then the default embedding model, then each provider's models; no duplicates."""
    entries: dict[str, dict[str, Any]] = {}
    for tier, target in settings.models.items():
        entries[tier] = model_entry(tier, OWNER, tier_of=target)
    default = settings.embedd.default_model
    if default and default not in entries:
        entries[default] = model_entry(default, OWNER, default_for="embeddings")
    providers = list(router.providers.values())
    reported = await asyncio.gather(*(_reported(router, p) for p in providers))
    for provider, names in zip(providers, reported, strict=True):
        for name in names:
            entries.setdefault(name, model_entry(name, provider.name))
    return list(entries.values())


async def find_model(router: ChatRouter, settings: Settings, model_id: str) -> dict[str, Any]:
    """The list's entry for `model_id`.

    Raises:
        NotFound: no tier, default or provider's model has that id.
    """
    for entry in await list_models(router, settings):
        if entry["id"] == model_id:
            return entry
    raise NotFound(f"no model {model_id!r}: GET /v1/models lists the ones available", model=model_id)
