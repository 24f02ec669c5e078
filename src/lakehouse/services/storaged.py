"""storaged routes: objects in, objects out, streamed both ways.

GET honours one `Range` (`a-b`, `a-`, `-n`: 206, or 416 past the end) with
`If-Range`, and `If-None-Match` (304); a header naming several ranges, or one
that does not parse, is ignored and the whole object sent (200), as RFC 9110
allows. PUT honours `If-None-Match: *` and `If-Match` (412, nothing written).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from starlette.convertors import Convertor, register_url_convertor
from starlette.types import Message, Receive, Scope, Send

from lakehouse.errors import InvalidRequest, NotFound, PreconditionFailed
from lakehouse.services.deps import Deps, DepsDep
from lakehouse.storage.access import StorageAccess
from lakehouse.storage.base import ByteRange, ObjectInfo


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
    next: str | None = Field(description="`after` for the next page; null on the last page")


async def storage_api(deps: DepsDep) -> StorageAccess:
    """The storage API; each route takes and frees its own concurrency slot."""
    return deps.storage


StorageDep = Annotated[StorageAccess, Depends(storage_api)]


class SlotStreamingResponse(StreamingResponse):
    """A streamed object that frees its storage slot as soon as its last byte is handed to the server.

    The slot is released before the send that completes the body (its
    Content-Length reached, or the final message), so a client reusing its
    keep-alive connection at once never meets its own previous request's slot;
    and in any case when the response ends (a client gone mid-download).
    """

    def __init__(self, content: AsyncIterator[bytes], release: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        length = int(self.headers.get("content-length", "-1"))
        sent = 0
        metrics = getattr(getattr(scope.get("app"), "state", None), "metrics", None)
        counter = metrics.storage_bytes_sent if metrics is not None else None

        async def send_releasing(message: Message) -> None:
            nonlocal sent
            if message["type"] == "http.response.body":
                size = len(message.get("body", b""))
                sent += size
                if counter is not None:
                    counter.inc(size)
                if not message.get("more_body", False) or sent >= length >= 0:
                    self.release()
            await send(message)

        try:
            await super().__call__(scope, receive, send_releasing)
        finally:
            self.release()


async def startup(deps: Deps) -> None:
    """Open the store at start, so a crashed upload's leftovers are swept before any request."""
    _ = deps.storage


def _object_headers(info: ObjectInfo) -> dict[str, str]:
    return {
        "Content-Length": str(info.size),
        "ETag": f'"{info.etag}"',
        "Last-Modified": info.last_modified.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT"),
        "Content-Type": "application/octet-stream",
        "Accept-Ranges": "bytes",
    }


def parse_range(header: str | None) -> ByteRange | None:
    """One `bytes=` range from a Range header; None (serve it all) when absent, multiple or malformed."""
    if header is None:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if not first:
        return ByteRange(None, suffix=int(last)) if last else None
    if last and int(last) < int(first):
        return None
    return ByteRange(int(first), int(last) if last else None)


def parse_etags(header: str) -> list[str]:
    """The etags an If-Match / If-None-Match header names, unquoted (weak `W/` forms too); `*` stays."""
    tags = []
    for part in header.split(","):
        tag = part.strip()
        if tag.startswith(("W/", "w/")):
            tag = tag[2:]
        tag = tag.strip().strip('"')
        if tag:
            tags.append(tag)
    return tags


def _matches(header: str, etag: str) -> bool:
    tags = parse_etags(header)
    return "*" in tags or etag in tags


def _not_modified(info: ObjectInfo) -> Response:
    headers = _object_headers(info)
    del headers["Content-Length"], headers["Content-Type"]
    return Response(status_code=304, headers=headers)


