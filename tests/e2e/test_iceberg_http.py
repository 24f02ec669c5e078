"""Datasets as Iceberg tables, read and written by engines we did not write, over a live server.

pyiceberg's RestCatalog, DuckDB's iceberg extension and Daft attach to
`/iceberg` on a real `lakehouse serve`, on the local and the S3 (moto)
backends: every version is a snapshot they read, and pyiceberg's appends and
overwrites become versions the lakehouse's own SQL sees.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa
import pytest

from lakehouse.auth.tokens import Scope
from lakehouse.extensions import load_extension
from tests.support.procs import LakehouseProcess, serving, write_config
from tests.support.tokens import mint

pytestmark = pytest.mark.e2e

TRIPS_V1 = b"id,city,fare\n1,Austin,12.5\n2,Boston,8.0\n"
TRIPS_V2 = b"id,city,fare\n3,Chicago,20.25\n"
TRIPS_V3 = b"id,city,fare\n4,Denver,7.75\n5,El Paso,9.5\n6,Fresno,11.0\n"


@dataclass
class Served:
    """A running lakehouse and what an outside engine needs to reach its files."""

    proc: LakehouseProcess
    backend: str
    storage: dict[str, Any]
    s3_endpoint: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"{self.proc.url}/iceberg"

    def client(self) -> httpx.Client:
        return self.proc.client()

    def io_properties(self) -> dict[str, str]:
        """What a client brings to read and write the files: its own S3 credentials."""
        if self.backend != "s3":
            return {}
        assert self.s3_endpoint is not None
        return {
            "s3.endpoint": self.s3_endpoint,
            "s3.access-key-id": "testing",
            "s3.secret-access-key": "testing",
            "s3.region": "us-east-1",
        }

    def catalog(self, **properties: str) -> Any:
        from pyiceberg.catalog import load_catalog

        return load_catalog(
            f"lh-{uuid.uuid4().hex[:6]}", type="rest", uri=self.uri, **self.io_properties(), **properties
        )

    def duckdb(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB with httpfs, avro and iceberg loaded from their PyPI packages (no download)."""
        con = duckdb.connect()
        for name in ("httpfs", "avro", "iceberg"):
            load_extension(con, name)
        if self.backend == "s3":
            assert self.s3_endpoint is not None
            host = self.s3_endpoint.removeprefix("http://")
            con.execute(
                f"CREATE SECRET lh_s3 (TYPE s3, KEY_ID 'testing', SECRET 'testing', REGION 'us-east-1', "
                f"ENDPOINT '{host}', URL_STYLE 'path', USE_SSL false)"
            )
        return con

    def daft_io(self) -> Any:
        import daft

        if self.backend != "s3":
            return None
        return daft.io.IOConfig(
            s3=daft.io.S3Config(
                endpoint_url=self.s3_endpoint,
                key_id="testing",
                access_key="testing",
                region_name="us-east-1",
                force_virtual_addressing=False,
            )
        )


@contextlib.contextmanager
def serve(tmp: Path, backend: str, s3_endpoint: str | None, **sections: dict[str, Any]) -> Iterator[Served]:
    """A started `lakehouse serve` over a fresh local folder or moto bucket, stopped afterwards."""
    env: dict[str, str] = {}
    if backend == "s3":
        import boto3

        assert s3_endpoint is not None
        env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        bucket = f"ice-{uuid.uuid4().hex[:12]}"
        boto3.client(
            "s3",
            endpoint_url=s3_endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        ).create_bucket(Bucket=bucket)
        storage: dict[str, Any] = {
            "backend": "s3",
            "bucket": bucket,
            "endpoint": s3_endpoint,
            "secrets": str(tmp / "no-secrets.toml"),
        }
    else:
        storage = {"root": str(tmp / "data")}
    config = write_config(tmp / "lakehouse.toml", {"storage": storage, **sections})
    with serving(config, env=env) as proc:
        yield Served(proc, backend, storage, s3_endpoint, env)


