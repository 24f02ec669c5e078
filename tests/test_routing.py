"""Each service's routes are tried only for the paths it owns: no route may lie outside them."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from lakehouse.config import Settings, StorageConfig
from lakehouse.services.app import create_app, full_openapi
from lakehouse.services.table import SERVICES, owns

# Served by the app itself, not by a service.
APP_PATHS = {"/health", "/metrics"}


def test_every_route_of_a_service_lies_under_the_prefixes_it_owns() -> None:
    seen = set()
    for spec in SERVICES.values():
        app = FastAPI()
        app.include_router(importlib.import_module(spec.module).router)  # as written, unfiltered
        paths = set(app.openapi()["paths"])
        assert paths, spec.name
        for path in paths:
            assert owns(spec.prefixes, path), (
                f"{spec.name} serves {path} outside {spec.prefixes}: it would be hidden"
            )
        seen |= paths
    assert {"/v1/vectors/index/{name}/search", "/v1/sql", "/iceberg/v1/config", "/v1/ask"} <= seen
    assert seen == set(full_openapi()["paths"]) - APP_PATHS


@pytest.mark.parametrize(
    ("prefixes", "path", "owned"),
    [
        (("/v1/sql",), "/v1/sql", True),
        (("/v1/sql",), "/v1/sql/", True),
        (("/v1/sql",), "/v1/sqlx", False),  # a prefix owns whole segments only
        (("/v1/embed", "/v1/embeddings"), "/v1/embeddings", True),
        (("/v1/embed",), "/v1/embeddings", False),
        (("/v1/vectors",), "/v1/vectors/index/a/search", True),
        (("/v1/vectors",), "/v1", False),
        (("/iceberg",), "/iceberg/v1/config", True),
    ],
)
def test_a_prefix_owns_itself_and_what_lies_under_it(
    prefixes: tuple[str, ...], path: str, owned: bool
) -> None:
    assert owns(prefixes, path) is owned


def test_each_service_answers_its_own_paths_and_no_other(tmp_path: Path) -> None:
    with TestClient(create_app(Settings(storage=StorageConfig(root=str(tmp_path))))) as client:
        # One route of each service, the last-included ones too, answers as the contract says.
        assert client.get("/v1/vectors/index").json() == {"indexes": []}
        assert client.post("/v1/sql", json={"sql": "SELECT 1 AS one"}).json()["rows"] == [[1]]
        assert client.get("/v1/catalog/datasets").status_code == 200
        assert client.get("/iceberg/v1/config").status_code == 200
        assert client.get("/v1/storage/objects/absent.txt").status_code == 404
        # A path beside a prefix, not under it, belongs to no service.
        for path in ("/v1/sqlx", "/v1/vectorsx/index", "/v1/storage_objects"):
            answer = client.get(path)
            assert answer.status_code == 404, path
            assert answer.json()["error"]["code"] == "not_found", path
    assert set(SERVICES) == {"storaged", "catalogd", "ingestd", "queryd", "vectord", "embedd", "chatd"}
