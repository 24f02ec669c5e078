"""What a client sees is the same whether the lakehouse runs in one process or split behind the gateway."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import StartCluster
from tests.support.cluster import MODES, LakehouseCluster
from tests.support.procs import LakehouseProcess

MIB = 1024 * 1024
CAP = 16 * MIB
# The services these tests touch; in split mode only they are started.
USED = ["storaged", "catalogd"]


@pytest.fixture
def cluster(start_cluster: StartCluster) -> LakehouseCluster:
    """A fresh lakehouse in the current mode, with storaged and catalogd, for tests that kill or fill it."""
    return start_cluster(services=USED)


@pytest.fixture(scope="module", params=MODES)
def shared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LakehouseCluster]:
    """One lakehouse per mode shared by the tests below that only touch their own keys (starts are slow)."""
    cluster = LakehouseCluster(
        request.param,
        tmp_path_factory.mktemp(f"shared-{request.param}"),
        config={"storage": {"max_object_bytes": CAP}},
        services=USED,
    )
    try:
        yield cluster.start_all()
    finally:
        cluster.kill9_all()


def wait_for_log(proc: LakehouseProcess, needle: str, timeout: float = 5.0) -> bool:
    """Whether `needle` shows up in the process's log within `timeout` (lines land after the response)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if needle in proc.log():
            return True
        time.sleep(0.05)
    return False