@pytest.fixture(scope="module", params=["local", "s3"])
def served(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server per backend for this module's read and write tests (each test uses its own dataset)."""
    backend: str = request.param
    endpoint = request.getfixturevalue("s3_endpoint") if backend == "s3" else None
    with serve(tmp_path_factory.mktemp(f"iceberg-{backend}"), backend, endpoint) as server:
        yield server


def ingest(
    client: httpx.Client, name: str, body: bytes, mode: str = "append", **headers: str
) -> dict[str, Any]:
    answer = client.post(
        f"/v1/ingest/{name}?mode={mode}", content=body, headers={"Content-Type": "text/csv", **headers}
    )
    assert answer.status_code == 201, answer.text
    result: dict[str, Any] = answer.json()
    return result


def sql_rows(client: httpx.Client, query: str, **headers: str) -> list[list[Any]]:
    answer = client.post("/v1/sql", json={"sql": query}, headers=headers)
    assert answer.status_code == 200, answer.text
    rows: list[list[Any]] = answer.json()["rows"]
    return rows


def three_versions(client: httpx.Client, name: str) -> None:
    """v1: 2 rows; v2: an append (3 rows); v3: a replace (the 3 rows of TRIPS_V3)."""
    ingest(client, name, TRIPS_V1)
    ingest(client, name, TRIPS_V2)
    ingest(client, name, TRIPS_V3, mode="replace")


def ids_of(table: pa.Table) -> list[int]:
    return sorted(table.column("id").to_pylist())


# --- reading: every version, three engines --------------------------------------------------


def test_pyiceberg_lists_loads_and_scans_every_version(served: Served) -> None:
    name = f"trips_{uuid.uuid4().hex[:8]}"
    with served.client() as client:
        three_versions(client, name)
        versions = client.get(f"/v1/catalog/datasets/{name}/versions").json()["versions"]
        expected = {
            v["version"]: sorted(r[0] for r in sql_rows(client, f'SELECT id FROM "{name}@{v["version"]}"'))
            for v in versions
        }
    catalog = served.catalog()
    assert ("default",) in catalog.list_namespaces()
    assert ("default", name) in catalog.list_tables("default")
    table = catalog.load_table(f"default.{name}")
    assert table.metadata.format_version == 2
    by_version = {
        int(s.summary.additional_properties["lakehouse.version"]): s for s in table.metadata.snapshots
    }
    assert sorted(by_version) == [1, 2, 3]
    for summary in versions:
        snapshot = by_version[summary["version"]]
        assert snapshot.snapshot_id == summary["snapshot_id"]
        assert ids_of(table.scan(snapshot_id=snapshot.snapshot_id).to_arrow()) == expected[summary["version"]]
    assert ids_of(table.scan().to_arrow()) == [4, 5, 6]
    assert catalog.table_exists(f"default.{name}")
    assert not catalog.table_exists("default.no_such_table")


def test_duckdb_attaches_the_catalog_and_scans_each_snapshot(served: Served) -> None:
    name = f"trips_{uuid.uuid4().hex[:8]}"
    with served.client() as client:
        three_versions(client, name)
        versions = client.get(f"/v1/catalog/datasets/{name}/versions").json()["versions"]
        current = client.get(f"/v1/catalog/datasets/{name}").json()
    con = served.duckdb()
    con.execute(f"ATTACH '' AS lh (TYPE iceberg, ENDPOINT '{served.uri}', AUTHORIZATION_TYPE 'none')")
    assert con.execute(f"SELECT list_sort(list(id)) FROM lh.default.{name}").fetchone() == ([4, 5, 6],)
    location = current["metadata_location"]
    counts = {
        v["version"]: con.execute(
            f"SELECT count(*) FROM iceberg_scan('{location}', snapshot_from_id={v['snapshot_id']})"
        ).fetchone()
        for v in versions
    }
    assert counts == {1: (2,), 2: (3,), 3: (3,)}


def test_daft_reads_the_current_version(served: Served) -> None:
    import daft

    name = f"trips_{uuid.uuid4().hex[:8]}"
    with served.client() as client:
        three_versions(client, name)
    table = served.catalog().load_table(f"default.{name}")
    frame = daft.read_iceberg(table, io_config=served.daft_io())
    assert sorted(frame.to_pydict()["id"]) == [4, 5, 6]


# --- writing: pyiceberg commits become versions ---------------------------------------------


def test_a_pyiceberg_append_and_overwrite_become_versions_sql_sees(served: Served) -> None:
    name = f"trips_{uuid.uuid4().hex[:8]}"
    with served.client() as client:
        ingest(client, name, TRIPS_V1)
        table = served.catalog().load_table(f"default.{name}")
        rows = pa.table({"id": pa.array([10, 11], pa.int64()), "city": ["Gary", "Hilo"], "fare": [1.0, 2.0]})
        table.append(rows)
        assert sorted(r[0] for r in sql_rows(client, f"SELECT id FROM {name}")) == [1, 2, 10, 11]
        history = client.get(f"/v1/catalog/datasets/{name}/versions").json()["versions"]
        assert [v["version"] for v in history] == [1, 2]
        assert history[1]["row_count"] == 4
        # The first upload's bytes are still in the version: ingesting them again creates nothing.
        again = client.post(f"/v1/ingest/{name}", content=TRIPS_V1, headers={"Content-Type": "text/csv"})
        assert again.status_code == 200 and again.json()["created"] is False, again.text
        table.overwrite(pa.table({"id": pa.array([99], pa.int64()), "city": ["Iowa"], "fare": [3.0]}))
        assert sql_rows(client, f"SELECT id FROM {name}") == [[99]]
        assert sorted(r[0] for r in sql_rows(client, f'SELECT id FROM "{name}@2"')) == [1, 2, 10, 11]
        reloaded = served.catalog().load_table(f"default.{name}")
        assert reloaded.current_snapshot().summary.additional_properties["lakehouse.version"] == "3"
        # An ingest on top of a pyiceberg commit keeps the history whole.
        ingest(client, name, TRIPS_V2)
        assert sorted(r[0] for r in sql_rows(client, f"SELECT id FROM {name}")) == [3, 99]


def test_a_schema_change_is_a_commit_failure_and_changes_nothing(served: Served) -> None:
    from pyiceberg.exceptions import CommitFailedException
    from pyiceberg.types import StringType

    name = f"trips_{uuid.uuid4().hex[:8]}"
    with served.client() as client:
        ingest(client, name, TRIPS_V1)
        table = served.catalog().load_table(f"default.{name}")
        with pytest.raises(CommitFailedException, match="schema"), table.update_schema() as update:
            update.add_column("driver", StringType())
        assert len(client.get(f"/v1/catalog/datasets/{name}/versions").json()["versions"]) == 1
        answer = client.post(
            f"/iceberg/v1/namespaces/default/tables/{name}",
            json={"requirements": [], "updates": [{"action": "set-current-schema", "schema-id": 7}]},
        )
    assert answer.status_code == 409
    assert answer.json()["error"]["type"] == "CommitFailedException"


def test_a_stale_commit_is_refused_then_retried_and_no_append_is_lost(served: Served) -> None:
    name = f"trips_{uuid.uuid4().hex[:8]}"
    with served.client() as client:
        ingest(client, name, TRIPS_V1)
        first = served.catalog().load_table(f"default.{name}")
        second = served.catalog().load_table(f"default.{name}")
        rows = pa.table({"id": pa.array([7], pa.int64()), "city": ["Gary"], "fare": [1.0]})
        first.append(rows)
        # `second` was loaded before `first` committed: the server refuses its commit (409),
        # pyiceberg refreshes and commits again on top of the new version.
        second.append(rows.set_column(0, "id", pa.array([8], pa.int64())))
        served.proc.wait_for_log(f"POST /iceberg/v1/namespaces/default/tables/{name} 409")
        assert sorted(r[0] for r in sql_rows(client, f"SELECT id FROM {name}")) == [1, 2, 7, 8]
        history = client.get(f"/v1/catalog/datasets/{name}/versions").json()["versions"]
        assert [(v["version"], v["row_count"]) for v in history] == [(1, 2), (2, 3), (3, 4)]


# --- the REST face: shapes and hostile commits ----------------------------------------------


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A local-backend server for the protocol's shapes and bad input (one backend is enough)."""
    with serve(tmp_path_factory.mktemp("iceberg-shapes"), "local", None) as server:
        yield server


def iceberg_error(answer: httpx.Response, status: int, kind: str) -> str:
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["type"] == kind and error["code"] == status
    assert isinstance(error["message"], str) and error["message"]
    message: str = error["message"]
    return message


def test_config_namespaces_and_errors_have_the_iceberg_shapes(local: Served) -> None:
    with local.client() as client:
        config = client.get("/iceberg/v1/config").json()
        assert config["defaults"] == {} and config["overrides"] == {}
        assert client.get("/iceberg/v1/namespaces").json()["namespaces"] == [["default"]]
        assert client.get("/iceberg/v1/namespaces/default").json()["namespace"] == ["default"]
        assert client.head("/iceberg/v1/namespaces/default").status_code == 204
        iceberg_error(client.get("/iceberg/v1/namespaces/other/tables"), 404, "NoSuchNamespaceException")
        iceberg_error(client.get("/iceberg/v1/namespaces/default/tables/nope"), 404, "NoSuchTableException")
        iceberg_error(
            client.get("/iceberg/v1/namespaces/default/tables/..%2F..%2Fetc"), 404, "NoSuchTableException"
        )
        assert client.head("/iceberg/v1/namespaces/default/tables/nope").status_code == 404
        iceberg_error(client.get("/iceberg/v1/no/such/route"), 404, "NoSuchTableException")


def test_table_listing_pages(local: Served) -> None:
    with local.client() as client:
        for index in range(3):
            ingest(client, f"paged_{index}_{uuid.uuid4().hex[:6]}", TRIPS_V1)
        seen: list[str] = []
        token: str | None = None
        while True:
            params = {"pageSize": 2, **({"pageToken": token} if token else {})}
            page = client.get("/iceberg/v1/namespaces/default/tables", params=params).json()
            assert len(page["identifiers"]) <= 2
            seen += [entry["name"] for entry in page["identifiers"]]
            token = page["next-page-token"]
            if token is None:
                break
        assert seen == sorted(seen) and len(set(seen)) == len(seen)
        assert {n for n in seen if n.startswith("paged_")} == {
            d["name"]
            for d in client.get("/v1/catalog/datasets").json()["datasets"]
            if d["name"].startswith("paged_")
        }


@pytest.mark.parametrize(
    ("update", "status", "kind"),
    [
        ({"action": "set-location", "location": "file:///etc"}, 400, "BadRequestException"),
        ({"action": "upgrade-format-version", "format-version": 3}, 400, "BadRequestException"),
        ({"action": "remove-snapshots", "snapshot-ids": [1]}, 400, "BadRequestException"),
        (
            {"action": "set-properties", "updates": {"schema.name-mapping.default": "[]"}},
            400,
            "BadRequestException",
        ),
        ({"action": "no-such-action"}, 400, "BadRequestException"),
    ],
)
def test_a_commit_that_changes_more_than_data_is_refused(
    local: Served, update: dict[str, Any], status: int, kind: str
) -> None:
    name = f"trips_{uuid.uuid4().hex[:8]}"
    with local.client() as client:
        ingest(client, name, TRIPS_V1)
        answer = client.post(f"/iceberg/v1/namespaces/default/tables/{name}", json={"updates": [update]})
        iceberg_error(answer, status, kind)
        assert len(client.get(f"/v1/catalog/datasets/{name}/versions").json()["versions"]) == 1


def test_a_malformed_commit_is_a_bad_request(local: Served) -> None:
    name = f"trips_{uuid.uuid4().hex[:8]}"
    with local.client() as client:
        ingest(client, name, TRIPS_V1)
        url = f"/iceberg/v1/namespaces/default/tables/{name}"
        iceberg_error(
            client.post(url, content=b"{not json", headers={"Content-Type": "application/json"}),
            400,
            "BadRequestException",
        )
        iceberg_error(client.post(url, json={"updates": "everything"}), 400, "BadRequestException")
        stale = {
            "requirements": [{"type": "assert-ref-snapshot-id", "ref": "main", "snapshot-id": 1}],
            "updates": [],
        }
        iceberg_error(client.post(url, json=stale), 409, "CommitFailedException")


def test_a_commit_naming_a_file_outside_the_table_is_forbidden(local: Served) -> None:
    from pyiceberg.exceptions import ForbiddenError
    from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
    from pyiceberg.typedef import Record

    name = f"trips_{uuid.uuid4().hex[:8]}"
    with local.client() as client:
        ingest(client, name, TRIPS_V1)
        table = local.catalog().load_table(f"default.{name}")
        outside = DataFile.from_args(
            content=DataFileContent.DATA,
            file_path="file:///etc/passwd",
            file_format=FileFormat.PARQUET,
            partition=Record(),
            record_count=1,
            file_size_in_bytes=10,
        )
        with (
            pytest.raises(ForbiddenError),
            table.transaction() as tx,
            tx.update_snapshot().fast_append() as append,
        ):
            append.append_data_file(outside)
        assert len(client.get(f"/v1/catalog/datasets/{name}/versions").json()["versions"]) == 1
        assert sorted(r[0] for r in sql_rows(client, f"SELECT id FROM {name}")) == [1, 2]


# --- lifecycle ------------------------------------------------------------------------------


def test_expire_drops_old_versions_and_their_files_and_engines_still_read(served: Served) -> None:
    name = f"trips_{uuid.uuid4().hex[:8]}"
    with served.client() as client:
        three_versions(client, name)
        ingest(client, name, TRIPS_V1)
        answer = client.post(f"/v1/catalog/datasets/{name}/expire", json={"keep_last": 2})
        assert answer.status_code == 200, answer.text
        assert answer.json()["expired"] == [1, 2] and answer.json()["bytes_freed"] > 0
        assert [
            v["version"] for v in client.get(f"/v1/catalog/datasets/{name}/versions").json()["versions"]
        ] == [3, 4]
        gone = client.post("/v1/sql", json={"sql": f'SELECT * FROM "{name}@1"'})
        assert gone.status_code == 400, gone.text
        assert sorted(r[0] for r in sql_rows(client, f'SELECT id FROM "{name}@3"')) == [4, 5, 6]
        again = client.post(f"/v1/catalog/datasets/{name}/expire", json={"keep_last": 2}).json()
        assert again == {"expired": [], "bytes_freed": 0}
    table = served.catalog().load_table(f"default.{name}")
    assert sorted(
        int(s.summary.additional_properties["lakehouse.version"]) for s in table.metadata.snapshots
    ) == [3, 4]
    for snapshot in table.metadata.snapshots:
        table.scan(snapshot_id=snapshot.snapshot_id).to_arrow()
    assert ids_of(table.scan().to_arrow()) == [1, 2, 4, 5, 6]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"keep_last": 0},
        {"keep_last": 1, "older_than": "2020-01-01T00:00:00Z"},
        {"older_than": "yesterday"},
        {"keep_last": "2"},
    ],
)
def test_bad_expire_requests_are_400_and_keep_everything(local: Served, body: dict[str, Any]) -> None:
    name = f"trips_{uuid.uuid4().hex[:8]}"
    with local.client() as client:
        three_versions(client, name)
        answer = client.post(f"/v1/catalog/datasets/{name}/expire", json=body)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "invalid_request"
        assert len(client.get(f"/v1/catalog/datasets/{name}/versions").json()["versions"]) == 3
        assert client.post("/v1/catalog/datasets/no_such/expire", json={"keep_last": 1}).status_code == 404


