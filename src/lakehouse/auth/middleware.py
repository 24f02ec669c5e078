"""The bearer-token check every app runs: the embedded app, each service alone, the gateway.

Pure ASGI, so streamed bodies pass straight through. A request whose route
needs a scope (see `lakehouse.auth.scopes`) must carry `Authorization:
Bearer <token>` naming a live token with that scope or more: otherwise 401
`unauthorized` (with `WWW-Authenticate: Bearer`) or 403 `insufficient_scope`,
in the contract's error body (under `/iceberg`, the Iceberg REST one).

Whether tokens are needed at all is `[auth] required`: "auto" means
whenever the process listens on an address other than loopback. Tokens are
never logged: nothing here writes a header, and the request log names only
method, path and status.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lakehouse.auth.cache import TokenCache
from lakehouse.auth.scopes import required_scope
from lakehouse.auth.tokens import TOKEN_PREFIX
from lakehouse.config import Settings
from lakehouse.errors import InsufficientScope, LakehouseError, Unauthorized, Unavailable

log = logging.getLogger("lakehouse.auth")

_ICEBERG_TYPES = {
    401: "NotAuthorizedException",
    403: "ForbiddenException",
    503: "ServiceUnavailableException",
}
_MAX_TOKEN_CHARS = 512


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or name a server binds) is reachable from this machine only."""
    host = host.strip().strip("[]").lower()
    if host in ("localhost", "localhost.", "ip6-localhost") or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False  # another host name: it may resolve to anything


def auth_required(settings: Settings, bind_host: str | None) -> bool:
    """Whether a process listening on `bind_host` (None: no socket, e.g. in-process) needs tokens."""
    setting = settings.auth.required
    if setting == "auto":
        return bind_host is not None and not is_loopback(bind_host)
    return bool(setting)


def with_auth(app: ASGIApp, settings: Settings, bind_host: str | None = None) -> ASGIApp:
    """`app` behind the token check when `[auth] required` asks for it; `app` itself otherwise.

    Use as `fastapi_app.add_middleware(with_auth, settings=..., bind_host=...)`
    or wrap a raw ASGI app directly.
    """
    if auth_required(settings, bind_host):
        log.info("tokens are required on %s ([auth] required = %r)", bind_host, settings.auth.required)
        return BearerAuth(app, settings)
    if bind_host is not None and not is_loopback(bind_host):
        log.warning(
            "!!! AUTHENTICATION IS OFF while listening on %s, beyond loopback: anyone who can reach this "
            'port can read, change and delete everything. Set [auth] required = true (or "auto") '
            "and create tokens with `lakehouse token create`. !!!",
            bind_host,
        )
    return app


class BearerAuth:
    """ASGI middleware: the scope each route needs, checked against the presented token."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self._cache: TokenCache | None = None

    @property
    def cache(self) -> TokenCache:
        """The token cache over this process's object store (opened on first use)."""
        if self._cache is None:
            from lakehouse.storage import open_store

            self._cache = TokenCache(open_store(self.settings))
        return self._cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self.app(scope, receive, self._closing(send))
        else:  # no websocket route takes tokens yet: refuse rather than pass unchecked
            await send({"type": "websocket.close", "code": 1008})

    def _closing(self, send: Send) -> Send:
        async def send_then_close(message: Message) -> None:
            if message["type"] == "lifespan.shutdown.complete" and self._cache is not None:
                cache, self._cache = self._cache, None
                await cache.aclose()
            await send(message)

        return send_then_close

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        need = required_scope(method, path)
        if need is None or (method == "OPTIONS" and _header(scope, b"access-control-request-method")):
            await self.app(scope, receive, send)  # open route, or a CORS preflight (never carries a token)
            return
        token = _bearer(scope)
        if token is None:
            await _refuse(
                scope, send, Unauthorized("this request needs a token: send 'Authorization: Bearer <token>'")
            )
            return
        record = None
        if token.startswith(TOKEN_PREFIX) and len(token) <= _MAX_TOKEN_CHARS:
            cache = self.cache
            record = await cache.lookup(token)
            if record is None and not cache.ready:
                await _refuse(
                    scope, send, Unavailable("the token records cannot be read from the object store")
                )
                return
        if record is None:
            await _refuse(scope, send, Unauthorized("the token is not valid: unknown or revoked"))
            return
        if record.expired():
            await _refuse(scope, send, Unauthorized(f"the token {record.name!r} has expired"))
            return
        if record.scope < need:
            await _refuse(
                scope,
                send,
                InsufficientScope(
                    f"{method} {path} needs the {need.label!r} scope; the token {record.name!r} has "
                    f"{record.scope.label!r}",
                    required=need.label,
                    scope=record.scope.label,
                ),
            )
            return
        scope.setdefault("state", {})["token_name"] = record.name
        await self.app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _bearer(scope: Scope) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    raw = _header(scope, b"authorization")
    if raw is None:
        return None
    scheme, _, token = raw.decode("latin-1").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


async def _refuse(scope: Scope, send: Send, exc: LakehouseError) -> None:
    """Answer with the error, in the Iceberg REST shape under /iceberg."""
    path: str = scope["path"]
    body: dict[str, Any]
    if path == "/iceberg" or path.startswith("/iceberg/"):
        kind = _ICEBERG_TYPES.get(exc.status, "RESTException")
        body = {"error": {"message": exc.message, "type": kind, "code": exc.status}}
    else:
        body = exc.body()
    data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if exc.status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    elif isinstance(exc, InsufficientScope):
        headers.append((b"www-authenticate", b'Bearer error="insufficient_scope"'))
    await send({"type": "http.response.start", "status": exc.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else data})
