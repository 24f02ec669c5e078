"""embedd routes: `POST /v1/embed` and the OpenAI-compatible `POST /v1/embeddings`."""

from __future__ import annotations

import base64
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from lakehouse.errors import InvalidRequest, UnsupportedParameter
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


class EmbeddingsRequest(BaseModel):
    """OpenAI's Embeddings request; a field not honoured is 400 `unsupported_parameter`."""

    model_config = ConfigDict(extra="allow")
    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="A text or a list of texts (token arrays are not supported)"
    )
    model: str | None = Field(default=None, description="Routed like `/v1/embed`'s model names")
    encoding_format: Literal["float", "base64"] = Field(
        default="float", description="base64: little-endian float32 bytes"
    )
    dimensions: int | None = Field(default=None, gt=0, description="Only the model's own dimension")
    user: str | None = None


class EmbeddingItem(BaseModel):
    """One vector, as floats or base64."""

    object: str = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingsUsage(BaseModel):
    """Token counts (words, as a stand-in for the model's tokenizer)."""

    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(BaseModel):
    """OpenAI's Embeddings answer."""

    object: str = "list"
    data: list[EmbeddingItem]
    model: str
    usage: EmbeddingsUsage


def _texts(value: str | list[str] | list[int] | list[list[int]]) -> list[str]:
    if isinstance(value, str):
        return [value]
    if any(not isinstance(item, str) for item in value):
        raise UnsupportedParameter(
            "'input' as token arrays is not supported: send a text or a list of texts", param="input"
        )
    return [item for item in value if isinstance(item, str)]


@router.post(
    "/v1/embeddings",
    response_model=EmbeddingsResponse,
    summary="OpenAI-compatible embeddings",
    responses=_ERRORS,
)
async def embeddings(body: EmbeddingsRequest, deps: DepsDep) -> EmbeddingsResponse:
    """OpenAI's Embeddings shape over the same models and limits as `/v1/embed`."""
    if body.model_extra:
        name = sorted(body.model_extra)[0]
        raise UnsupportedParameter(f"{name!r} is not supported: this route does not know it", param=name)
    texts = _texts(body.input)
    if not texts:
        raise InvalidRequest("'input' must hold at least one text")
    result = await deps.embedder.embed(texts, body.model, field="input")
    if body.dimensions is not None and body.dimensions != result.dim:
        raise UnsupportedParameter(
            f"'dimensions' {body.dimensions} is not supported: {result.model} gives {result.dim}",
            param="dimensions",
            dim=result.dim,
        )
    data = [
        EmbeddingItem(index=i, embedding=_encoded(v) if body.encoding_format == "base64" else v)
        for i, v in enumerate(result.vectors)
    ]
    tokens = sum(len(t.split()) for t in texts)
    usage = EmbeddingsUsage(prompt_tokens=tokens, total_tokens=tokens)
    return EmbeddingsResponse(data=data, model=result.model, usage=usage)


def _encoded(vector: list[float]) -> str:
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
