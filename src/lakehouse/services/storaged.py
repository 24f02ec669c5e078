"""storaged routes: objects in, objects out, streamed both ways."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from starlette.convertors import Convertor, register_url_convertor

from lakehouse.errors import InvalidRequest
from lakehouse.services.deps import Deps, DepsDep
from lakehouse.storage.access import StorageAccess
from lakehouse.storage.base import ObjectInfo


class _AnyKey(Convertor[str]):
    """Like Starlette's `path`, but also matching newlines, so such keys get 400 rather than 404."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("objectkey", _AnyKey())
router = APIRouter(prefix="/v1/storage", tags=["storage"])

DEFAULT_LIST_LIMIT = 1000
MAX_LIST_LIMIT = 10000
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "invalid_key"},
    503: {"description": "busy: too many requests in flight (Retry-After)"},
}
_RAW_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
    }
}


class StoredObject(BaseModel):
    """An object just written."""

    key: str
    size: int
    etag: str


class ListedObject(StoredObject):
    """One object in a listing."""

    last_modified: str


class ObjectList(BaseModel):
    """A page of objects, sorted by key."""

    objects: list[ListedObject]
    truncated: bool


async def storage_slot(deps: DepsDep) -> AsyncIterator[StorageAccess]:
    """The storage API, holding a concurrency slot until the response is fully sent."""
    access = deps.storage
    with access.slot():
        yield access


StorageDep = Annotated[StorageAccess, Depends(storage_slot)]


async def startup(deps: Deps) -> None:
    """Open the store at start, so a crashed upload's leftovers are swept before any request."""
    _ = deps.storage


def _object_headers(info: ObjectInfo) -> dict[str, str]:
    return {
        "Content-Length": str(info.size),
        "ETag": f'"{info.etag}"',
        "Last-Modified": info.last_modified.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "Content-Type": "application/octet-stream",
    }


def _declared_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    if not raw.isdigit():
        raise InvalidRequest(f"Content-Length {raw!r} is not a number")
    return int(raw)


@router.put(
    "/objects/{key:objectkey}",
    status_code=201,
    response_model=StoredObject,
    summary="Store an object (raw body, streamed)",
    openapi_extra=_RAW_BODY,
    responses={
        200: {"model": StoredObject, "description": "replaced an existing object"},
        403: {"description": "reserved_key"},
        413: {"description": "too_large"},
        **_ERRORS,
    },
)
async def put_object(key: str, request: Request, storage: StorageDep) -> JSONResponse:
    """Stream the body into the store; 201 when new, 200 when it replaced an object."""
    result = await storage.put(key, request.stream(), _declared_length(request))
    body = StoredObject(key=result.info.key, size=result.info.size, etag=result.info.etag)
    return JSONResponse(body.model_dump(), status_code=200 if result.replaced else 201)


@router.get(
    "/objects/{key:objectkey}",
    summary="Read an object (streamed)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the object's bytes"},
        404: {"description": "not_found"},
        **_ERRORS,
    },
)
async def get_object(key: str, storage: StorageDep) -> StreamingResponse:
    """The object's bytes with Content-Length and ETag."""
    info, chunks = await storage.get(key)
    return StreamingResponse(chunks, headers=_object_headers(info), media_type="application/octet-stream")


@router.head(
    "/objects/{key:objectkey}",
    summary="An object's headers",
    responses={404: {"description": "not_found"}, **_ERRORS},
)
async def head_object(key: str, storage: StorageDep) -> Response:
    """The same headers as GET, without the body."""
    info = await storage.head(key)
    return Response(headers=_object_headers(info))


@router.delete(
    "/objects/{key:objectkey}",
    status_code=204,
    summary="Delete an object",
    responses={403: {"description": "reserved_key"}, 404: {"description": "not_found"}, **_ERRORS},
)
async def delete_object(key: str, storage: StorageDep) -> Response:
    """Remove the object: 204, or 404 when absent."""
    await storage.delete(key)
    return Response(status_code=204)


@router.get("/objects", response_model=ObjectList, summary="List objects by prefix", responses=_ERRORS)
async def list_objects(
    storage: StorageDep,
    prefix: Annotated[str, Query(max_length=1024)] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = DEFAULT_LIST_LIMIT,
) -> ObjectList:
    """Objects whose key starts with `prefix`, sorted by key, at most `limit`."""
    objects, truncated = await storage.list(prefix, limit)
    return ObjectList(
        objects=[
            ListedObject(key=o.key, size=o.size, etag=o.etag, last_modified=o.last_modified.isoformat())
            for o in objects
        ],
        truncated=truncated,
    )
