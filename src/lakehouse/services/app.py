"""The app factory: one FastAPI app serving some or all services, or the gateway."""

from __future__ import annotations

import asyncio
import importlib
import logging
import threading
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.middleware.cors import CORSMiddleware

from lakehouse import __version__
from lakehouse.auth import with_auth
from lakehouse.config import Settings
from lakehouse.console import add_console_routes
from lakehouse.services.compression import GzipJson
from lakehouse.services.cors import cors_options
from lakehouse.services.deps import Deps
from lakehouse.services.docs import add_docs_routes
from lakehouse.services.http import RequestContext, health_body, install_error_handlers
from lakehouse.services.iceberg import IcebergErrors
from lakehouse.services.limits import BodyLimits
from lakehouse.services.metrics import Metrics, MetricsMiddleware, RouteNamer, add_metrics_route
from lakehouse.services.table import SERVICES, ServiceSpec

log = logging.getLogger("lakehouse.app")
# What a start leaves out and requests import on first use: the services needing it, the module
# whose `load()` imports it, and its name. pyiceberg: the requests writing Iceberg tables (register,
# ingest, the REST catalog, expire); aiohttp: calls to model providers (chat, embeddings, searches
# by text); httpx: `/v1/ask`'s tool calls; bm25s: keyword searches.
_WARM_UPS = (
    (frozenset({"catalogd", "ingestd"}), "lakehouse.catalog.iceberg", "pyiceberg"),
    (frozenset({"chatd", "embedd", "vectord"}), "lakehouse.providers.transport", "aiohttp"),
    (frozenset({"chatd"}), "lakehouse.ask.backend", "httpx"),
    (frozenset({"vectord"}), "lakehouse.vectors.keyword", "bm25s"),
)


def create_app(
    settings: Settings,
    services: Iterable[str] | None = None,
    *,
    name: str = "gateway",
    bind_host: str | None = None,
) -> FastAPI:
    """An app serving `services` in-process (all of them when None).

    `name` is what `/health` reports: "gateway" for the embedded all-in-one
    process, the service's own name when it runs alone. `bind_host` is where
    the process listens (None: nowhere, e.g. in-process), which decides
    whether `[auth] required = "auto"` asks for tokens.
    """
    specs = [SERVICES[s] for s in (services if services is not None else SERVICES)]
    deps = Deps(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            for spec in specs:
                await _startup(spec, deps)
            yield
        finally:
            await deps.aclose()

    app = FastAPI(
        title=f"lakehouse {name}",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.deps = deps
    app.state.metrics = metrics = Metrics()
    install_error_handlers(app)

    @app.get("/health", tags=["health"], summary="Liveness and version")
    async def health() -> dict[str, str]:
        return health_body(name)

    for spec in specs:
        app.include_router(spec.owned_router())
    add_metrics_route(app)
    add_docs_routes(app, f"lakehouse {name} - Swagger UI")
    if name == "gateway":  # the embedded all-in-one process is the gateway too
        add_console_routes(app)
    # Listed innermost first: the request id wraps everything, gzip sees the
    # final JSON, the metrics see every status (401s, 413s and preflights too).
    app.add_middleware(with_auth, settings=settings, bind_host=bind_host)
    if settings.http.cors_origins:
        app.add_middleware(CORSMiddleware, **cors_options(settings.http))
    app.add_middleware(BodyLimits, http=settings.http)
    app.add_middleware(MetricsMiddleware, metrics=metrics, namer=RouteNamer(lambda: app.routes))
    app.add_middleware(IcebergErrors)
    app.add_middleware(GzipJson)
    app.add_middleware(RequestContext, service=name)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, routes=app.routes)
            app.openapi_schema = contract_errors(spec)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


async def _startup(spec: ServiceSpec, deps: Deps) -> None:
    hook = getattr(importlib.import_module(spec.module), "startup", None)
    if hook is not None:
        await hook(deps)


def warm_up(services: Iterable[str], deps: Deps | None = None) -> None:
    """Import, on a worker thread, what requests to `services` need and start-up left out.

    Called by `lakehouse serve` once it is listening, so the imports do not
    slow the start down: pyiceberg (about 0.3 s, see `catalog.iceberg`), then
    aiohttp and bm25s (about 0.1 s each) and httpx. A first request then rarely
    waits for one, and one that does waits off the event loop for this same
    import (each module's `load`), never a half-done one. One thread imports
    them in turn, so they never race each other through shared packages.

    With `deps` of an app serving vectord, the thread starts once its indexes
    have loaded and linked what they replayed: imports hold the interpreter,
    and next to a 300,000-vector replay they kept the index from answering
    about 0.7 s longer. A request needing a module meanwhile imports it itself.
    """
    wanted = set(services)
    modules = [(module, what) for needed_by, module, what in _WARM_UPS if needed_by & wanted]
    if not modules:
        return
    thread = threading.Thread(target=_load, args=(modules,), name="lakehouse-warm-up", daemon=True)
    if deps is None or "vectord" not in wanted:
        thread.start()
        return
    task = asyncio.get_running_loop().create_task(_start_when_settled(deps, thread))
    _WAITING.add(task)
    task.add_done_callback(_WAITING.discard)


# The warm-ups waiting for indexes to load, kept so none is collected while it waits.
_WAITING: set[asyncio.Task[None]] = set()


async def _start_when_settled(deps: Deps, thread: threading.Thread) -> None:
    await deps.vectors.wait_settled()
    thread.start()


def _load(modules: list[tuple[str, str]]) -> None:
    for module, what in modules:
        try:
            importlib.import_module(module).load()
        except ImportError as exc:  # the first request needing it raises it again, to its caller
            log.warning("could not import %s ahead of use: %s", what, exc)


def full_openapi() -> dict[str, Any]:
    """The OpenAPI document of every route the lakehouse serves."""
    app = FastAPI(title="lakehouse", version=__version__)

    @app.get("/health", tags=["health"], summary="Liveness and version")
    async def health() -> dict[str, str]:
        return health_body("gateway")

    for spec in SERVICES.values():
        app.include_router(spec.router())
    add_metrics_route(app)
    return contract_errors(get_openapi(title="lakehouse", version=__version__, routes=app.routes))


ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}


def contract_errors(spec: dict[str, Any]) -> dict[str, Any]:
    """Document request validation failures as served: 400 `invalid_request`, not FastAPI's 422."""
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            if responses.pop("422", None) is not None:
                answer = responses.setdefault("400", {"description": "Invalid request"})
                answer.setdefault(
                    "content", {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
                )
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["ErrorBody"] = ERROR_SCHEMA
    return spec
