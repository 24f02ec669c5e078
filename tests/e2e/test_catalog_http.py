"""catalogd over HTTP in a real process: register, read, history, bad input, kill -9."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import StartLakehouse
from tests.support.procs import LakehouseProcess, serving, write_config

SCHEMA = [{"name": "id", "type": "BIGINT"}, {"name": "city", "type": "VARCHAR"}]


def put_object(client: httpx.Client, key: str, data: bytes) -> dict[str, Any]:
    """Store a data file through storaged and return it as a manifest object."""
    stored = client.put(f"/v1/storage/objects/{key}", content=data)
    assert stored.status_code in (200, 201), stored.text
    return {"key": key, "size": len(data), "rows": 3}


def register(client: httpx.Client, name: str, objects: list[dict[str, Any]], **extra: Any) -> httpx.Response:
    """POST a register request."""
    body = {"name": name, "schema": SCHEMA, "objects": objects, "row_count": 3 * len(objects), **extra}
    return client.post("/v1/catalog/register", json=body)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is the contract's error body with this status and code."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    return error


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LakehouseProcess]:
    """One process for the tests that each use their own dataset (process starts are slow)."""
    root = tmp_path_factory.mktemp("catalog-shared")
    config = write_config(root / "lakehouse.toml", {"storage": {"root": str(root / "data")}})
    with serving(config) as proc:
        yield proc


@pytest.fixture
def server(start_lakehouse: StartLakehouse) -> LakehouseProcess:
    """One embedded lakehouse process."""
    return start_lakehouse()


def test_register_read_and_history(shared: LakehouseProcess) -> None:
    with shared.client() as client:
        first = put_object(client, "raw/history/1.parquet", b"one")
        created = register(client, "history", [first])
        assert created.status_code == 201
        v1 = created.json()
        assert (v1["name"], v1["version"], v1["parent_version"], v1["row_count"]) == ("history", 1, None, 3)
        assert v1["schema"] == SCHEMA
        # The version holds its own copy of the user's object, in the dataset's area.
        (copied,) = v1["objects"]
        assert copied["key"].startswith("_lakehouse/datasets/history/")
        assert {**copied, "key": first["key"]} == first
        assert len(v1["fingerprint"]) == 64
        again = register(client, "history", [first])
        assert again.status_code == 200
        assert again.json() == v1
        second = put_object(client, "raw/history/2.parquet", b"two!")
        v2 = register(client, "history", [first, second], extra={"sha256": "abc"}).json()
        assert (v2["version"], v2["parent_version"], v2["extra"]) == (2, 1, {"sha256": "abc"})
        assert client.get("/v1/catalog/datasets/history").json() == v2
        assert client.get("/v1/catalog/datasets/history", params={"version": 1}).json() == v1
        versions = client.get("/v1/catalog/datasets/history/versions").json()["versions"]
        assert [(v["version"], v["row_count"]) for v in versions] == [(1, 3), (2, 6)]
        assert versions[0]["fingerprint"] == v1["fingerprint"]
        assert versions[1]["created_at"] == v2["created_at"]
        listed = client.get("/v1/catalog/datasets").json()["datasets"]
        summary = {"name": "history", "version": 2, "row_count": 6, "updated_at": v2["created_at"]}
        assert summary in listed


def test_bad_register_bodies_get_the_contract_errors(shared: LakehouseProcess) -> None:
    with shared.client() as client:
        part = put_object(client, "raw/bad_bodies/1.parquet", b"one")
        good = {"name": "bad_bodies", "schema": SCHEMA, "objects": [part], "row_count": 3}
        malformed = client.post(
            "/v1/catalog/register",
            content=b'{"name": "bad_bodies", ',
            headers={"content-type": "application/json"},
        )
        assert_error(malformed, 400, "invalid_request")
        for broken in (
            {**good, "row_count": "three"},
            {**good, "row_count": -1},
            {**good, "schema": "id BIGINT"},
            {**good, "schema": [{"name": "id"}]},
            {**good, "objects": [{**part, "size": -5}]},
            {**good, "objects": [{**part, "rows": 1.5}]},
            {k: v for k, v in good.items() if k != "objects"},
            [good],
        ):
            assert_error(client.post("/v1/catalog/register", json=broken), 400, "invalid_request")
        for name in ("Trips", "1trips", "a-b", "", "x" * 64):
            assert_error(register(client, name, [part]), 400, "invalid_name")
        assert_error(register(client, "bad_bodies", [{**part, "key": "../up"}]), 400, "invalid_key")
        assert_error(register(client, "bad_bodies", [{**part, "size": 99}]), 400, "invalid_request")
        ghost = {"key": "raw/bad_bodies/ghost.parquet", "size": 1, "rows": 3}
        missing = assert_error(register(client, "bad_bodies", [ghost]), 400, "missing_object")
        assert missing["missing"] == [ghost["key"]]
        # None of the rejected requests left a version behind.
        assert_error(client.get("/v1/catalog/datasets/bad_bodies"), 404, "not_found")
        listed = client.get("/v1/catalog/datasets").json()["datasets"]
        assert "bad_bodies" not in [d["name"] for d in listed]


def test_schema_drift_is_409_with_the_column_diff(shared: LakehouseProcess) -> None:
    with shared.client() as client:
        part = put_object(client, "raw/drift/1.parquet", b"one")
        assert register(client, "drift", [part]).status_code == 201
        drifted = {
            "name": "drift",
            "schema": [{"name": "id", "type": "VARCHAR"}, {"name": "fare", "type": "DOUBLE"}],
            "objects": [part],
            "row_count": 3,
        }
        error = assert_error(client.post("/v1/catalog/register", json=drifted), 409, "schema_drift")
        assert error["added"] == [{"name": "fare", "type": "DOUBLE"}]
        assert error["removed"] == [{"name": "city", "type": "VARCHAR"}]
        assert error["changed"] == [{"name": "id", "from": "BIGINT", "to": "VARCHAR"}]
        assert [
            v["version"] for v in client.get("/v1/catalog/datasets/drift/versions").json()["versions"]
        ] == [1]


def test_parent_version_mismatch_is_409_version_conflict(shared: LakehouseProcess) -> None:
    with shared.client() as client:
        first = put_object(client, "raw/cas/1.parquet", b"one")
        second = put_object(client, "raw/cas/2.parquet", b"two!")
        error = assert_error(register(client, "cas", [first], parent_version=1), 409, "version_conflict")
        assert (error["dataset"], error["expected"], error["current"]) == ("cas", 1, 0)
        assert_error(client.get("/v1/catalog/datasets/cas"), 404, "not_found")
        v1 = register(client, "cas", [first], parent_version=0)
        assert v1.status_code == 201 and v1.json()["version"] == 1
        v2 = register(client, "cas", [first, second], parent_version=1)
        assert v2.status_code == 201 and v2.json()["parent_version"] == 1
        # A writer that built its objects from version 1 is refused now that 2 exists.
        stale = assert_error(register(client, "cas", [second], parent_version=1), 409, "version_conflict")
        assert (stale["expected"], stale["current"]) == (1, 2)
        assert_error(register(client, "cas", [second], parent_version=0), 409, "version_conflict")
        for bad in (-1, "2", 1.5, True):
            assert_error(register(client, "cas", [second], parent_version=bad), 400, "invalid_request")
        # Same content as the current version stays a 200, whatever the parent said.
        assert register(client, "cas", [first, second], parent_version=1).status_code == 200
        history = client.get("/v1/catalog/datasets/cas/versions").json()["versions"]
        assert [v["version"] for v in history] == [1, 2]
        described = client.get("/openapi.json").json()["components"]["schemas"]["RegisterRequest"]
        assert "version_conflict" in described["properties"]["parent_version"]["description"]


def test_unknown_datasets_versions_and_bad_parameters(shared: LakehouseProcess) -> None:
    with shared.client() as client:
        assert_error(client.get("/v1/catalog/datasets/nothing"), 404, "not_found")
        assert_error(client.get("/v1/catalog/datasets/nothing/versions"), 404, "not_found")
        part = put_object(client, "raw/unknown/1.parquet", b"one")
        register(client, "unknown", [part])
        assert_error(client.get("/v1/catalog/datasets/unknown", params={"version": 7}), 404, "not_found")
        for bad in ("0", "-1", "latest"):
            assert_error(
                client.get("/v1/catalog/datasets/unknown", params={"version": bad}), 400, "invalid_request"
            )
        assert_error(client.get("/v1/catalog/datasets/Bad-Name"), 400, "invalid_name")
        assert_error(client.get("/v1/catalog/datasets/Bad-Name/versions"), 400, "invalid_name")
        assert client.put("/v1/catalog/datasets/unknown").status_code == 405
        assert_error(client.get("/v1/catalog/register"), 405, "method_not_allowed")


def test_concurrent_registers_over_http_get_distinct_versions(shared: LakehouseProcess) -> None:
    with shared.client() as client:
        parts = [put_object(client, f"raw/racing/{i}.parquet", b"x" * (i + 1)) for i in range(12)]

    def one(part: dict[str, Any]) -> int:
        with shared.client() as client:
            response = register(client, "racing", [part])
            assert response.status_code == 201, response.text
            version: int = response.json()["version"]
            return version

    with ThreadPoolExecutor(6) as pool:
        versions = sorted(pool.map(one, parts))
    assert versions == list(range(1, 13))


def test_everything_acknowledged_survives_kill_9(server: LakehouseProcess) -> None:
    acknowledged: list[dict[str, Any]] = []
    with server.client() as client:
        for i in range(5):
            part = put_object(client, f"raw/trips/{i}.parquet", b"y" * (i + 1))
            response = register(client, "trips", [part])
            assert response.status_code == 201
            acknowledged.append(response.json())
    server.kill9()
    server.start()
    with server.client() as client:
        versions = client.get("/v1/catalog/datasets/trips/versions").json()["versions"]
        assert [v["version"] for v in versions] == [1, 2, 3, 4, 5]
        for manifest in acknowledged:
            fetched = client.get("/v1/catalog/datasets/trips", params={"version": manifest["version"]})
            assert fetched.json() == manifest
        assert client.get("/v1/catalog/datasets/trips").json() == acknowledged[-1]


def test_catalog_on_s3_survives_kill_9(
    start_lakehouse: StartLakehouse, s3_endpoint: str, s3_env: dict[str, str], tmp_path: Path
) -> None:
    import boto3

    bucket = f"catalog-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    storage = {
        "backend": "s3",
        "bucket": bucket,
        "endpoint": s3_endpoint,
        "secrets": str(tmp_path / "no.toml"),
    }
    server = start_lakehouse(config={"storage": storage}, env=s3_env)
    with server.client() as client:
        parts = [put_object(client, f"raw/s3/{i}.parquet", b"s3" * (i + 1)) for i in range(3)]
        acknowledged = [register(client, "trips", [part]).json() for part in parts]
        assert [m["version"] for m in acknowledged] == [1, 2, 3]
        assert register(client, "trips", [parts[-1]]).status_code == 200
    server.kill9()
    server.start()
    with server.client() as client:
        assert client.get("/v1/catalog/datasets/trips").json() == acknowledged[-1]
        versions = client.get("/v1/catalog/datasets/trips/versions").json()["versions"]
        assert [v["fingerprint"] for v in versions] == [m["fingerprint"] for m in acknowledged]


# --- hostile registers, pinned versions, deletion ----------------------------------------------

INJECTION = 'INTEGER) AS "a" WHERE false; CREATE OR REPLACE VIEW people AS SELECT 666 AS id --'


def test_a_type_that_is_not_a_duckdb_type_is_400_and_no_view_changes(shared: LakehouseProcess) -> None:
    name = f"inj_{uuid.uuid4().hex[:8]}"
    with shared.client() as c:
        for text in (INJECTION, "INTEGER; DROP TABLE x", "INTEGER -- x", "INTEGER /* x */", "nonsense"):
            body = {"name": name, "schema": [{"name": "id", "type": text}], "objects": [], "row_count": 0}
            assert_error(c.post("/v1/catalog/register", json=body), 400, "invalid_request")
        assert c.get(f"/v1/catalog/datasets/{name}").status_code == 404
        body = {
            "name": name,
            "schema": [{"name": "id", "type": "decimal(18, 3)"}],
            "objects": [],
            "row_count": 0,
        }
        created = c.post("/v1/catalog/register", json=body)
        assert created.status_code == 201, created.text
        assert created.json()["schema"] == [{"name": "id", "type": "DECIMAL(18,3)"}]
        too_wide = {"name": name, "schema": [{"name": f"c{i}", "type": "INTEGER"} for i in range(10_001)]}
        assert_error(
            c.post("/v1/catalog/register", json={**too_wide, "objects": [], "row_count": 0}),
            400,
            "invalid_request",
        )


def test_a_version_over_a_user_object_survives_its_replacement_and_deletion(shared: LakehouseProcess) -> None:
    name = f"pin_{uuid.uuid4().hex[:8]}"
    key = f"uploads/{name}.parquet"
    with shared.client() as c:
        assert c.put(f"/v1/storage/objects/{key}", content=b"first bytes").status_code in (200, 201)
        created = register(c, name, [{"key": key, "rows": 3}])  # no size: the server reads it
        assert created.status_code == 201, created.text
        (pinned,) = created.json()["objects"]
        assert pinned["key"].startswith(f"_lakehouse/datasets/{name}/") and pinned["size"] == 11
        again = register(c, name, [{"key": key, "rows": 3, "size": 11}])
        assert (again.status_code, again.json()["version"]) == (200, 1)
        assert_error(register(c, name, [{"key": key, "rows": 3, "size": 12}]), 400, "invalid_request")
        c.put(f"/v1/storage/objects/{key}", content=b"replaced!")
        c.delete(f"/v1/storage/objects/{key}")
        stored = c.get(f"/v1/storage/objects/{pinned['key']}")
        assert (stored.status_code, stored.content) == (200, b"first bytes")
        assert_error(register(c, name, [{"key": key, "rows": 3}]), 400, "missing_object")


def test_delete_dataset_removes_versions_files_and_the_sql_view(lakehouse_cluster: Any) -> None:
    with lakehouse_cluster.client() as c:
        for rows in (b"id,city\n1,Oslo\n", b"id,city\n2,Rome\n"):
            assert (
                c.post("/v1/ingest/trips", content=rows, headers={"content-type": "text/csv"}).status_code
                == 201
            )
        answer = c.post("/v1/sql", json={"sql": "SELECT count(*) FROM trips"})
        assert answer.status_code == 200 and answer.json()["rows"] == [[2]]
        files = c.get("/v1/storage/objects", params={"prefix": "_lakehouse/datasets/trips/"}).json()
        assert files["objects"]
        gone = c.delete("/v1/catalog/datasets/trips")
        assert gone.status_code == 204 and gone.content == b""
        assert_error(c.get("/v1/catalog/datasets/trips"), 404, "not_found")
        assert_error(c.get("/v1/catalog/datasets/trips", params={"version": 1}), 404, "not_found")
        assert "trips" not in [d["name"] for d in c.get("/v1/catalog/datasets").json()["datasets"]]
        left = c.get("/v1/storage/objects", params={"prefix": "_lakehouse/datasets/trips/"}).json()
        assert left["objects"] == []
        assert_error(c.post("/v1/sql", json={"sql": "SELECT count(*) FROM trips"}), 400, "sql_error")
        assert_error(c.post("/v1/sql", json={"sql": 'SELECT count(*) FROM "trips@1"'}), 400, "sql_error")
        assert_error(c.delete("/v1/catalog/datasets/trips"), 404, "not_found")
        assert_error(c.delete("/v1/catalog/datasets/Bad-Name"), 400, "invalid_name")
        # The name starts over.
        fresh = c.post("/v1/ingest/trips", content=b"id,city\n1,Oslo\n", headers={"content-type": "text/csv"})
        assert (fresh.status_code, fresh.json()["version"]) == (201, 1)
