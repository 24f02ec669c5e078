"""The face every service shows: health, request ids, error shapes, OpenAPI, start-up errors."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import StartLakehouse
from tests.support.procs import LAKEHOUSE, write_config

# Every route of CONTRACT.md, as (method, OpenAPI path).
CONTRACT_ROUTES = [
    ("get", "/health"),
    ("put", "/v1/storage/objects/{key}"),
    ("get", "/v1/storage/objects/{key}"),
    ("head", "/v1/storage/objects/{key}"),
    ("delete", "/v1/storage/objects/{key}"),
    ("get", "/v1/storage/objects"),
    ("post", "/v1/catalog/register"),
    ("get", "/v1/catalog/datasets"),
    ("get", "/v1/catalog/datasets/{name}"),
    ("get", "/v1/catalog/datasets/{name}/versions"),
    ("post", "/v1/ingest/{name}"),
    ("post", "/v1/sql"),
    ("post", "/v1/embed"),
    ("post", "/v1/vectors/index"),
    ("get", "/v1/vectors/index"),
    ("get", "/v1/vectors/index/{name}"),
    ("delete", "/v1/vectors/index/{name}"),
    ("post", "/v1/vectors/index/{name}/add"),
    ("post", "/v1/vectors/index/{name}/search"),
    ("delete", "/v1/vectors/index/{name}/items/{id}"),
    ("post", "/v1/chat"),
    ("get", "/v1/chat/providers"),
    ("post", "/v1/chat/completions"),
]


def test_health_and_request_ids(start_lakehouse: StartLakehouse) -> None:
    server = start_lakehouse()
    with server.client() as client:
        health = client.get("/health")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "service": "gateway", "version": health.json()["version"]}
        assert len(health.headers["x-request-id"]) >= 16
        echoed = client.get("/health", headers={"X-Request-ID": "trace-42"})
        assert echoed.headers["x-request-id"] == "trace-42"
        server.wait_for_log("id=trace-42")


def test_unknown_route_and_wrong_method_use_the_error_shape(start_lakehouse: StartLakehouse) -> None:
    server = start_lakehouse()
    with server.client() as client:
        missing = client.get("/v1/nothing/here", headers={"X-Request-ID": "r1"})
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        assert missing.headers["x-request-id"] == "r1"
        wrong = client.post("/health")
        assert wrong.status_code == 405
        assert wrong.json()["error"]["code"] == "method_not_allowed"
        assert "message" in wrong.json()["error"]


def test_openapi_describes_every_contract_route(start_lakehouse: StartLakehouse) -> None:
    server = start_lakehouse()
    with server.client() as client:
        paths = client.get("/openapi.json").json()["paths"]
    # Parameter names are not on the wire: compare the templates with them blanked.
    served = {re.sub(r"\{[^}]*\}", "{}", path): ops for path, ops in paths.items()}
    missing = [
        f"{method.upper()} {path}"
        for method, path in CONTRACT_ROUTES
        if method != "head" and method not in served.get(re.sub(r"\{[^}]*\}", "{}", path), {})
    ]
    assert missing == []


@pytest.mark.parametrize("service", [None, "queryd"])
def test_openapi_documents_validation_failures_as_400(
    start_lakehouse: StartLakehouse, service: str | None
) -> None:
    server = start_lakehouse(service=service)
    with server.client() as client:
        spec = client.get("/openapi.json").json()
        answer = client.post("/v1/sql", json={})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_request"
    documented_422 = [
        f"{method.upper()} {path}"
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if "422" in op.get("responses", {})
    ]
    assert documented_422 == []
    assert "400" in spec["paths"]["/v1/sql"]["post"]["responses"]


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ("[storage]\nbakend = 'local'\n", "storage.bakend"),
        ("[queryd]\ntimeout_secs = 'soon'\n", "queryd.timeout_secs"),
        ("[nonsense]\nx = 1\n", "nonsense"),
    ],
)
def test_bad_config_stops_start_up_naming_the_key(tmp_path: Path, body: str, named: str) -> None:
    config = tmp_path / "lakehouse.toml"
    config.write_text(body)
    result = subprocess.run(
        [LAKEHOUSE, "serve", "--config", str(config), "--bind", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert named in result.stderr


def test_wrong_type_in_the_environment_stops_start_up(tmp_path: Path) -> None:
    config = write_config(tmp_path / "lakehouse.toml", {"queryd": {"max_rows": 5}})
    result = subprocess.run(
        [LAKEHOUSE, "serve", "--config", str(config), "--bind", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"LAKEHOUSE_QUERYD__MAX_ROWS": "lots", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert "queryd.max_rows" in result.stderr
