"""Tokens: the store (local and S3), the cache every process keeps, the scope table, when auth is on."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.routing import Route

from lakehouse.auth import (
    Scope,
    TokenCache,
    TokenStore,
    auth_required,
    is_loopback,
    required_scope,
    with_auth,
)
from lakehouse.auth.scopes import rule_for
from lakehouse.auth.tokens import TOKENS_PREFIX, hash_token
from lakehouse.config import AuthConfig, Settings, StorageConfig
from lakehouse.errors import AlreadyExists, InvalidName, InvalidRequest, NotFound
from lakehouse.services.app import create_app, full_openapi
from lakehouse.storage import ObjectStore

# --- the token store, over every backend -------------------------------------------------------


async def test_create_list_revoke(store: ObjectStore) -> None:
    tokens = TokenStore(store)
    token, record = await tokens.create("ci-reader", Scope.READ)
    assert re.fullmatch(r"lh_[A-Za-z0-9_-]{43}", token)
    assert record.name == "ci-reader" and record.scope is Scope.READ and record.expires_at is None
    await tokens.create("ops.admin", Scope.ADMIN, expires_days=7)
    listed = await tokens.list()
    assert [(r.name, r.scope) for r in listed] == [("ci-reader", Scope.READ), ("ops.admin", Scope.ADMIN)]
    assert listed[0].sha256 == hash_token(token)
    await tokens.revoke("ci-reader")
    assert [r.name for r in await tokens.list()] == ["ops.admin"]
    with pytest.raises(NotFound):
        await tokens.revoke("ci-reader")
    with pytest.raises(NotFound):
        await tokens.get("ci-reader")


async def test_an_existing_name_is_refused_and_keeps_its_token(store: ObjectStore) -> None:
    tokens = TokenStore(store)
    token, _ = await tokens.create("etl", Scope.WRITE)
    with pytest.raises(AlreadyExists):
        await tokens.create("etl", Scope.ADMIN)
    kept = await tokens.get("etl")
    assert (kept.scope, kept.sha256) == (Scope.WRITE, hash_token(token))


@pytest.mark.parametrize(
    "name", ["", "Upper", "-lead", ".lead", "a b", "a/b", "../x", "x\n", "é", "a" * 64, "a\x00"]
)
async def test_bad_names_are_refused(store: ObjectStore, name: str) -> None:
    with pytest.raises(InvalidName):
        await TokenStore(store).create(name, Scope.READ)
    assert await TokenStore(store).list() == []


async def test_only_a_hash_is_stored(store: ObjectStore) -> None:
    tokens = TokenStore(store)
    minted = [(await tokens.create(f"t{i}", scope))[0] for i, scope in enumerate(Scope)]
    objects, _ = await store.list()
    assert objects and all(o.key.startswith(TOKENS_PREFIX) for o in objects)
    for info in objects:
        data = await store.get_bytes(info.key)
        record = json.loads(data)
        assert set(record) == {"name", "scope", "sha256", "created_at", "expires_at"}
        for token in minted:
            assert token.encode() not in data
            assert token[3:].encode() not in data
    assert {json.loads(await store.get_bytes(o.key))["sha256"] for o in objects} == {
        hash_token(t) for t in minted
    }


async def test_expiry(store: ObjectStore) -> None:
    tokens = TokenStore(store)
    _, day = await tokens.create("day", Scope.READ, expires_days=1)
    assert day.expires_at is not None
    assert timedelta(hours=23) < day.expires_at - day.created_at <= timedelta(days=1)
    assert not day.expired()
    assert day.expired(datetime.now(UTC) + timedelta(days=2))
    _, old = await tokens.create("old", Scope.READ, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert old.expired()
    assert (await tokens.get("old")).expired()
    with pytest.raises(InvalidRequest):
        await tokens.create("never", Scope.READ, expires_days=0)


# --- the cache every process keeps ------------------------------------------------------------


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_cache_sees_new_and_revoked_tokens_after_a_refresh(store: ObjectStore) -> None:
    tokens = TokenStore(store)
    first, _ = await tokens.create("first", Scope.READ)
    clock = Clock()
    cache = TokenCache(store, fresh_secs=2.0, stale_secs=4.0, miss_secs=1.0, clock=clock)
    found = await cache.lookup(first)
    assert found is not None and found.name == "first"
    # A brand-new token is found by the one refresh a miss may trigger, once a second at most.
    second, _ = await tokens.create("second", Scope.WRITE)
    assert await cache.lookup(second) is None  # the last refresh is not a second old yet
    clock.now += 1.0
    found = await cache.lookup(second)
    assert found is not None and found.scope is Scope.WRITE
    # Garbage does not reach the store again within the second.
    await tokens.create("third", Scope.READ)
    assert await cache.lookup("lh_garbage") is None
    # Revoked: gone once the cache is stale (the request waits for the refresh then).
    await tokens.revoke("first")
    assert await cache.lookup(first) is not None  # still fresh
    clock.now += 4.0
    assert await cache.lookup(first) is None
    assert await cache.lookup(second) is not None


async def test_cache_rereads_a_replaced_record(store: ObjectStore) -> None:
    tokens = TokenStore(store)
    token, _ = await tokens.create("rotating", Scope.ADMIN)
    clock = Clock()
    cache = TokenCache(store, clock=clock)
    assert await cache.lookup(token) is not None
    await tokens.revoke("rotating")
    fresh, _ = await tokens.create("rotating", Scope.READ)
    clock.now += 10.0
    assert await cache.lookup(token) is None
    found = await cache.lookup(fresh)
    assert found is not None and found.scope is Scope.READ


async def test_cache_skips_malformed_records(store: ObjectStore) -> None:
    tokens = TokenStore(store)
    token, _ = await tokens.create("good", Scope.READ)
    await store.put_bytes(TOKENS_PREFIX + "bad.json", b"{not json")
    await store.put_bytes(TOKENS_PREFIX + "odd.json", json.dumps({"name": "odd", "scope": "root"}).encode())
    cache = TokenCache(store, clock=Clock())
    assert await cache.lookup(token) is not None
    assert cache.ready
    assert [r.name for r in await tokens.list()] == ["good"]


# --- which scope each route needs -------------------------------------------------------------

OPEN, READ, WRITE, ADMIN = None, Scope.READ, Scope.WRITE, Scope.ADMIN
DECISIONS = [
    ("GET", "/health", OPEN),
    ("HEAD", "/health", OPEN),
    ("GET", "/", OPEN),
    ("GET", "/console/app.js", OPEN),
    ("GET", "/console/assets/app.css", OPEN),
    ("GET", "/openapi.json", OPEN),
    ("GET", "/docs", OPEN),
    ("GET", "/docs/oauth2-redirect", OPEN),
    ("POST", "/health", ADMIN),
    ("POST", "/", ADMIN),
    ("DELETE", "/docs", ADMIN),
    ("GET", "/metrics", READ),
    ("GET", "/v1/storage/objects", READ),
    ("GET", "/v1/storage/objects/a/b.csv", READ),
    ("HEAD", "/v1/storage/objects/a/b.csv", READ),
    ("PUT", "/v1/storage/objects/a/b.csv", WRITE),
    ("DELETE", "/v1/storage/objects/a/b.csv", WRITE),
    ("PUT", "/v1/storage/objects/v1/catalog/datasets/x", WRITE),
    ("POST", "/v1/catalog/register", WRITE),
    ("GET", "/v1/catalog/datasets", READ),
    ("GET", "/v1/catalog/datasets/people", READ),
    ("GET", "/v1/catalog/datasets/people/versions", READ),
    ("DELETE", "/v1/catalog/datasets/people", ADMIN),
    ("POST", "/v1/catalog/datasets/people/expire", ADMIN),
    ("POST", "/v1/ingest/people", WRITE),
    ("POST", "/v1/sql", READ),
    ("POST", "/v1/embed", READ),
    ("POST", "/v1/embeddings", READ),
    ("POST", "/v1/ask", READ),
    ("GET", "/v1/vectors/index", READ),
    ("POST", "/v1/vectors/index", WRITE),
    ("GET", "/v1/vectors/index/docs", READ),
    ("DELETE", "/v1/vectors/index/docs", ADMIN),
    ("POST", "/v1/vectors/index/docs/search", READ),
    ("POST", "/v1/vectors/index/docs/add", WRITE),
    ("POST", "/v1/vectors/index/docs/sync", WRITE),
    ("DELETE", "/v1/vectors/index/docs/items/7", WRITE),
    ("GET", "/v1/chat/providers", READ),
    ("POST", "/v1/chat", READ),
    ("POST", "/v1/chat/completions", READ),
    ("GET", "/v1/models", READ),
    ("GET", "/v1/models/qwen3:4b", READ),
    ("GET", "/iceberg/v1/config", READ),
    ("GET", "/iceberg/v1/namespaces/default/tables/people", READ),
    ("HEAD", "/iceberg/v1/namespaces/default/tables/people", READ),
    ("POST", "/iceberg/v1/namespaces/default/tables/people/metrics", READ),
    ("POST", "/iceberg/v1/namespaces/default/tables/people", WRITE),
    ("POST", "/iceberg/v1/transactions/commit", WRITE),
    ("DELETE", "/iceberg/v1/namespaces/default/tables/people", ADMIN),
    # Unknown routes need a token, whatever they look like; a change needs admin (fails closed).
    ("GET", "/nowhere", READ),
    ("DELETE", "/v1/catalog/datasets/", ADMIN),
    ("DELETE", "/v1/catalog/datasets/a/b", ADMIN),
    ("GET", "//health", READ),
    ("GET", "/health/", READ),
    ("GET", "/healthz", READ),
    ("GET", "/docsx", READ),
    ("GET", "/consolex", READ),
    ("PATCH", "/v1/catalog/datasets/people", ADMIN),
]


@pytest.mark.parametrize(("method", "path", "need"), DECISIONS)
def test_scope_decisions(method: str, path: str, need: Scope | None) -> None:
    assert required_scope(method, path) == need


def test_scopes_include_the_ones_before() -> None:
    assert Scope.READ < Scope.WRITE < Scope.ADMIN
    assert [Scope.parse(s) for s in ("read", "write", "admin")] == [Scope.READ, Scope.WRITE, Scope.ADMIN]
    with pytest.raises(ValueError):
        Scope.parse("READ")


def _sample(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "sample", template)


def served_routes(tmp_path: Path) -> set[tuple[str, str]]:
    """(method, path template) of every route: the full OpenAPI document and the app's own pages."""
    routes = {
        (method.upper(), path)
        for path, operations in full_openapi()["paths"].items()
        for method in operations
        if method in ("get", "head", "put", "post", "delete", "patch")
    }
    app = create_app(Settings(storage=StorageConfig(root=str(tmp_path))))
    for route in app.routes:
        if isinstance(route, Route):  # /openapi.json, /docs and its redirect; the rest are routers
            routes.update((method, route.path) for method in route.methods or ())
    return routes


