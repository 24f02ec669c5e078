"""Bearer tokens against real `lakehouse serve` processes: every route x every kind of token.

Also: open paths stay open, revocation and new tokens take effect within 5 s
without a restart, split mode checks at the service and at the gateway, the
CLI and `lakehouse mcp` send `--token`, tokens never reach the log, and
`required = "auto"` on loopback leaves auth off.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from lakehouse.auth import Scope
from tests.support.cluster import LakehouseCluster
from tests.support.procs import LAKEHOUSE, LakehouseProcess, serving, write_config
from tests.support.tokens import mint, revoke

pytestmark = pytest.mark.e2e

PEOPLE_CSV = b"id,name,city\n1,Ada,Oslo\n2,Bo,Lima\n"
GARBAGE = "lh_" + "x" * 43
# The contract promises 5 s; allow nothing more.
PROPAGATION_SECS = 5.0


def bearer(token: str | None) -> dict[str, str]:
    """The Authorization header for `token` (none for None)."""
    return {"Authorization": f"Bearer {token}"} if token is not None else {}


@dataclass
class Lakehouse:
    """The module's lakehouse: auth on, a `people` dataset, one token of every kind."""

    proc: LakehouseProcess
    config: Path
    root: Path
    tokens: dict[str, str | None] = field(default_factory=dict)


@pytest.fixture(scope="module")
def lakehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lakehouse]:
    workdir = tmp_path_factory.mktemp("auth")
    root = workdir / "data"
    config = write_config(
        workdir / "lakehouse.toml",
        {
            "storage": {"root": str(root)},
            "auth": {"required": True},
            # The most talkative level, so the no-token-in-the-log test means something.
            "log": {"level": "debug"},
            "embedd": {"ollama_url": "http://127.0.0.1:9"},
            "chatd": {"ollama_url": "http://127.0.0.1:9"},
        },
    )
    tokens: dict[str, str | None] = {
        "none": None,
        "read": mint(root, "reader", Scope.READ),
        "write": mint(root, "writer", Scope.WRITE, expires_days=30),
        "admin": mint(root, "admin", Scope.ADMIN),
        "expired": mint(root, "expired", Scope.ADMIN, expires_at=datetime.now(UTC) - timedelta(minutes=1)),
        "revoked": mint(root, "revoked", Scope.ADMIN),
        "garbage": GARBAGE,
    }
    revoke(root, "revoked")
    with serving(config) as proc:
        with proc.client(headers=bearer(tokens["write"])) as client:
            answer = client.post(
                "/v1/ingest/people", content=PEOPLE_CSV, headers={"content-type": "text/csv"}
            )
            assert answer.status_code == 201, answer.text
        yield Lakehouse(proc, config, root, tokens)


# (method, path, request kwargs, scope needed)
READ, WRITE, ADMIN = Scope.READ, Scope.WRITE, Scope.ADMIN
ROUTES: list[tuple[str, str, dict[str, Any], Scope]] = [
    ("GET", "/v1/storage/objects", {}, READ),
    ("GET", "/v1/storage/objects/missing.txt", {}, READ),
    ("HEAD", "/v1/storage/objects/missing.txt", {}, READ),
    ("PUT", "/v1/storage/objects/auth/x.txt", {"content": b"x"}, WRITE),
    ("DELETE", "/v1/storage/objects/auth/missing.txt", {}, WRITE),
    ("POST", "/v1/catalog/register", {"json": {}}, WRITE),
    ("GET", "/v1/catalog/datasets", {}, READ),
    ("GET", "/v1/catalog/datasets/people", {}, READ),
    ("GET", "/v1/catalog/datasets/people/versions", {}, READ),
    ("DELETE", "/v1/catalog/datasets/ghost", {}, ADMIN),
    ("POST", "/v1/catalog/datasets/ghost/expire", {"json": {"keep_last": 1}}, ADMIN),
    ("POST", "/v1/ingest/people", {"content": PEOPLE_CSV, "headers": {"content-type": "text/csv"}}, WRITE),
    ("POST", "/v1/sql", {"json": {"sql": "SELECT count(*) FROM people"}}, READ),
    ("POST", "/v1/embed", {"json": {"texts": []}}, READ),
    ("POST", "/v1/embeddings", {"json": {}}, READ),
    ("GET", "/v1/vectors/index", {}, READ),
    ("POST", "/v1/vectors/index", {"json": {"name": "auth_idx", "dim": 2}}, WRITE),
    ("GET", "/v1/vectors/index/ghost", {}, READ),
    ("DELETE", "/v1/vectors/index/ghost", {}, ADMIN),
    ("POST", "/v1/vectors/index/ghost/add", {"json": {"items": []}}, WRITE),
    ("POST", "/v1/vectors/index/ghost/search", {"json": {"vector": [0.0, 1.0]}}, READ),
    ("POST", "/v1/vectors/index/ghost/sync", {}, WRITE),
    ("DELETE", "/v1/vectors/index/ghost/items/7", {}, WRITE),
    ("GET", "/v1/chat/providers", {}, READ),
    ("POST", "/v1/chat", {"json": {}}, READ),
    ("POST", "/v1/chat/completions", {"json": {}}, READ),
    ("POST", "/v1/ask", {"json": {}}, READ),
    ("GET", "/v1/models", {}, READ),
    ("GET", "/metrics", {}, READ),
    ("GET", "/iceberg/v1/config", {}, READ),
    ("POST", "/iceberg/v1/namespaces/default/tables/people", {"json": {}}, WRITE),
    ("DELETE", "/iceberg/v1/namespaces/default/tables/ghost", {}, ADMIN),
    ("GET", "/nowhere", {}, READ),
    # A change to a path no rule names (here a trailing slash) needs the most there is.
    ("DELETE", "/v1/catalog/datasets/people/", {}, ADMIN),
]
KINDS = ["none", "read", "write", "admin", "expired", "revoked", "garbage", "basic"]
GRANTS = {"read": READ, "write": WRITE, "admin": ADMIN}


