"""Hostile Iceberg REST commits against a live server: what a commit may change, and what it may name.

Each test sends what a client could send (through pyiceberg or as raw JSON)
and checks what a user would notice afterwards: the answer's Iceberg error,
the dataset's versions, SQL over it, later ingests, and where files land.
"""

from __future__ import annotations

import json
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_iceberg_http import (
    TRIPS_V1,
    TRIPS_V2,
    TRIPS_V3,
    Served,
    iceberg_error,
    ingest,
    serve,
    sql_rows,
)

pytestmark = pytest.mark.e2e

CONFIGURATION = {
    "write.metadata.path": "file://{outside}",
    "write.py-location-provider.impl": "this.Nope",
    "write.avro.compression-codec": "bogus",
}


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A local-backend server (the checks do not depend on the backend)."""
    with serve(tmp_path_factory.mktemp("iceberg-commits"), "local", None) as server:
        yield server


def root_of(served: Served) -> Path:
    return Path(served.storage["root"])


def table_url(name: str) -> str:
    return f"/iceberg/v1/namespaces/default/tables/{name}"


def versions(client: httpx.Client, name: str) -> list[tuple[int, int]]:
    listed = client.get(f"/v1/catalog/datasets/{name}/versions").json()["versions"]
    return [(v["version"], v["row_count"]) for v in listed]


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


# --- properties: configuration is refused, and never acted on -------------------------------


@pytest.mark.parametrize("key", sorted(CONFIGURATION))
def test_a_configuration_property_is_refused_and_ingests_still_work(
    local: Served, key: str, tmp_path: Path
) -> None:
    name = f"trips_{uuid.uuid4().hex[:8]}"
    outside = tmp_path / "outside"
    value = CONFIGURATION[key].format(outside=outside)
    with local.client() as client:
        ingest(client, name, TRIPS_V1)
        for update in (
            {"action": "set-properties", "updates": {key: value}},
            {"action": "remove-properties", "removals": [key]},
        ):
            answer = client.post(table_url(name), json={"updates": [update]})
            assert key in iceberg_error(answer, 400, "BadRequestException")
        assert key not in client.get(table_url(name)).json()["metadata"]["properties"]
        ingest(client, name, TRIPS_V2, mode="replace")
        ingest(client, name, TRIPS_V1)
        assert sorted(r[0] for r in sql_rows(client, f"SELECT id FROM {name}")) == [1, 2, 3]
    assert files_under(outside) == set()


def test_a_configuration_key_in_any_spelling_is_refused_through_pyiceberg(local: Served) -> None:
    from pyiceberg.exceptions import BadRequestError

    name = f"trips_{uuid.uuid4().hex[:8]}"
    with local.client() as client:
        ingest(client, name, TRIPS_V1)
    table = local.catalog().load_table(f"default.{name}")
    for key in ("Write.Metadata.Path", "format-version", "py-io-impl", "s3.endpoint", "lakehouse.version"):
        with pytest.raises(BadRequestError), table.transaction() as tx:
            tx.set_properties({key: "x"})
    assert local.catalog().load_table(f"default.{name}").properties.keys() <= {
        "schema.name-mapping.default",
        "write.parquet.compression-codec",
    }


def test_an_ordinary_property_commits_and_reads_back(local: Served) -> None:
    name = f"trips_{uuid.uuid4().hex[:8]}"
    with local.client() as client:
        ingest(client, name, TRIPS_V1)
        table = local.catalog().load_table(f"default.{name}")
        with table.transaction() as tx:
            tx.set_properties({"owner": "alice", "team.contact": "data@example.com"})
        loaded = local.catalog().load_table(f"default.{name}")
        assert loaded.properties["owner"] == "alice"
        assert loaded.properties["team.contact"] == "data@example.com"
        # Later versions keep it, and it can be removed again.
        ingest(client, name, TRIPS_V2)
        ingest(client, name, TRIPS_V1, mode="replace")
        assert local.catalog().load_table(f"default.{name}").properties["owner"] == "alice"
        with local.catalog().load_table(f"default.{name}").transaction() as tx:
            tx.remove_properties("owner")
        assert "owner" not in local.catalog().load_table(f"default.{name}").properties
        assert sorted(r[0] for r in sql_rows(client, f"SELECT id FROM {name}")) == [1, 2]


def test_properties_past_their_cap_are_refused_and_the_table_keeps_its_own(local: Served) -> None:
    name = f"trips_{uuid.uuid4().hex[:8]}"
    with local.client() as client:
        ingest(client, name, TRIPS_V1)
        with local.catalog().load_table(f"default.{name}").transaction() as tx:
            tx.set_properties({"owner": "alice"})
        from pyiceberg.exceptions import BadRequestError

        for big in ({"notes": "x" * 70_000}, {f"tag{i}": "y" * 100 for i in range(700)}):
            table = local.catalog().load_table(f"default.{name}")
            with pytest.raises(BadRequestError), table.transaction() as tx:
                tx.set_properties(big)
        loaded = local.catalog().load_table(f"default.{name}")
        assert loaded.properties["owner"] == "alice"
        assert "notes" not in loaded.properties and "tag0" not in loaded.properties
        assert versions(client, name) == [(1, 2)]


def test_configuration_already_in_a_table_is_not_acted_on(tmp_path: Path) -> None:
    """A table whose metadata carries configuration (written before the refusal, say) stays inert."""
    name = "planted"
    outside = tmp_path / "outside"
    with serve(tmp_path, "local", None) as first, first.client() as client:
        ingest(client, name, TRIPS_V1)
        location = client.get(table_url(name)).json()["metadata-location"]
    metadata_file = Path(location.removeprefix("file://"))
    metadata = json.loads(metadata_file.read_text())
    metadata["properties"].update({k: v.format(outside=outside) for k, v in CONFIGURATION.items()})
    metadata_file.write_text(json.dumps(metadata))
    with serve(tmp_path, "local", None) as second, second.client() as client:
        ingest(client, name, TRIPS_V2, mode="replace")  # an overwrite: a pyiceberg transaction
        ingest(client, name, TRIPS_V1)  # an append: manifests written by the lakehouse
        assert sorted(r[0] for r in sql_rows(client, f"SELECT id FROM {name}")) == [1, 2, 3]
        assert versions(client, name) == [(1, 2), (2, 1), (3, 3)]
        properties = client.get(table_url(name)).json()["metadata"]["properties"]
        assert not set(CONFIGURATION) & set(properties)
        assert "Zen of Python" not in second.proc.log()
    assert files_under(outside) == set()
    root = root_of(second).resolve()
    assert all(root in p.resolve().parents for p in files_under(tmp_path) if p.suffix == ".avro")


# --- snapshots: only the one main ends on, on a branch ---------------------------------------


def raw_snapshot(metadata: dict[str, Any], snapshot_id: int, manifest_list: str) -> dict[str, Any]:
    return {
        "action": "add-snapshot",
        "snapshot": {
            "snapshot-id": snapshot_id,
            "parent-snapshot-id": metadata["current-snapshot-id"],
            "sequence-number": metadata["last-sequence-number"] + 1,
            "timestamp-ms": int(time.time() * 1000),
            "manifest-list": manifest_list,
            "summary": {"operation": "append"},
            "schema-id": metadata["current-schema-id"],
        },
    }


def main_ref(snapshot_id: int, kind: str = "branch") -> dict[str, Any]:
    return {"action": "set-snapshot-ref", "ref-name": "main", "type": kind, "snapshot-id": snapshot_id}


def test_a_snapshot_main_does_not_end_on_is_refused_and_expire_still_works(local: Served) -> None:
    name = f"trips_{uuid.uuid4().hex[:8]}"
    with local.client() as client:
        for body in (TRIPS_V1, TRIPS_V2, TRIPS_V3):
            ingest(client, name, body)
        metadata = client.get(table_url(name)).json()["metadata"]
        before = versions(client, name)
        for updates in (
            [raw_snapshot(metadata, 114, "file:///etc/passwd")],
            [raw_snapshot(metadata, 115, metadata["location"] + "/metadata/none.avro")],
            [
                raw_snapshot(metadata, 116, "file:///etc/passwd"),
                raw_snapshot(metadata, 117, "file:///etc/passwd"),
                main_ref(117),
            ],
        ):
            iceberg_error(client.post(table_url(name), json={"updates": updates}), 400, "BadRequestException")
        after = client.get(table_url(name)).json()["metadata"]
        assert [s["snapshot-id"] for s in after["snapshots"]] == [
            s["snapshot-id"] for s in metadata["snapshots"]
        ]
        assert versions(client, name) == before
        expired = client.post(f"/v1/catalog/datasets/{name}/expire", json={"keep_last": 1})
        assert expired.status_code == 200, expired.text
        assert [v for v, _ in versions(client, name)] == [3]
        assert sorted(r[0] for r in sql_rows(client, f"SELECT id FROM {name}")) == [1, 2, 3, 4, 5, 6]


def test_main_cannot_become_a_tag(local: Served) -> None:
    name = f"trips_{uuid.uuid4().hex[:8]}"
    with local.client() as client:
        ingest(client, name, TRIPS_V1)
        metadata = client.get(table_url(name)).json()["metadata"]
        answer = client.post(
            table_url(name), json={"updates": [main_ref(metadata["current-snapshot-id"], "tag")]}
        )
        assert "tag" in iceberg_error(answer, 400, "BadRequestException")
        assert client.get(table_url(name)).json()["metadata"]["refs"]["main"]["type"] == "branch"
        ingest(client, name, TRIPS_V2)
        assert versions(client, name) == [(1, 2), (2, 3)]


# --- data files: checked against storage ------------------------------------------------------


def parquet_in_table(served: Served, name: str, table: Any) -> tuple[str, int]:
    """A Parquet file with the dataset's columns written inside the table's location: (uri, size)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(table.location().removeprefix("file://")) / f"{uuid.uuid4().hex}.parquet"
    rows = pa.table({"id": pa.array([7], pa.int64()), "city": ["Gary"], "fare": [1.0]})
    pq.write_table(rows, path)
    return f"file://{path}", path.stat().st_size