def test_expire_older_than_keeps_the_current_version(local: Served) -> None:
    name = f"trips_{uuid.uuid4().hex[:8]}"
    with local.client() as client:
        three_versions(client, name)
        answer = client.post(
            f"/v1/catalog/datasets/{name}/expire", json={"older_than": "2999-01-01T00:00:00Z"}
        )
        assert answer.json()["expired"] == [1, 2]
        assert [
            v["version"] for v in client.get(f"/v1/catalog/datasets/{name}/versions").json()["versions"]
        ] == [3]


def test_catalog_listings_page(local: Served) -> None:
    name = f"trips_{uuid.uuid4().hex[:8]}"
    with local.client() as client:
        three_versions(client, name)
        first = client.get(f"/v1/catalog/datasets/{name}/versions", params={"limit": 2}).json()
        assert [v["version"] for v in first["versions"]] == [1, 2] and first["next"] == 2
        rest = client.get(f"/v1/catalog/datasets/{name}/versions", params={"limit": 2, "after": 2}).json()
        assert [v["version"] for v in rest["versions"]] == [3] and rest["next"] is None
        names: list[str] = []
        after: str | None = None
        while True:
            page = client.get(
                "/v1/catalog/datasets", params={"limit": 1, **({"after": after} if after else {})}
            ).json()
            names += [d["name"] for d in page["datasets"]]
            after = page["next"]
            if after is None:
                break
        assert name in names and names == sorted(names)
        assert client.get("/v1/catalog/datasets", params={"limit": 0}).status_code == 400