def expected(kind: str, need: Scope) -> str:
    """'401', '403' or 'allowed' (any status but those two)."""
    if kind not in GRANTS:
        return "401"
    return "allowed" if GRANTS[kind] >= need else "403"


def assert_refusal(response: httpx.Response, path: str, status: int) -> None:
    """A 401 or 403 in the contract's shape (the Iceberg REST one under /iceberg)."""
    assert response.status_code == status, (path, response.status_code, response.text)
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"
    if response.request.method == "HEAD":
        return
    error = response.json()["error"]
    if path.startswith("/iceberg/"):
        kinds = {401: "NotAuthorizedException", 403: "ForbiddenException"}
        assert error["type"] == kinds[status] and error["code"] == status and error["message"]
    else:
        assert error["code"] == {401: "unauthorized", 403: "insufficient_scope"}[status]
        assert error["message"]


def test_every_route_with_every_kind_of_token(lakehouse: Lakehouse) -> None:
    failures = []
    with lakehouse.proc.client() as client:
        for method, path, kwargs, need in ROUTES:
            for kind in KINDS:
                headers = dict(kwargs.get("headers", {}))
                if kind == "basic":
                    headers["Authorization"] = "Basic YWRtaW46YWRtaW4="
                else:
                    headers.update(bearer(lakehouse.tokens[kind]))
                response = client.request(method, path, **{**kwargs, "headers": headers})
                want = expected(kind, need)
                if want == "allowed":
                    if response.status_code in (401, 403):
                        failures.append(f"{kind} {method} {path}: {response.status_code} {response.text}")
                    continue
                try:
                    assert_refusal(response, path, int(want))
                except (AssertionError, KeyError, ValueError) as exc:
                    failures.append(
                        f"{kind} {method} {path}: wanted {want}, got {response.status_code}: {exc}"
                    )
    assert not failures, "\n".join(failures)


def test_a_read_token_cannot_change_anything(lakehouse: Lakehouse) -> None:
    with lakehouse.proc.client(headers=bearer(lakehouse.tokens["read"])) as client:
        refused = client.put("/v1/storage/objects/auth/by-reader.txt", content=b"nope")
        assert refused.status_code == 403
        assert refused.json()["error"] == {
            "code": "insufficient_scope",
            "message": refused.json()["error"]["message"],
            "required": "write",
            "scope": "read",
        }
        assert client.get("/v1/storage/objects/auth/by-reader.txt").status_code == 404
        assert client.delete("/v1/catalog/datasets/people").status_code == 403
        assert client.get("/v1/catalog/datasets/people").status_code == 200


@pytest.mark.parametrize("path", ["/health", "/openapi.json", "/docs", "/docs/oauth2-redirect", "/"])
def test_open_paths_need_no_token(lakehouse: Lakehouse, path: str) -> None:
    with lakehouse.proc.client() as client:
        response = client.get(path)
    assert response.status_code == 200, response.text


