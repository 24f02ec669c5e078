"""Prometheus metrics for one process: counted at the HTTP layer, served at `GET /metrics`.

Every request is counted by method, route TEMPLATE (never the raw path, so
cardinality stays bounded; a path no route matches is `unmatched`) and
status, and timed. The domain counters (SQL queries and timeouts, ingests,
vector searches, provider calls, errors by code, token failures) are read off
the same answers: the route says which operation ran, the status and the
error body's `code` how it ended, so the query, ingest and vector modules need
no hooks. Modules that know more (a provider's name) may call
`Metrics.provider_call`.

Each app gets its own `CollectorRegistry` (tests start several apps in one
process); nothing here is global.
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "unmatched"
# Latency buckets, seconds: sub-millisecond health checks to minute-long queries.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_CONVERTOR = re.compile(r"\{(\w+):[^}]*\}")
_PROVIDER_ROUTES = ("/v1/chat", "/v1/embed", "/v1/embeddings", "/v1/ask")
_ERROR_BODY_LIMIT = 8192


class Metrics:
    """The counters and histograms of one process, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        r = self.registry
        self.requests = Counter(
            "lakehouse_http_requests",
            "HTTP requests answered, by route template and status",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "lakehouse_http_request_duration_seconds",
            "Time from request to the end of its answer, by route template",
            ["method", "route"],
            buckets=BUCKETS,
            registry=r,
        )
        self.errors = Counter("lakehouse_errors", "Error answers by contract code", ["code"], registry=r)
        self.sql_queries = Counter("lakehouse_sql_queries", "SQL queries by status", ["status"], registry=r)
        self.sql_timeouts = Counter(
            "lakehouse_sql_timeouts", "SQL queries stopped by the timeout (408)", registry=r
        )
        self.ingests = Counter("lakehouse_ingests", "Ingest requests by status", ["status"], registry=r)
        self.vector_searches = Counter(
            "lakehouse_vector_searches", "Vector searches by status", ["status"], registry=r
        )
        self.provider_calls = Counter(
            "lakehouse_provider_calls",
            "Requests that call a model provider (chat, embeddings, ask), by route and status",
            ["route", "status"],
            registry=r,
        )
        self.provider_outcomes = Counter(
            "lakehouse_provider_outcomes",
            "Calls to a named provider, by outcome (reported by the provider layer)",
            ["provider", "outcome"],
            registry=r,
        )
        self.storage_bytes_sent = Counter(
            "lakehouse_storage_bytes_sent", "Object bytes sent by storage GETs (ranges included)", registry=r
        )
        self.auth_failures = Counter(
            "lakehouse_token_auth_failures",
            "Requests refused for their token: unauthorized (401) or insufficient_scope (403)",
            ["code"],
            registry=r,
        )

    def provider_call(self, provider: str, outcome: str) -> None:
        """Count one call to `provider` ending in `outcome` ("ok", or an error code)."""
        self.provider_outcomes.labels(provider, outcome).inc()

    def observe(self, method: str, route: str, status: int, seconds: float, code: str | None) -> None:
        """Count one answered request (and the domain counter its route belongs to)."""
        text = str(status)
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:  # labels() takes a lock and builds a tuple: done once per series
            children = self._children[key] = (
                self.requests.labels(method, route, text),
                self.latency.labels(method, route),
            )
        children[0].inc()
        children[1].observe(seconds)
        if code is not None:
            self.errors.labels(code).inc()
            if code in ("unauthorized", "insufficient_scope"):
                self.auth_failures.labels(code).inc()
        if method != "POST":
            return
        if route == "/v1/sql":
            self.sql_queries.labels(text).inc()
            if status == 408:
                self.sql_timeouts.inc()
        elif route.startswith("/v1/ingest"):
            self.ingests.labels(text).inc()
        elif route.startswith("/v1/vectors/") and route.endswith("/search"):
            self.vector_searches.labels(text).inc()
        elif route.startswith(_PROVIDER_ROUTES):
            self.provider_calls.labels(route, text).inc()

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