async def _write_condition(key: str, request: Request, storage: StorageAccess) -> tuple[bool, str | None]:
    """(if_absent, if_match) from a PUT's preconditions; several etags or `*` resolve against the object.

    Raises:
        InvalidRequest: If-None-Match names etags rather than `*`.
        PreconditionFailed: If-Match names no etag of the current object (or it is absent).
    """
    if_absent = False
    none_match = request.headers.get("if-none-match")
    if none_match is not None:
        if parse_etags(none_match) != ["*"]:
            raise InvalidRequest("PUT takes only `If-None-Match: *` (create only)")
        if_absent = True
    match = request.headers.get("if-match")
    if match is None:
        return if_absent, None
    tags = parse_etags(match)
    if len(tags) == 1 and tags[0] != "*":
        return if_absent, tags[0]
    try:
        current = (await storage.head(key)).etag
    except NotFound:
        raise PreconditionFailed(f"object {key!r} does not exist (If-Match)", key=key) from None
    if "*" not in tags and current not in tags:
        raise PreconditionFailed(f"object {key!r} has none of the etags given in If-Match", key=key)
    return if_absent, current


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
        412: {"description": "precondition_failed: If-None-Match / If-Match did not hold"},
        413: {"description": "too_large"},
        **_ERRORS,
    },
)
async def put_object(key: str, request: Request, storage: StorageDep) -> JSONResponse:
    """Stream the body into the store; 201 when new, 200 when it replaced an object."""
    with storage.slot():
        if_absent, if_match = await _write_condition(key, request, storage)
        result = await storage.put(
            key, request.stream(), _declared_length(request), if_absent=if_absent, if_match=if_match
        )
    body = StoredObject(key=result.info.key, size=result.info.size, etag=result.info.etag)
    return JSONResponse(body.model_dump(), status_code=200 if result.replaced else 201)


@router.get(
    "/objects/{key:objectkey}",
    summary="Read an object (streamed)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "the object's bytes"},
        206: {"content": {"application/octet-stream": {}}, "description": "the requested byte range"},
        304: {"description": "not modified: If-None-Match names its etag"},
        404: {"description": "not_found"},
        416: {"description": "range_not_satisfiable (Content-Range: bytes */size)"},
        **_ERRORS,
    },
)
async def get_object(key: str, request: Request, storage: StorageDep) -> Response:
    """The object's bytes with Content-Length and ETag; one Range, If-Range and If-None-Match honoured."""
    none_match = request.headers.get("if-none-match")
    if_range = request.headers.get("if-range")
    byte_range = parse_range(request.headers.get("range"))
    release = storage.acquire()
    try:
        if none_match is not None or (byte_range is not None and if_range is not None):
            current = await storage.head(key)
            if none_match is not None and _matches(none_match, current.etag):
                release()
                return _not_modified(current)
            if if_range is not None and parse_etags(if_range) != [current.etag]:
                byte_range = None  # changed (or a date): the whole object
        if byte_range is None:
            info, chunks = await storage.get(key)
            headers = _object_headers(info)
            status = 200
        else:
            info, (start, end), chunks = await storage.get_range(key, byte_range)
            headers = _object_headers(info)
            headers["Content-Length"] = str(end - start + 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
            status = 206
    except BaseException:
        release()
        raise
    return SlotStreamingResponse(
        chunks, release, status_code=status, headers=headers, media_type="application/octet-stream"
    )


@router.head(
    "/objects/{key:objectkey}",
    summary="An object's headers",
    responses={404: {"description": "not_found"}, **_ERRORS},
)
async def head_object(key: str, request: Request, storage: StorageDep) -> Response:
    """The same headers as GET, without the body (304 when If-None-Match names its etag)."""
    with storage.slot():
        info = await storage.head(key)
    none_match = request.headers.get("if-none-match")
    if none_match is not None and _matches(none_match, info.etag):
        return _not_modified(info)
    return Response(headers=_object_headers(info))


@router.delete(
    "/objects/{key:objectkey}",
    status_code=204,
    summary="Delete an object",
    responses={403: {"description": "reserved_key"}, 404: {"description": "not_found"}, **_ERRORS},
)
async def delete_object(key: str, storage: StorageDep) -> Response:
    """Remove the object: 204, or 404 when absent."""
    with storage.slot():
        await storage.delete(key)
    return Response(status_code=204)


@router.get("/objects", response_model=ObjectList, summary="List objects by prefix", responses=_ERRORS)
async def list_objects(
    storage: StorageDep,
    prefix: Annotated[str, Query(description="keys starting with this; follows the key rules")] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = DEFAULT_LIST_LIMIT,
    after: Annotated[
        str | None, Query(description="only keys after this one: the previous page's `next`")
    ] = None,
) -> ObjectList:
    """Objects whose key starts with `prefix`, sorted by key, at most `limit`, from just after `after`."""
    with storage.slot():
        page = await storage.list(prefix, limit, after)
    return ObjectList(
        objects=[
            ListedObject(key=o.key, size=o.size, etag=o.etag, last_modified=o.last_modified.isoformat())
            for o in page.objects
        ],
        truncated=page.truncated,
        next=page.next,
    )
