"""The gateway proxy against a small real upstream: headers, statuses, timeouts, unreachable services."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from lakehouse.config import GatewayConfig, Settings
from lakehouse.services.gateway import create_gateway_app
from tests.support.procs import closed_url


async def echo(request: web.Request) -> web.Response:
    """Report what arrived: method, path, query, headers and body size."""
    body = await request.read()
    seen = {
        "method": request.method,
        "path": request.raw_path,
        "headers": {k.lower(): v for k, v in request.headers.items()},
        "size": len(body),
    }
    return web.json_response(seen, headers={"ETag": '"v1"', "X-Upstream": "yes"})


async def limited(request: web.Request) -> web.Response:
    """A rate-limited answer with Retry-After."""
    return web.json_response(
        {"error": {"code": "rate_limited", "message": "slow down"}}, status=429, headers={"Retry-After": "7"}
    )


async def slow(request: web.Request) -> web.Response:
    """An upstream that takes longer than the gateway waits."""
    await asyncio.sleep(2)
    return web.json_response({})


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    """A real HTTP server on 127.0.0.1 standing in for catalogd."""
    app = web.Application()
    app.router.add_route("*", "/v1/catalog/echo/{tail:.*}", echo)
    app.router.add_get("/v1/catalog/limited", limited)
    app.router.add_get("/v1/catalog/slow", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def gateway(upstream: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client talking to the gateway app in-process, catalogd pointing at the fake upstream."""
    settings = Settings(
        gateway=GatewayConfig(catalogd_url=upstream, storaged_url=closed_url(), proxy_timeout_secs=0.5)
    )
    app = create_gateway_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        yield client
    inner: Any = app
    while not hasattr(inner, "session"):  # through the middleware layers to the Gateway itself
        inner = inner.app
    session = inner.session
    if session is not None:
        await session.close()


async def test_requests_arrive_intact_without_hop_by_hop_headers(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post(
        "/v1/catalog/echo/a%20b/c?x=1&y=%2F",
        content=b"z" * 1000,
        headers={
            "X-Request-ID": "req-9",
            "Connection": "keep-alive, X-Private",
            "X-Private": "secret",
            "Proxy-Authorization": "Basic abc",
            "TE": "trailers",
            "X-Custom": "kept",
        },
    )
    assert response.status_code == 200
    seen = response.json()
    assert seen["method"] == "POST"
    assert seen["path"] == "/v1/catalog/echo/a%20b/c?x=1&y=%2F"
    assert seen["size"] == 1000
    headers = seen["headers"]
    assert headers["x-request-id"] == "req-9"
    assert headers["x-custom"] == "kept"
    assert headers["content-length"] == "1000"
    for dropped in ("x-private", "proxy-authorization", "te"):
        assert dropped not in headers
    assert response.headers["etag"] == '"v1"'
    assert response.headers["x-upstream"] == "yes"
    assert response.headers["x-request-id"] == "req-9"


async def test_status_and_retry_after_pass_through(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/v1/catalog/limited")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"]["code"] == "rate_limited"


async def test_slow_upstream_is_504(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/v1/catalog/slow")
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert "catalogd" in response.json()["error"]["message"]


async def test_unreachable_upstream_is_503_and_unknown_paths_404(gateway: httpx.AsyncClient) -> None:
    down = await gateway.get("/v1/storage/objects/a")
    assert down.status_code == 503
    error = down.json()["error"]
    assert (error["code"], error["service"]) == ("unavailable", "storaged")
    assert error["url"] in error["message"]
    missing = await gateway.get("/v2/anything")
    assert missing.status_code == 404
    assert json.loads(missing.content) == {
        "error": {"code": "not_found", "message": "no route for GET /v2/anything"}
    }
    health = await gateway.head("/health")
    assert health.status_code == 200
    assert health.content == b""
