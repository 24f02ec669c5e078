"""The one HTTP face every app shares: request ids, request logs, error bodies, health."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import pydantic_core
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lakehouse import __version__
from lakehouse.errors import LakehouseError

log = logging.getLogger("lakehouse.http")

REQUEST_ID = "x-request-id"


class RequestContext:
    """ASGI middleware: echo or mint `X-Request-ID` and log one line per request.

    Pure ASGI (no BaseHTTPMiddleware) so streamed bodies pass straight through.
    """

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")[:200]
                break
        if not request_id:
            request_id = uuid.uuid4().hex
            scope["headers"] = [*scope["headers"], (b"x-request-id", request_id.encode())]
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            ms = (time.perf_counter() - started) * 1000
            log.info(
                "%s %s %d %.1fms id=%s svc=%s",
                scope["method"],
                scope["path"],
                status,
                ms,
                request_id,
                self.service,
            )


class FastJSONResponse(JSONResponse):
    """JSON rendered by pydantic-core's encoder: the bytes `JSONResponse` writes, several times faster.

    For answers made only of JSON values (str, int, float, bool, None, lists
    and str-keyed dicts of them), such as search hits, where encoding was a
    large share of a request. A non-finite float becomes null rather than the
    500 `JSONResponse` would raise.
    """

    def render(self, content: Any) -> bytes:
        """The content as compact UTF-8 JSON."""
        return pydantic_core.to_json(content, inf_nan_mode="null")


def error_response(exc: LakehouseError) -> JSONResponse:
    """Render a typed error as the contract's body."""
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers or None)


def _error(status: int, code: str, message: str, **detail: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **detail}}, status_code=status)


async def _lakehouse_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LakehouseError)
    if exc.status >= 500:
        log.warning("%s %s failed: %s", request.method, request.url.path, exc.message)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, ClientDisconnect):  # FastAPI's wrapping of a body cut short
        return await _client_disconnect(request, exc.__cause__)
    if exc.status_code == 404:
        return _error(404, "not_found", f"no route for {request.method} {request.url.path}")
    if exc.status_code == 405:
        response = _error(405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}")
        if exc.headers and "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    code = "invalid_request" if 400 <= exc.status_code < 500 else "internal"
    return _error(exc.status_code, code, str(exc.detail))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        problems.append({"field": loc, "problem": err.get("msg", "invalid")})
    first = problems[0] if problems else {"field": "", "problem": "invalid"}
    where = f"'{first['field']}'" if first["field"] else "the body"
    return _error(400, "invalid_request", f"{where}: {first['problem']}", problems=problems)


# Not a status any client sees (it has gone): what the request log shows for a
# client that left mid-request, as nginx does.
CLIENT_GONE = 499


async def _client_disconnect(request: Request, exc: Exception) -> Response:
    log.debug("%s %s: the client disconnected mid-request", request.method, request.url.path)
    return Response(status_code=CLIENT_GONE)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("%s %s crashed", request.method, request.url.path)
    return _error(500, "internal", "the server hit an unexpected error; see its log")


class UnexpectedErrors:
    """ASGI middleware, innermost: an unexpected exception becomes the contract's 500 inside the app.

    Starlette answers a handler for `Exception` from its outermost layer and
    then raises the exception again, so the server drops the keep-alive
    connection without a word, and the middlewares in between (the Iceberg
    error shape, the metrics) never see the answer. Here the 500 is an
    ordinary response. An exception after the response has started cannot be
    answered any more; it goes on up, and the connection ends.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception as exc:
            if started:
                raise
            response = await _unexpected(Request(scope), exc)
            await response(scope, receive, send)


def install_error_handlers(app: FastAPI) -> None:
    """Make every error leave the app in the contract's shape.

    Call it before adding the other middlewares, so `UnexpectedErrors` is the innermost.
    """
    app.add_exception_handler(LakehouseError, _lakehouse_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ClientDisconnect, _client_disconnect)
    app.add_middleware(UnexpectedErrors)
    # What still escapes (a middleware's own failure) is answered from the outermost layer.
    app.add_exception_handler(Exception, _unexpected)


def health_body(service: str) -> dict[str, str]:
    """The contract's `/health` answer."""
    return {"status": "ok", "service": service, "version": __version__}