# --- auth -----------------------------------------------------------------------------------


def test_with_auth_on_reads_need_read_and_commits_need_write(tmp_path: Path) -> None:
    from pyiceberg.exceptions import ForbiddenError, UnauthorizedError

    with serve(tmp_path, "local", None, auth={"required": True}) as server:
        root = Path(server.storage["root"])
        reader, writer = mint(root, "reader", Scope.READ), mint(root, "writer", Scope.WRITE)
        with server.client() as client:
            ingest(client, "trips", TRIPS_V1, Authorization=f"Bearer {writer}")
            iceberg_error(client.get("/iceberg/v1/config"), 401, "NotAuthorizedException")
            iceberg_error(
                client.get(
                    "/iceberg/v1/namespaces/default/tables/trips", headers={"Authorization": "Bearer lh_nope"}
                ),
                401,
                "NotAuthorizedException",
            )
        with pytest.raises(UnauthorizedError):
            server.catalog().load_table("default.trips")
        rows = pa.table({"id": pa.array([3], pa.int64()), "city": ["Oslo"], "fare": [4.0]})
        read_only = server.catalog(token=reader).load_table("default.trips")
        assert ids_of(read_only.scan().to_arrow()) == [1, 2]
        with pytest.raises(ForbiddenError):
            read_only.append(rows)
        server.catalog(token=writer).load_table("default.trips").append(rows)
        con = server.duckdb()
        con.execute(f"CREATE SECRET lh_token (TYPE iceberg, TOKEN '{reader}')")
        con.execute(f"ATTACH '' AS lh (TYPE iceberg, ENDPOINT '{server.uri}', SECRET lh_token)")
        assert con.execute("SELECT list_sort(list(id)) FROM lh.default.trips").fetchone() == ([1, 2, 3],)


# --- serve modes ----------------------------------------------------------------------------


def test_the_iceberg_catalog_works_the_same_through_a_split_gateway(start_cluster: Any) -> None:
    """Split mode: the gateway proxies /iceberg to catalogd, which reads and commits alone."""
    from pyiceberg.catalog import load_catalog

    cluster = start_cluster(services=["storaged", "catalogd", "ingestd", "queryd"])
    with cluster.client() as client:
        ingest(client, "split_trips", TRIPS_V1)
        iceberg_error(client.get("/iceberg/v1/namespaces/default/tables/nope"), 404, "NoSuchTableException")
        lh = load_catalog(f"lh-{uuid.uuid4().hex[:6]}", type="rest", uri=f"{cluster.url}/iceberg")
        table = lh.load_table("default.split_trips")
        assert ids_of(table.scan().to_arrow()) == [1, 2]
        table.append(pa.table({"id": pa.array([3], pa.int64()), "city": ["Oslo"], "fare": [4.0]}))
        assert sorted(r[0] for r in sql_rows(client, "SELECT id FROM split_trips")) == [1, 2, 3]