class RouteNamer:
    """A request's route template: the matched route's, else the first route whose path matches."""

    def __init__(self, routes: Callable[[], Sequence[BaseRoute]]) -> None:
        self._routes = routes
        self._patterns: list[tuple[re.Pattern[str], str]] | None = None
        self._match = functools.lru_cache(maxsize=4096)(self._match_path)

    def name(self, scope: Scope) -> str:
        """The template of the route that served (or would serve) this request."""
        route = scope.get("route")
        path = getattr(route, "path", None)
        if isinstance(path, str):
            return _template(path)
        return self._match(scope["path"])

    def _match_path(self, path: str) -> str:
        if self._patterns is None:
            routes = _flat(self._routes())
            self._patterns = [(r.path_regex, _CONVERTOR.sub(r"{\1}", r.path)) for r in routes]
        for regex, template in self._patterns:
            if regex.match(path):
                return template
        return UNMATCHED


@functools.lru_cache(maxsize=1024)
def _template(path: str) -> str:
    """A route path as a label: `{key:objectkey}` shown as `{key}`."""
    return _CONVERTOR.sub(r"{\1}", path)


def _flat(routes: Sequence[BaseRoute]) -> list[Route]:
    """Every plain route, also inside the routers FastAPI includes (none adds a prefix here)."""
    flat: list[Route] = []
    for route in routes:
        if isinstance(route, Route):
            flat.append(route)
        included = getattr(route, "original_router", None)
        if included is not None:
            flat.extend(_flat(included.routes))
    return flat


class MetricsMiddleware:
    """ASGI middleware: time and count every HTTP request, reading the error code off error bodies."""

    def __init__(self, app: ASGIApp, metrics: Metrics, namer: RouteNamer) -> None:
        self.app = app
        self.metrics = metrics
        self.namer = namer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        capture: list[bytes] | None = None
        size = 0

        async def counting_send(message: Message) -> None:
            nonlocal status, capture, size
            if message["type"] == "http.response.start":
                status = message["status"]
                if status >= 400 and _is_plain_json(message.get("headers", [])):
                    capture = []
            elif capture is not None and size < _ERROR_BODY_LIMIT:
                body: bytes = message.get("body", b"")
                capture.append(body)
                size += len(body)
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            code = _error_code(capture) if status >= 400 else None
            if status >= 400 and code is None:
                code = "internal" if status >= 500 else f"http_{status}"
            self.metrics.observe(
                scope["method"], self.namer.name(scope), status, time.perf_counter() - started, code
            )


def _is_plain_json(headers: Sequence[tuple[bytes, bytes]]) -> bool:
    json_type = False
    for name, value in headers:
        lowered = name.lower()
        if lowered == b"content-encoding":
            return False
        if lowered == b"content-type":
            json_type = b"json" in value.lower()
    return json_type


def _error_code(chunks: list[bytes] | None) -> str | None:
    if not chunks:
        return None
    try:
        body: Any = json.loads(b"".join(chunks))
    except ValueError:
        return None
    code = body.get("error", {}).get("code") if isinstance(body, dict) else None
    # Bounded: only snake_case codes of sensible length become label values.
    if isinstance(code, str) and len(code) <= 64 and code.replace("_", "").isalnum():
        return code
    return None


async def metrics_endpoint(request: Request) -> Response:
    """This process's metrics in the Prometheus text format (names start with `lakehouse_`)."""
    metrics: Metrics = request.app.state.metrics
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)


def add_metrics_route(app: FastAPI) -> None:
    """`GET /metrics` on `app`, reading `app.state.metrics`."""
    app.add_api_route(
        "/metrics",
        metrics_endpoint,
        methods=["GET"],
        tags=["health"],
        summary="Prometheus metrics of this process",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}},
    )
