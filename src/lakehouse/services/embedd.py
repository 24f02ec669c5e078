"""embedd routes: `POST /v1/embed`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from lakehouse.services.deps import DepsDep

router = APIRouter(tags=["embeddings"])


class EmbedRequest(BaseModel):
    """Texts to embed and, optionally, the model (routed like chat model names)."""

    texts: list[str] = Field(description="One or more non-empty texts.")
    model: str | None = Field(
        default=None,
        description="Model name: bare or `ollama/<m>`, `openai/<m>`, `local/<m>`; "
        "default `[embedd] default_model`.",
    )


class EmbedResponse(BaseModel):
    """One vector per text, in the order of the texts."""

    model: str
    dim: int
    vectors: list[list[float]]


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Empty texts, over a limit, or a provider without embeddings"},
    404: {"description": "Unknown local model, or a provider that is not configured"},
    502: {"description": "The provider answered with an error"},
    503: {"description": "The provider is unreachable; the message says how to start it"},
    504: {"description": "The provider did not answer in time"},
}


@router.post("/v1/embed", response_model=EmbedResponse, summary="Embed texts", responses=_ERRORS)
async def embed(body: EmbedRequest, deps: DepsDep) -> EmbedResponse:
    """Turn texts into vectors with the named model."""
    result = await deps.embedder.embed(body.texts, body.model)
    return EmbedResponse(model=result.model, dim=result.dim, vectors=result.vectors)
