"""The split-mode gateway: a raw ASGI reverse proxy in front of the services.

It answers `/health`, `/openapi.json`, `/metrics`, `/docs` and the console
(`/`, `/console/...`) itself and streams every other request to the service
owning its path prefix (`[gateway] <service>_url`), bodies flowing chunk by
chunk both ways so a 256 MiB upload never sits in memory.

Why raw ASGI and aiohttp: routing each request through FastAPI and proxying
with httpx measured far slower than the service behind it; one pooled
`aiohttp.ClientSession` (built in the lifespan, no auto-decompression) and a
plain prefix lookup keep the gateway close to the service's own speed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from fastapi.openapi.docs import get_swagger_ui_oauth2_redirect_html
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from yarl import URL

from lakehouse.auth import with_auth
from lakehouse.config import Settings
from lakehouse.console import console_response, is_console_path
from lakehouse.errors import NotFound
from lakehouse.services.compression import GzipJson
from lakehouse.services.cors import with_cors
from lakehouse.services.docs import OAUTH2_REDIRECT, asset_response, docs_page
from lakehouse.services.http import RequestContext, health_body
from lakehouse.services.iceberg import IcebergErrors
from lakehouse.services.limits import BodyLimits
from lakehouse.services.metrics import Metrics, MetricsMiddleware, RouteNamer
from lakehouse.services.table import SERVICES, ServiceSpec, service_for_path

log = logging.getLogger("lakehouse.gateway")

# Connection-scoped headers (RFC 9110 7.6.1) never cross a proxy; Host is set
# for the upstream and Expect is answered by our own server.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
    }
)
_NOT_FORWARDED = HOP_BY_HOP | {b"host", b"expect"}
# Our own server writes these; passing the upstream's too would duplicate them.
_NOT_RETURNED = HOP_BY_HOP | {b"date", b"server"}
_SKIP_AUTO_HEADERS = frozenset({"Accept", "Accept-Encoding", "User-Agent", "Content-Type"})
_GATEWAY_PATHS = ("/health", "/openapi.json", "/docs", "/metrics")


class Gateway:
    """ASGI app: own health, OpenAPI, metrics and docs, everything else proxied by path prefix."""

    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics if metrics is not None else Metrics()
        self.session: aiohttp.ClientSession | None = None
        self._openapi: bytes | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path in _GATEWAY_PATHS or path.startswith("/docs/") or is_console_path(path):
            await self._own_route(scope, send)
            return
        spec = service_for_path(path)
        if spec is None:
            await _send_error(send, 404, "not_found", f"no route for {scope['method']} {path}")
            return
        await self._proxy(spec, scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.session = _new_session(self.settings)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                    self.session = None
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _own_route(self, scope: Scope, send: Send) -> None:
        method = scope["method"]
        path = scope["path"]
        if method not in ("GET", "HEAD"):
            await _send_error(
                send,
                405,
                "method_not_allowed",
                f"{method} is not allowed on {path}",
                extra_headers=[(b"allow", b"GET, HEAD")],
            )
            return
        if path == "/health":
            await _send_json(send, 200, _dumps(health_body("gateway")), head=method == "HEAD")
        elif path == "/openapi.json":
            if self._openapi is None:
                from lakehouse.services.app import full_openapi

                self._openapi = _dumps(full_openapi())
            await _send_json(send, 200, self._openapi, head=method == "HEAD")
        elif path == "/metrics":
            body = self.metrics.render()
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", CONTENT_TYPE_LATEST.encode()),
                        (b"content-length", str(len(body)).encode()),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
        else:
            # The console, and the same Swagger UI page and local assets the embedded app serves.
            page: ASGIApp
            if is_console_path(path):
                try:
                    page = console_response(path, _if_none_match(scope))
                except NotFound as exc:
                    await _send_error(send, 404, exc.code, exc.message)
                    return
            elif path == "/docs":
                page = docs_page("lakehouse gateway - Swagger UI")
            elif path == OAUTH2_REDIRECT:
                page = get_swagger_ui_oauth2_redirect_html()
            else:
                try:
                    page = asset_response(path.removeprefix("/docs/"))
                except NotFound as exc:
                    await _send_error(send, 404, exc.code, exc.message)
                    return
            await page({"type": "http", "method": method, "headers": []}, _no_body, send)

    async def _proxy(self, spec: ServiceSpec, scope: Scope, receive: Receive, send: Send) -> None:
        session = self.session
        if session is None:  # served without a lifespan (e.g. some test clients)
            session = self.session = _new_session(self.settings)
        base = spec.upstream(self.settings)
        target = base + scope["raw_path"].decode("latin-1")
        if scope["query_string"]:
            target += "?" + scope["query_string"].decode("latin-1")
        headers: list[tuple[str, str]] = []
        has_body = False
        # Headers the client named in `Connection` are hop-by-hop too.
        skip = _NOT_FORWARDED | {
            token.strip().lower()
            for name, value in scope["headers"]
            if name == b"connection"
            for token in value.split(b",")
        }
        for name, value in scope["headers"]:
            if name in skip:
                if name == b"transfer-encoding":
                    has_body = True
                continue
            if name == b"content-length":
                has_body = value != b"0"
            headers.append((name.decode("latin-1"), value.decode("latin-1")))
        client = scope.get("client")
        if client:
            headers.append(("X-Forwarded-For", str(client[0])))
        data = _request_body(receive) if has_body else None
        started = False
        try:
            async with session.request(
                scope["method"],
                URL(target, encoded=True),
                headers=headers,
                data=data,
                allow_redirects=False,
                skip_auto_headers=_SKIP_AUTO_HEADERS,
            ) as upstream:
                returned = [(k, v) for k, v in upstream.raw_headers if k.lower() not in _NOT_RETURNED]
                await send({"type": "http.response.start", "status": upstream.status, "headers": returned})
                started = True
                if scope["method"] != "HEAD":
                    async for chunk in upstream.content.iter_any():
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            log.warning("upstream %s at %s unreachable: %s", spec.name, base, exc)
            await _send_error(
                send,
                503,
                "unavailable",
                f"{spec.name} is unreachable at {base}; is `lakehouse serve {spec.name}` running?",
                service=spec.name,
                url=base,
            )
        except TimeoutError:
            if started:
                raise
            await _send_error(
                send,
                504,
                "upstream_timeout",
                f"{spec.name} at {base} did not answer within {self.settings.gateway.proxy_timeout_secs}s",
                service=spec.name,
                url=base,
            )
        except aiohttp.ClientError as exc:
            if started:
                raise
            log.warning("upstream %s at %s failed: %s", spec.name, base, exc)
            await _send_error(
                send,
                502,
                "upstream_error",
                f"{spec.name} at {base} dropped the request: {exc}",
                service=spec.name,
                url=base,
            )


def _if_none_match(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"if-none-match":
            return bytes(value).decode("latin-1")
    return None


async def _no_body() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


def _new_session(settings: Settings) -> aiohttp.ClientSession:
    """One pooled session for every upstream; bytes pass through untouched."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60.0, ttl_dns_cache=None),
        timeout=aiohttp.ClientTimeout(
            total=None, sock_connect=5.0, sock_read=settings.gateway.proxy_timeout_secs
        ),
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        skip_auto_headers=_SKIP_AUTO_HEADERS,
    )