def chunks(data: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    """A body sent chunked, without Content-Length."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is the contract's error body with this status and code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert error["message"]
    return error


def test_health_openapi_and_error_shapes(lakehouse_cluster: LakehouseCluster) -> None:
    with lakehouse_cluster.client() as client:
        health = client.get("/health")
        assert health.status_code == 200
        assert health.json()["status"] == "ok"
        assert health.json()["service"] == "gateway"
        paths = client.get("/openapi.json").json()["paths"]
        assert {"/v1/storage/objects/{key}", "/v1/catalog/register", "/v1/sql"} <= set(paths)
        docs = client.get("/docs")
        assert docs.status_code == 200
        assert "/openapi.json" in docs.text
        assert_error(client.get("/v1/nothing"), 404, "not_found")
        assert_error(client.get("/v1/catalog/no/such/route"), 404, "not_found")
        assert_error(client.post("/health"), 405, "method_not_allowed")
        assert_error(client.delete("/v1/catalog/datasets"), 405, "method_not_allowed")
        assert_error(client.post("/v1/catalog/register", content=b"{"), 400, "invalid_request")


def test_request_ids_are_echoed_and_reach_the_service(shared: LakehouseCluster) -> None:
    cluster = shared
    with cluster.client() as client:
        echoed = client.get("/v1/catalog/datasets", headers={"X-Request-ID": "trace-split-7"})
        assert echoed.status_code == 200
        assert echoed.headers["x-request-id"] == "trace-split-7"
        minted = client.get("/v1/catalog/datasets")
        assert len(minted.headers["x-request-id"]) >= 16
        assert minted.headers.get_list("x-request-id") == [minted.headers["x-request-id"]]
    # The service that did the work logged the same id the client saw.
    assert wait_for_log(cluster.service("catalogd"), "trace-split-7")
    assert wait_for_log(cluster.service("catalogd"), minted.headers["x-request-id"])


def test_multi_mib_objects_stream_both_ways(shared: LakehouseCluster) -> None:
    cluster = shared
    data = os.urandom(12 * MIB + 17)
    with cluster.client() as client:
        sized = client.put("/v1/storage/objects/blobs/sized.bin", content=data)
        assert sized.status_code == 201, sized.text
        assert sized.json()["size"] == len(data)
        streamed = client.put("/v1/storage/objects/blobs/streamed.bin", content=chunks(data))
        assert streamed.status_code == 201, streamed.text
        replaced = client.put("/v1/storage/objects/blobs/streamed.bin", content=chunks(data))
        assert replaced.status_code == 200
        digest = hashlib.sha256()
        with client.stream("GET", "/v1/storage/objects/blobs/streamed.bin") as response:
            assert response.status_code == 200
            assert response.headers["content-length"] == str(len(data))
            etag = response.headers["etag"]
            for part in response.iter_bytes():
                digest.update(part)
        assert digest.digest() == hashlib.sha256(data).digest()
        head = client.head("/v1/storage/objects/blobs/streamed.bin")
        assert head.status_code == 200
        assert head.content == b""
        assert (head.headers["content-length"], head.headers["etag"]) == (str(len(data)), etag)
        assert_error(client.get("/v1/storage/objects/blobs/absent.bin"), 404, "not_found")
        assert client.head("/v1/storage/objects/blobs/absent.bin").status_code == 404
        listed = client.get("/v1/storage/objects", params={"prefix": "blobs/"}).json()
        assert [o["key"] for o in listed["objects"]] == ["blobs/sized.bin", "blobs/streamed.bin"]
        assert client.delete("/v1/storage/objects/blobs/sized.bin").status_code == 204


def test_encoded_keys_and_query_strings_pass_through_untouched(shared: LakehouseCluster) -> None:
    cluster = shared
    with cluster.client() as client:
        stored = client.put("/v1/storage/objects/odd/a%20b%C3%A9%2Bc.txt", content=b"odd")
        assert stored.status_code == 201, stored.text
        assert stored.json()["key"] == "odd/a b\u00e9+c.txt"
        assert client.get("/v1/storage/objects/odd/a%20b%C3%A9%2Bc.txt").content == b"odd"
        listed = client.get("/v1/storage/objects?prefix=odd%2Fa%20b&limit=1").json()
        assert [o["key"] for o in listed["objects"]] == ["odd/a b\u00e9+c.txt"]
        assert_error(client.get("/v1/storage/objects/odd/%2E%2E/x"), 400, "invalid_key")


def test_oversize_bodies_are_refused_the_same_way(shared: LakehouseCluster) -> None:
    data = os.urandom(CAP + MIB)
    with shared.client() as client:
        assert_error(client.put("/v1/storage/objects/big/sized.bin", content=data), 413, "too_large")
        assert_error(
            client.put("/v1/storage/objects/big/chunked.bin", content=chunks(data)), 413, "too_large"
        )
        assert client.get("/v1/storage/objects", params={"prefix": "big/"}).json()["objects"] == []
        # The connection pool is still healthy afterwards.
        assert client.put("/v1/storage/objects/big/small.bin", content=b"ok").status_code == 201


def test_catalog_through_the_front_door_survives_kill_9(cluster: LakehouseCluster) -> None:
    with cluster.client() as client:
        client.put("/v1/storage/objects/raw/1.parquet", content=b"abc")
        body = {
            "name": "trips",
            "schema": [{"name": "id", "type": "BIGINT"}],
            "objects": [{"key": "raw/1.parquet", "size": 3, "rows": 2}],
            "row_count": 2,
        }
        created = client.post("/v1/catalog/register", json=body)
        assert created.status_code == 201
        assert client.post("/v1/catalog/register", json=body).status_code == 200
        drift = {**body, "schema": [{"name": "id", "type": "VARCHAR"}]}
        assert_error(client.post("/v1/catalog/register", json=drift), 409, "schema_drift")
    cluster.kill9_all()
    cluster.restart_all()
    with cluster.client() as client:
        assert client.get("/v1/catalog/datasets/trips").json() == created.json()
        assert client.get("/v1/storage/objects/raw/1.parquet").content == b"abc"


@pytest.mark.parametrize("lakehouse_mode", ["split"])
def test_a_stopped_service_is_503_naming_it(cluster: LakehouseCluster) -> None:
    catalogd = cluster.service("catalogd")
    catalogd.kill9()
    with cluster.client() as client:
        down = client.get("/v1/catalog/datasets", headers={"X-Request-ID": "down-1"})
        error = assert_error(down, 503, "unavailable")
        assert "catalogd" in error["message"]
        assert catalogd.url in error["message"]
        assert down.headers["x-request-id"] == "down-1"
        # Other services keep working, and catalogd is back once restarted.
        assert client.get("/v1/storage/objects").status_code == 200
        catalogd.start()
        assert client.get("/v1/catalog/datasets").status_code == 200
