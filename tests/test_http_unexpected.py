"""A route that crashes answers the contract's 500 on a connection that stays usable."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI

from lakehouse.services.http import RequestContext, install_error_handlers
from lakehouse.services.iceberg import IcebergErrors
from tests.fakes.server import RunningServer, serve_in_thread
from tests.support.rawhttp import connect, read_answer, request_bytes

UNEXPECTED = "the server hit an unexpected error; see its log"


def crashing_app() -> FastAPI:
    """An app with the services' error handling and middlewares, and routes that hit a bug."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/v1/crash")
    async def crash() -> None:
        raise RuntimeError("a bug in a route")

    @app.get("/iceberg/v1/crash")
    async def iceberg_crash() -> None:
        raise KeyError("a bug in an Iceberg route")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(IcebergErrors)
    app.add_middleware(RequestContext, service="test")
    return app


@pytest.fixture
def server() -> Iterator[RunningServer]:
    with serve_in_thread(crashing_app()) as running:
        yield running


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/crash", {"error": {"code": "internal", "message": UNEXPECTED}}),
        (
            "/iceberg/v1/crash",
            {
                "error": {
                    "message": UNEXPECTED,
                    "type": "ServerErrorException",
                    "code": 500,
                }
            },
        ),
    ],
    ids=["contract shape", "iceberg shape"],
)
def test_a_crash_is_a_500_in_the_routes_shape_and_the_connection_goes_on(
    server: RunningServer, path: str, body: dict[str, object]
) -> None:
    with connect(server.url) as sock:
        sock.sendall(request_bytes("GET", path))
        crashed = read_answer(sock)
        assert crashed.status == 500
        assert crashed.json() == body
        assert crashed.headers.get("x-request-id")
        sock.sendall(request_bytes("GET", "/health"))  # the same keep-alive connection
        after = read_answer(sock)
    assert after.status == 200
    assert after.json() == {"status": "ok"}