def parquet_data_file(uri: str, *, rows: int, size: int) -> Any:
    """pyiceberg's entry for a Parquet data file at `uri`, claiming `rows` rows and `size` bytes."""
    from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
    from pyiceberg.typedef import Record

    return DataFile.from_args(
        content=DataFileContent.DATA,
        file_path=uri,
        file_format=FileFormat.PARQUET,
        partition=Record(),
        record_count=rows,
        file_size_in_bytes=size,
    )


def append_file(table: Any, uri: str, *, rows: int, size: int) -> None:
    with table.transaction() as tx, tx.update_snapshot().fast_append() as append:
        append.append_data_file(parquet_data_file(uri, rows=rows, size=size))


def wrong_schema(table: Any) -> tuple[str, int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(table.location().removeprefix("file://")) / f"{uuid.uuid4().hex}.parquet"
    pq.write_table(pa.table({"id": ["not-a-number"], "secret": ["x"]}), path)
    return f"file://{path}", path.stat().st_size


@pytest.mark.parametrize("case", ["missing", "wrong size", "wrong rows", "wrong schema", "not parquet"])
def test_a_data_file_storage_disagrees_with_is_refused(local: Served, case: str) -> None:
    from pyiceberg.exceptions import BadRequestError

    name = f"trips_{uuid.uuid4().hex[:8]}"
    with local.client() as client:
        ingest(client, name, TRIPS_V1)
        table = local.catalog().load_table(f"default.{name}")
        uri, size = parquet_in_table(local, name, table)
        rows = 1
        if case == "missing":
            uri, rows, size = table.location() + "/ghost.parquet", 1_000_000, 12345
        elif case == "wrong size":
            size += 1
        elif case == "wrong rows":
            rows = 1_000_000
        elif case == "wrong schema":
            uri, size = wrong_schema(table)
        else:
            Path(uri.removeprefix("file://")).write_bytes(b"id\n7\n" * 10)
            size = 30
        with pytest.raises(BadRequestError):
            append_file(table, uri, rows=rows, size=size)
        assert versions(client, name) == [(1, 2)]
        assert sql_rows(client, f"SELECT count(*), sum(id) FROM {name}") == [[2, 3]]
        # The same file told truthfully (when it is right) commits.
        if case in ("wrong size", "wrong rows"):
            good_uri, good_size = parquet_in_table(local, name, table)
            append_file(local.catalog().load_table(f"default.{name}"), good_uri, rows=1, size=good_size)
            assert sql_rows(client, f"SELECT count(*), sum(id) FROM {name}") == [[3, 10]]


@pytest.mark.parametrize("claim", ["rows", "size"])
def test_a_file_the_dataset_holds_cannot_be_listed_again_with_other_counts(local: Served, claim: str) -> None:
    from pyiceberg.exceptions import BadRequestError

    name = f"trips_{uuid.uuid4().hex[:8]}"
    with local.client() as client:
        ingest(client, name, TRIPS_V1)
        table = local.catalog().load_table(f"default.{name}")
        (held,) = [task.file for task in table.scan().plan_files()]
        relisted = parquet_data_file(
            held.file_path,
            rows=10**12 if claim == "rows" else held.record_count,
            size=held.file_size_in_bytes + (1 if claim == "size" else 0),
        )
        with (
            pytest.raises(BadRequestError),
            table.transaction() as tx,
            tx.update_snapshot().overwrite() as ow,
        ):
            ow.delete_data_file(held)
            ow.append_data_file(relisted)
        assert versions(client, name) == [(1, 2)]
        assert sql_rows(client, f"SELECT count(*) FROM {name}") == [[2]]


@pytest.mark.parametrize("manifest_list", ["metadata/none.avro", "a data file", "metadata"])
def test_an_unreadable_manifest_list_inside_the_table_is_a_bad_request(
    local: Served, manifest_list: str
) -> None:
    name = f"trips_{uuid.uuid4().hex[:8]}"
    with local.client() as client:
        ingest(client, name, TRIPS_V1)
        metadata = client.get(table_url(name)).json()["metadata"]
        if manifest_list == "a data file":
            key = client.get(f"/v1/catalog/datasets/{name}").json()["objects"][0]["key"]
            path = f"{local.storage['root']}/objects/{key}"
            assert Path(path).is_file()
            uri = f"file://{path}"
        else:
            uri = f"{metadata['location']}/{manifest_list}"
        updates = [raw_snapshot(metadata, 4242, uri), main_ref(4242)]
        iceberg_error(client.post(table_url(name), json={"updates": updates}), 400, "BadRequestException")
        assert versions(client, name) == [(1, 2)]
        assert sql_rows(client, f"SELECT count(*) FROM {name}") == [[2]]


def deflate_bomb(inflated: int) -> bytes:
    """An Avro container of one deflate block of `inflated` zero bytes (about a thousandth as stored)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    chunk = bytes(16 << 20)
    block = b"".join(packer.compress(chunk) for _ in range(inflated // len(chunk))) + packer.flush()

    def long(value: int) -> bytes:
        n, out = value << 1, bytearray()
        while n > 0x7F:
            out.append((n & 0x7F) | 0x80)
            n >>= 7
        return bytes([*out, n])

    sync = bytes(16)
    meta = [(b"avro.schema", b'"long"'), (b"avro.codec", b"deflate")]
    header = long(len(meta)) + b"".join(long(len(k)) + k + long(len(v)) + v for k, v in meta) + long(0)
    return b"Obj\x01" + header + sync + long(1) + long(len(block)) + block + sync


@pytest.mark.parametrize("where", ["manifest list", "manifest"])
def test_a_manifest_that_inflates_past_its_bound_is_refused_before_it_is_inflated(
    local: Served, where: str
) -> None:
    name = f"trips_{uuid.uuid4().hex[:8]}"
    with local.client() as client:
        ingest(client, name, TRIPS_V1)
        metadata = client.get(table_url(name)).json()["metadata"]
        current = next(
            s for s in metadata["snapshots"] if s["snapshot-id"] == metadata["current-snapshot-id"]
        )
        if where == "manifest list":
            path = Path(metadata["location"].removeprefix("file://")) / "metadata" / "bomb.avro"
            manifest_list = f"file://{path}"
        else:  # the current manifest list, its manifest replaced by the bomb
            manifest_list = current["manifest-list"]
            table = local.catalog().load_table(f"default.{name}")
            (manifest,) = table.current_snapshot().manifests(table.io)
            path = Path(manifest.manifest_path.removeprefix("file://"))
        path.write_bytes(deflate_bomb(1 << 30))  # 1 GiB inflated, about 1 MiB stored
        updates = [raw_snapshot(metadata, 4343, manifest_list), main_ref(4343)]
        started = time.monotonic()
        answer = client.post(table_url(name), json={"updates": updates})
        assert time.monotonic() - started < 10
        iceberg_error(answer, 400, "BadRequestException")
        assert "inflates past" in answer.json()["error"]["message"]
        assert versions(client, name) == [(1, 2)]
        assert sql_rows(client, f"SELECT count(*) FROM {name}") == [[2]]


def test_a_manifest_list_larger_than_its_bound_is_refused_unread(local: Served) -> None:
    name = f"trips_{uuid.uuid4().hex[:8]}"
    with local.client() as client:
        ingest(client, name, TRIPS_V1)
        metadata = client.get(table_url(name)).json()["metadata"]
        path = Path(metadata["location"].removeprefix("file://")) / "metadata" / "huge.avro"
        with path.open("wb") as fh:  # 3 GiB, sparse
            fh.write(b"Obj\x01")
            fh.truncate(3 << 30)
        updates = [raw_snapshot(metadata, 4444, f"file://{path}"), main_ref(4444)]
        answer = client.post(table_url(name), json={"updates": updates})
        iceberg_error(answer, 400, "BadRequestException")
        assert "larger than" in answer.json()["error"]["message"]
        assert versions(client, name) == [(1, 2)]


def test_a_refused_commit_leaves_no_metadata_file(local: Served) -> None:
    name = f"trips_{uuid.uuid4().hex[:8]}"
    with local.client() as client:
        ingest(client, name, TRIPS_V1)
        table = local.catalog().load_table(f"default.{name}")
        metadata_dir = Path(table.location().removeprefix("file://")) / "metadata"
        before = sorted(metadata_dir.glob("*.metadata.json"))
        uri, size = parquet_in_table(local, name, table)
        from pyiceberg.exceptions import BadRequestError

        data_file = parquet_data_file(uri, rows=1, size=size)
        for _ in range(3):  # the same file twice in one version: refused by the catalog itself
            with (
                pytest.raises(BadRequestError),
                table.transaction() as tx,
                tx.update_snapshot().fast_append() as append,
            ):
                append.append_data_file(data_file)
                append.append_data_file(data_file)
        assert sorted(metadata_dir.glob("*.metadata.json")) == before
        assert versions(client, name) == [(1, 2)]


def test_a_properties_commit_that_answers_ok_is_never_lost_to_a_racing_version(local: Served) -> None:
    """Properties commits race appends; each one answered 200 is in the final table, the rest are 409."""
    from concurrent.futures import ThreadPoolExecutor

    name = f"trips_{uuid.uuid4().hex[:8]}"
    with local.client() as client:
        ingest(client, name, TRIPS_V1)

    def set_property(index: int) -> tuple[str, int]:
        with local.client() as own:
            update = {"action": "set-properties", "updates": {f"note-{index}": "x"}}
            answer = own.post(table_url(name), json={"updates": [update]})
        assert answer.status_code in (200, 409), answer.text
        return f"note-{index}", answer.status_code

    def append(index: int) -> None:
        with local.client() as own:
            ingest(own, name, f"id,city,fare\n{100 + index},Gary,1.0\n".encode())

    with ThreadPoolExecutor(8) as pool:
        notes = [pool.submit(set_property, i) for i in range(16)]
        appends = [pool.submit(append, i) for i in range(8)]
        answered = [f.result() for f in notes]
        for f in appends:
            f.result()
    with local.client() as client:
        properties = client.get(table_url(name)).json()["metadata"]["properties"]
        assert {key for key, status in answered if status == 200} <= set(properties)
        assert len(versions(client, name)) == 9