def test_a_revoked_token_stops_working_within_5s(lakehouse: Lakehouse) -> None:
    token = mint(lakehouse.root, "short-lived", Scope.READ)
    with lakehouse.proc.client(headers=bearer(token)) as client:
        assert poll(lambda: client.get("/v1/catalog/datasets").status_code, {200}) == 200
        revoked = run_cli("token", "revoke", "short-lived", "--config", str(lakehouse.config))
        assert revoked.returncode == 0, revoked.stderr
        since = time.monotonic()
        status = 200
        while time.monotonic() - since < PROPAGATION_SECS:
            status = client.get("/v1/catalog/datasets").status_code
            if status == 401:
                break
            time.sleep(0.1)
        assert status == 401, f"still {status} {PROPAGATION_SECS}s after the revoke"


def poll(status: Callable[[], int], wanted: set[int], secs: float = PROPAGATION_SECS) -> int:
    """Call `status` until it answers one of `wanted` or `secs` pass; its last answer."""
    since = time.monotonic()
    got = status()
    while got not in wanted and time.monotonic() - since < secs:
        time.sleep(0.1)
        got = status()
    return got


def test_a_new_token_works_within_5s(lakehouse: Lakehouse) -> None:
    created = run_cli(
        "token", "create", "fresh", "--scope", "write", "--json", "--config", str(lakehouse.config)
    )
    assert created.returncode == 0, created.stderr
    since = time.monotonic()
    body = json.loads(created.stdout.strip().splitlines()[-1])
    assert (body["name"], body["scope"], body["expires_at"]) == ("fresh", "write", None)
    status = 0
    with lakehouse.proc.client(headers=bearer(body["token"])) as client:
        while time.monotonic() - since < PROPAGATION_SECS:
            status = client.put("/v1/storage/objects/auth/fresh.txt", content=b"hi").status_code
            if status in (200, 201):
                break
            time.sleep(0.1)
    assert status in (200, 201), f"still {status} {PROPAGATION_SECS}s after the token was created"


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `lakehouse ARGS`; its output as text."""
    return subprocess.run(
        [LAKEHOUSE, *args], capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})}
    )


def test_cli_token_commands_and_sql_with_a_token(lakehouse: Lakehouse) -> None:
    config = str(lakehouse.config)
    created = run_cli("token", "create", "cli-user", "--scope", "write", "--config", config)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("lh_")
    listed = run_cli("token", "list", "--json", "--config", config)
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["cli-user"]["scope"] == "write" and rows["expired"]["expired"] is True
    assert "revoked" not in rows
    assert token not in listed.stdout and "sha256" not in listed.stdout
    table = run_cli("token", "list", "--config", config)
    assert "cli-user" in table.stdout and token not in table.stdout
    again = run_cli("token", "create", "cli-user", "--config", config)
    assert again.returncode == 1 and "already_exists" in again.stderr

    gateway = ["--gateway", lakehouse.proc.url]
    query = ["sql", "SELECT count(*) AS n FROM people", "--format", "json", *gateway]
    refused = run_cli(*query)
    assert refused.returncode == 1 and "unauthorized" in refused.stderr
    answered = run_cli(*query, "--token", token)
    assert answered.returncode == 0, answered.stderr
    assert json.loads(answered.stdout)["rows"] == [[2]]
    from_env = run_cli(*query, env={"LAKEHOUSE_TOKEN": token})
    assert from_env.returncode == 0, from_env.stderr

    csv = lakehouse.root.parent / "pets.csv"
    csv.write_bytes(b"id,kind\n1,cat\n")
    ingested = run_cli("ingest", str(csv), "--name", "pets", *gateway, "--token", token)
    assert ingested.returncode == 0, ingested.stderr
    reader = run_cli("ingest", str(csv), "--name", "pets", *gateway, "--token", str(lakehouse.tokens["read"]))
    assert reader.returncode == 1 and "insufficient_scope" in reader.stderr


@asynccontextmanager
async def mcp_session(*args: str) -> AsyncIterator[ClientSession]:
    """A ready MCP client session to a `lakehouse mcp ARGS` subprocess."""
    params = StdioServerParameters(command=LAKEHOUSE, args=["mcp", *args])
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def test_mcp_sends_the_token(lakehouse: Lakehouse) -> None:
    url = lakehouse.proc.url
    async with mcp_session("--gateway", url, "--token", str(lakehouse.tokens["read"])) as session:
        result = await session.call_tool("list_datasets", {})
        assert not result.is_error, result.content
        text = "".join(getattr(item, "text", "") for item in result.content)
        assert "people" in text
    async with mcp_session("--gateway", url) as session:
        result = await session.call_tool("list_datasets", {})
        assert result.is_error
        assert "unauthorized" in "".join(getattr(item, "text", "") for item in result.content)


def test_no_token_is_ever_logged(lakehouse: Lakehouse) -> None:
    tokens = [t for t in lakehouse.tokens.values() if t]
    with lakehouse.proc.client() as client:
        for token in tokens:
            client.get("/v1/catalog/datasets", headers=bearer(token))
            client.post("/v1/sql", json={"sql": "SELECT 1"}, headers=bearer(token))
            client.put("/v1/storage/objects/auth/log.txt", content=b"x", headers=bearer(token))
        # A readable request after them, so the log has caught up with every line before it.
        marker = client.get("/health", headers={"x-request-id": "auth-log-marker"})
        assert marker.status_code == 200
    deadline = time.monotonic() + 20.0
    while "auth-log-marker" not in lakehouse.proc.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = lakehouse.proc.log()
    assert "auth-log-marker" in log
    assert "/v1/catalog/datasets 401" in log and "/v1/catalog/datasets 200" in log
    for token in tokens:
        assert token not in log
        assert token[3:20] not in log


def test_split_mode_checks_at_the_service_and_at_the_gateway(tmp_path: Path) -> None:
    cluster = LakehouseCluster("split", tmp_path, config={"auth": {"required": True}}, services=["catalogd"])
    token = mint(tmp_path / "data", "split-reader", Scope.READ)
    try:
        cluster.start_all()
        for url in (cluster.service("catalogd").url, cluster.url):
            with httpx.Client(base_url=url, timeout=30.0) as client:
                refused = client.get("/v1/catalog/datasets")
                assert refused.status_code == 401, (url, refused.text)
                assert refused.headers["www-authenticate"] == "Bearer"
                assert refused.json()["error"]["code"] == "unauthorized"
                allowed = client.get("/v1/catalog/datasets", headers=bearer(token))
                assert allowed.status_code == 200, (url, allowed.text)
                scoped = client.delete("/v1/catalog/datasets/ghost", headers=bearer(token))
                assert scoped.status_code == 403 and scoped.json()["error"]["code"] == "insufficient_scope"
                assert client.get("/health").status_code == 200
        with cluster.client() as client:
            # The gateway refuses before proxying: even a service that is not running answers 401.
            assert client.post("/v1/sql", json={"sql": "SELECT 1"}).status_code == 401
            assert client.get("/openapi.json").status_code == 200
    finally:
        cluster.kill9_all()


def test_auto_on_loopback_needs_no_token(tmp_path: Path) -> None:
    config = write_config(tmp_path / "lakehouse.toml", {"storage": {"root": str(tmp_path / "data")}})
    with serving(config) as proc:
        with proc.client() as client:
            assert client.get("/v1/catalog/datasets").status_code == 200
            put = client.put("/v1/storage/objects/open.txt", content=b"x")
            assert put.status_code == 201, put.text
        assert "AUTHENTICATION IS OFF" not in proc.log()


def test_token_records_are_not_served_by_the_storage_api(lakehouse: Lakehouse) -> None:
    """Even an admin token cannot list, read or probe the token records (hashes) through storage."""
    with lakehouse.proc.client(headers=bearer(lakehouse.tokens["admin"])) as client:
        for prefix in ("", "_lakehouse/", "_lakehouse/auth/", "_lakehouse/auth/tokens/"):
            listing = client.get("/v1/storage/objects", params={"prefix": prefix, "limit": 10000})
            assert listing.status_code == 200, listing.text
            assert not [o for o in listing.json()["objects"] if o["key"].startswith("_lakehouse/auth/")]
        for key in ("_lakehouse/auth/tokens/reader.json", "_lakehouse/auth/tokens/admin.json"):
            assert (lakehouse.root / "objects" / key).exists()  # there on disk, invisible through the API
            assert client.get(f"/v1/storage/objects/{key}").status_code == 404
            assert client.head(f"/v1/storage/objects/{key}").status_code == 404
            assert client.put(f"/v1/storage/objects/{key}", content=b"{}").status_code == 403
            assert client.delete(f"/v1/storage/objects/{key}").status_code == 403