def test_every_route_of_the_full_app_has_an_explicit_scope(tmp_path: Path) -> None:
    routes = served_routes(tmp_path)
    for method, template in sorted(routes):
        assert rule_for(method, _sample(template)) is not None, (
            f"{method} {template} has no rule in lakehouse.auth.scopes.RULES: decide its scope there"
        )
    assert {
        ("DELETE", "/v1/vectors/index/{name}"),
        ("GET", "/docs"),
        ("PUT", "/v1/storage/objects/{key}"),
    } <= routes


def test_only_the_documented_routes_are_open(tmp_path: Path) -> None:
    open_routes = {
        template
        for method, template in served_routes(tmp_path)
        if required_scope(method, _sample(template)) is None
    }
    assert "/health" in open_routes
    assert open_routes <= {
        "/health",
        "/",
        "/console/{asset:path}",
        "/openapi.json",
        "/docs",
        "/docs/{asset}",
        "/docs/oauth2-redirect",
    }


# --- when tokens are required ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LOCALHOST", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("192.168.1.20", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("setting", "host", "required"),
    [
        ("auto", "127.0.0.1", False),
        ("auto", "localhost", False),
        ("auto", "0.0.0.0", True),
        ("auto", "10.1.2.3", True),
        ("auto", None, False),
        (True, "127.0.0.1", True),
        (True, None, True),
        (False, "0.0.0.0", False),
    ],
)
def test_auth_required(setting: str | bool, host: str | None, required: bool) -> None:
    settings = Settings(auth=AuthConfig(required=setting))  # type: ignore[arg-type]
    assert auth_required(settings, host) is required


async def _noop(scope: object, receive: object, send: object) -> None:
    return None


def test_auth_off_beyond_loopback_warns_loudly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="lakehouse.auth"):
        assert with_auth(_noop, Settings(auth=AuthConfig(required=False)), "0.0.0.0") is _noop
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "AUTHENTICATION IS OFF" in warnings[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="lakehouse.auth"):
        assert with_auth(_noop, Settings(auth=AuthConfig(required=False)), "127.0.0.1") is _noop
        assert with_auth(_noop, Settings(), "127.0.0.1") is _noop
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_a_change_to_a_route_the_table_does_not_name_needs_admin(method: str) -> None:
    assert required_scope(method, "/v1/not/a/route") == Scope.ADMIN
    assert required_scope("GET", "/v1/not/a/route") == Scope.READ