async def _request_body(receive: Receive) -> AsyncIterator[bytes]:
    """The client's body, chunk by chunk as the server hands it over."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError("client went away mid-upload")
        chunk: bytes = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


def _dumps(value: Any) -> bytes:
    """JSON exactly as the services' own responses write it."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


async def _send_json(
    send: Send,
    status: int,
    body: bytes,
    *,
    head: bool = False,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra_headers or []),
    ]
    start: Message = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _send_error(
    send: Send,
    status: int,
    code: str,
    message: str,
    *,
    extra_headers: list[tuple[bytes, bytes]] | None = None,
    **detail: Any,
) -> None:
    body = _dumps({"error": {"code": code, "message": message, **detail}})
    await _send_json(send, status, body, extra_headers=extra_headers)


def create_gateway_app(settings: Settings, *, bind_host: str | None = None) -> ASGIApp:
    """The gateway for split mode, with request ids, request logs and the token check.

    It checks tokens itself and passes the `Authorization` header on, so each
    service behind it can check again. Its metrics label requests by the
    services' route templates; gzip leaves answers an upstream already
    compressed as they are.
    """
    metrics = Metrics()
    inner = with_cors(with_auth(Gateway(settings, metrics), settings, bind_host), settings.http)
    counted = MetricsMiddleware(BodyLimits(inner, settings.http), metrics, RouteNamer(_routes))
    return RequestContext(GzipJson(IcebergErrors(counted)), service="gateway")


def _routes() -> list[BaseRoute]:
    """Every route the gateway answers or proxies, for the metrics' route templates."""
    own: list[BaseRoute] = [
        Route(p, _no_endpoint) for p in (*_GATEWAY_PATHS, "/docs/{asset}", "/", "/console/{asset:path}")
    ]
    return own + [route for spec in SERVICES.values() for route in spec.router().routes]


async def _no_endpoint() -> None:  # pragma: no cover - only its path is used
    """A placeholder endpoint: these routes only name templates."""
