"""The catalog over real object stores: versions, idempotency, drift, missing objects, races."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lakehouse.catalog import (
    INVALID_TYPE,
    NAME_PATTERN,
    NO_VERSION,
    Catalog,
    Column,
    ObjectRef,
    ObjectSpec,
    canonical_type,
    manifest_key,
    validate_name,
)
from lakehouse.config import Settings
from lakehouse.errors import (
    InvalidKey,
    InvalidName,
    InvalidRequest,
    MissingObject,
    NotFound,
    SchemaDrift,
    VersionConflict,
)
from lakehouse.storage import ObjectStore, open_store

SCHEMA = [Column("id", "BIGINT"), Column("city", "VARCHAR")]


async def put_part(store: ObjectStore, name: str, index: int, rows: int = 10) -> ObjectRef:
    """A data file in the store, as the manifest will reference it."""
    data = f"{name}-{index}-".encode() * (index + 1)
    result = await store.put_bytes(f"_lakehouse/datasets/{name}/part-{index}.parquet", data)
    return ObjectRef(result.info.key, result.info.size, rows)


async def test_versions_grow_and_every_version_stays_readable(store: ObjectStore) -> None:
    catalog = Catalog(store)
    first = await put_part(store, "trips", 1)
    second = await put_part(store, "trips", 2, rows=5)
    v1, created1 = await catalog.register("trips", SCHEMA, [first], 10)
    v2, created2 = await catalog.register("trips", SCHEMA, [first, second], 15, extra={"sha256": "ab"})
    assert (created1, created2) == (True, True)
    assert (v1.version, v1.parent_version) == (1, None)
    assert (v2.version, v2.parent_version) == (2, 1)
    assert v2.extra == {"sha256": "ab"}
    assert v2.created_at.endswith("Z")
    assert await catalog.get("trips") == v2
    assert await catalog.get("trips", 1) == v1
    assert [m.version for m in await catalog.versions("trips")] == [1, 2]
    # A fresh catalog (a restart) reads the same history back from storage.
    reopened = Catalog(store)
    assert await reopened.get("trips") == v2
    assert await reopened.get("trips", 1) == v1
    assert [m.name for m in await reopened.datasets()] == ["trips"]


async def test_same_content_is_idempotent(store: ObjectStore) -> None:
    catalog = Catalog(store)
    part = await put_part(store, "trips", 1)
    v1, _ = await catalog.register("trips", SCHEMA, [part], 10)
    again, created = await catalog.register("trips", SCHEMA, [part], 10)
    assert created is False
    assert again == v1
    other, created = await Catalog(store).register("trips", SCHEMA, [part], 10)
    assert (other.version, created) == (1, False)
    given_fp, created = await catalog.register("trips", SCHEMA, [part], 10, fingerprint="csv-sha")
    assert (given_fp.version, given_fp.fingerprint, created) == (2, "csv-sha", True)
    _, created = await catalog.register("trips", SCHEMA, [part], 10, fingerprint="csv-sha")
    assert created is False
    assert len(await catalog.versions("trips")) == 2


async def test_schema_drift_names_added_removed_and_changed_columns(store: ObjectStore) -> None:
    catalog = Catalog(store)
    part = await put_part(store, "trips", 1)
    await catalog.register("trips", SCHEMA, [part], 10)
    drifted = [Column("id", "VARCHAR"), Column("fare", "DOUBLE")]
    with pytest.raises(SchemaDrift) as caught:
        await catalog.register("trips", drifted, [part], 10)
    detail = caught.value.detail
    assert detail["added"] == [{"name": "fare", "type": "DOUBLE"}]
    assert detail["removed"] == [{"name": "city", "type": "VARCHAR"}]
    assert detail["changed"] == [{"name": "id", "from": "BIGINT", "to": "VARCHAR"}]
    assert [m.version for m in await catalog.versions("trips")] == [1]
    reordered, created = await catalog.register("trips", list(reversed(SCHEMA)), [part], 10)
    assert (reordered.version, created) == (2, True)


async def test_missing_objects_are_named_and_nothing_is_written(store: ObjectStore) -> None:
    catalog = Catalog(store)
    real = await put_part(store, "trips", 1)
    ghost = ObjectRef("_lakehouse/datasets/trips/ghost.parquet", 10, 0)
    with pytest.raises(MissingObject) as caught:
        await catalog.register("trips", SCHEMA, [real, ghost], 10)
    assert caught.value.detail["missing"] == [ghost.key]
    with pytest.raises(NotFound):
        await catalog.get("trips")
    assert await catalog.datasets() == []


@pytest.mark.parametrize(
    ("schema", "objects", "rows", "error"),
    [
        ([], [], 0, InvalidRequest),
        ([Column("a", "INT"), Column("a", "INT")], [], 0, InvalidRequest),
        ([Column("", "INT")], [], 0, InvalidRequest),
        (SCHEMA, [], -1, InvalidRequest),
        (SCHEMA, [ObjectRef("x/y", -1, 0)], 0, InvalidRequest),
        (SCHEMA, [ObjectRef("x/y", 1, -3)], -3, InvalidRequest),
        (SCHEMA, [ObjectRef("../etc/passwd", 1, 0)], 0, InvalidKey),
        (SCHEMA, [ObjectRef("x/y", 1, 2), ObjectRef("x/y", 1, 2)], 4, InvalidRequest),
    ],
)
async def test_bad_parts_are_rejected_before_anything_is_stored(
    store: ObjectStore,
    schema: list[Column],
    objects: list[ObjectRef],
    rows: int,
    error: type[Exception],
) -> None:
    catalog = Catalog(store)
    with pytest.raises(error):
        await catalog.register("trips", schema, objects, rows)
    assert await catalog.datasets() == []


async def test_rows_and_sizes_must_match_storage(store: ObjectStore) -> None:
    catalog = Catalog(store)
    part = await put_part(store, "trips", 1)
    with pytest.raises(InvalidRequest, match="bytes in storage"):
        await catalog.register("trips", SCHEMA, [ObjectRef(part.key, part.size + 1, 10)], 10)
    with pytest.raises(InvalidRequest, match="hold 10 rows"):
        await catalog.register("trips", SCHEMA, [part], 11)


async def test_unknown_dataset_and_version_are_not_found(store: ObjectStore) -> None:
    catalog = Catalog(store)
    with pytest.raises(NotFound, match="does not exist"):
        await catalog.get("nothing")
    with pytest.raises(NotFound):
        await catalog.versions("nothing")
    await catalog.register("trips", SCHEMA, [await put_part(store, "trips", 1)], 10)
    for version in (0, 2, 99):
        with pytest.raises(NotFound, match="no version"):
            await catalog.get("trips", version)
    with pytest.raises(InvalidName):
        await catalog.get("Bad-Name")


async def test_twenty_concurrent_registers_get_distinct_gapless_versions(store: ObjectStore) -> None:
    parts = [await put_part(store, "trips", i) for i in range(20)]
    # Two catalogs share no in-process lock, so the store's conditional create decides.
    catalogs = [Catalog(store), Catalog(store)]
    results = await asyncio.gather(
        *(catalogs[i % 2].register("trips", SCHEMA, [parts[i]], 10) for i in range(20))
    )
    versions = sorted(m.version for m, created in results if created)
    assert versions == list(range(1, 21))
    history = await Catalog(store).versions("trips")
    assert [m.version for m in history] == list(range(1, 21))
    assert [m.parent_version for m in history] == [None, *range(1, 20)]
    assert {m.objects[0].key for m in history} == {p.key for p in parts}


async def test_threads_with_their_own_stores_never_share_a_version(store_settings: Settings) -> None:
    seed = open_store(store_settings)
    parts = [await put_part(seed, "trips", i) for i in range(16)]
    await seed.close()
    outcomes: list[int] = []
    errors: list[BaseException] = []

    # Opened up front: opening a LocalStore sweeps this process's temp files.
    stores = [open_store(store_settings) for _ in range(2)]

    async def writer(store: ObjectStore, chunk: list[ObjectRef]) -> None:
        try:
            catalog = Catalog(store)
            for part in chunk:
                manifest, created = await catalog.register("trips", SCHEMA, [part], 10)
                assert created
                outcomes.append(manifest.version)
        finally:
            await store.close()

    def run(store: ObjectStore, chunk: list[ObjectRef]) -> None:
        try:
            asyncio.run(writer(store, chunk))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(stores[i], parts[i::2])) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(outcomes) == list(range(1, 17))


async def catalog_keys(store: ObjectStore) -> list[str]:
    """Every manifest key under the catalog prefix (not its change log)."""
    from lakehouse.catalog.changes import CHANGES_KEY

    listed, _ = await store.list("_lakehouse/catalog/")
    return sorted(info.key for info in listed if info.key != CHANGES_KEY)


async def test_expected_parent_mismatch_raises_and_writes_nothing(store: ObjectStore) -> None:
    catalog = Catalog(store)
    first, second = await put_part(store, "trips", 1), await put_part(store, "trips", 2)
    with pytest.raises(VersionConflict) as missing:
        await catalog.register("trips", SCHEMA, [first], 10, expected_parent=3)
    assert missing.value.detail == {"dataset": "trips", "expected": 3, "current": 0}
    assert await catalog_keys(store) == []
    v1, created = await catalog.register("trips", SCHEMA, [first], 10, expected_parent=NO_VERSION)
    assert (v1.version, created) == (1, True)
    # Another writer moves the dataset on; a register derived from v1 must not land on v2.
    await Catalog(store).register("trips", SCHEMA, [first, second], 20)
    before = await catalog_keys(store)
    for stale in (NO_VERSION, 1, 5):
        with pytest.raises(VersionConflict) as caught:
            await catalog.register("trips", SCHEMA, [second], 10, expected_parent=stale)
        assert caught.value.status == 409 and caught.value.code == "version_conflict"
        assert (caught.value.detail["expected"], caught.value.detail["current"]) == (stale, 2)
    assert await catalog_keys(store) == before
    # Same content as the current version is still idempotent, whatever the parent said.
    same, created = await catalog.register("trips", SCHEMA, [first, second], 20, expected_parent=1)
    assert (same.version, created) == (2, False)
    v3, created = await catalog.register("trips", SCHEMA, [second], 10, expected_parent=2)
    assert (v3.version, v3.parent_version, created) == (3, 2, True)
    with pytest.raises(InvalidRequest):
        await catalog.register("trips", SCHEMA, [first], 10, expected_parent=-1)


async def test_conditional_registers_racing_for_one_parent_have_one_winner(store: ObjectStore) -> None:
    parts = [await put_part(store, "trips", i) for i in range(6)]
    base, _ = await Catalog(store).register("trips", SCHEMA, [parts[0]], 10)
    catalogs = [Catalog(store) for _ in range(5)]
    outcomes = await asyncio.gather(
        *(
            cat.register("trips", SCHEMA, [*base.objects, part], 20, expected_parent=base.version)
            for cat, part in zip(catalogs, parts[1:], strict=True)
        ),
        return_exceptions=True,
    )
    won = [o for o in outcomes if isinstance(o, tuple)]
    assert len(won) == 1 and won[0][0].version == 2
    assert all(isinstance(o, VersionConflict) for o in outcomes if not isinstance(o, tuple))
    assert [m.version for m in await Catalog(store).versions("trips")] == [1, 2]


REGISTER_SCRIPT = """
import asyncio, sys
from lakehouse.catalog import Catalog, Column, ObjectRef
from lakehouse.storage.local import LocalStore

async def main(root, start):
    store = LocalStore(root)
    catalog = Catalog(store)
    out = []
    for i in range(start, start + 8):
        data = str(i).encode() * 3
        info = (await store.put_bytes(f"_lakehouse/datasets/t/p{i}", data)).info
        ref = ObjectRef(info.key, info.size, 1)
        m, created = await catalog.register("t", [Column("id", "BIGINT")], [ref], 1)
        out.append(m.version)
    await store.close()
    print(" ".join(map(str, out)))

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def test_two_processes_never_share_a_version(tmp_path: Path) -> None:
    root = str(tmp_path / "data")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", REGISTER_SCRIPT, root, str(start)], stdout=subprocess.PIPE, text=True
        )
        for start in (0, 100)
    ]
    outputs = [proc.communicate(timeout=60)[0] for proc in procs]
    assert all(proc.returncode == 0 for proc in procs)
    versions = sorted(int(v) for out in outputs for v in out.split())
    assert versions == list(range(1, 17))


async def test_current_all_sees_new_versions_and_ignores_stray_files(store: ObjectStore) -> None:
    reader, writer = Catalog(store), Catalog(store)
    trips = await put_part(store, "trips", 1)
    fares = await put_part(store, "fares", 1)
    await writer.register("trips", SCHEMA, [trips], 10)
    await writer.register("fares", SCHEMA, [fares], 10)
    await store.put_bytes("_lakehouse/catalog/trips/notes.txt", b"not a manifest")
    first = await reader.current_all()
    assert {name: h.versions for name, h in first.items()} == {"fares": (1,), "trips": (1,)}
    await writer.register("trips", SCHEMA, [trips, await put_part(store, "trips", 2, rows=0)], 10)
    second = await reader.current_all()
    assert second["trips"].current.version == 2
    assert second["trips"].versions == (1, 2)
    assert second["fares"].current == first["fares"].current
    assert manifest_key("trips", 2) == "_lakehouse/catalog/trips/0000000002.json"


@given(st.text(max_size=70))
def test_names_follow_the_pattern(name: str) -> None:
    if NAME_PATTERN.fullmatch(name):
        assert validate_name(name) == name
    else:
        with pytest.raises(InvalidName):
            validate_name(name)


@given(st.from_regex(NAME_PATTERN, fullmatch=True))
def test_every_pattern_name_is_accepted(name: str) -> None:
    assert validate_name(name) == name


# --- column types: DuckDB type names only, stored canonically ---------------------------------

INJECTION = 'INTEGER) AS "a" WHERE false; CREATE OR REPLACE VIEW people AS SELECT 666 AS id --'


@pytest.mark.parametrize(
    "text",
    [
        INJECTION,
        "INTEGER; DROP TABLE people",
        "INTEGER -- trailing comment",
        "INTEGER /* comment */",
        "INTEGER, extra VARCHAR",
        "INTEGER DEFAULT 1",
        "INTEGER NOT NULL",
        "INTEGER CHECK (1 = 1)",
        "INTEGER GENERATED ALWAYS AS (1)",
        "VARCHAR COLLATE nocase",
        "INTEGER)",
        "STRUCT(a INTEGER",
        "no_such_type",
        "",
        "   ",
        "INT\nEGER",
        "x" * 2000,
    ],
)
async def test_a_type_that_is_not_a_duckdb_type_is_refused_and_nothing_is_written(
    store: ObjectStore, text: str
) -> None:
    catalog = Catalog(store)
    with pytest.raises(InvalidRequest) as caught:
        await catalog.register("people", [Column("id", text)], [], 0)
    assert caught.value.code == "invalid_request"
    assert await catalog_keys(store) == []


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("integer", "INTEGER"),
        ("int4", "INTEGER"),
        ("DECIMAL(18, 3)", "DECIMAL(18,3)"),
        ("varchar[]", "VARCHAR[]"),
        ("BIGINT[3]", "BIGINT[3]"),
        ("struct(a int, b text)", "STRUCT(a INTEGER, b VARCHAR)"),
        ('STRUCT("a b); DROP" INT)', 'STRUCT("a b); DROP" INTEGER)'),
        ("map(varchar, integer)", "MAP(VARCHAR, INTEGER)"),
        ("timestamptz", "TIMESTAMP WITH TIME ZONE"),
        ("TIMESTAMP WITH TIME ZONE", "TIMESTAMP WITH TIME ZONE"),
        ("ENUM('a', 'it''s')", "ENUM('a', 'it''s')"),
        ("double precision", "DOUBLE"),
    ],
)
async def test_types_are_stored_in_duckdbs_canonical_spelling(
    tmp_path: Path, text: str, canonical: str
) -> None:
    from lakehouse.storage.local import LocalStore

    store = LocalStore(tmp_path / "data")
    manifest, _ = await Catalog(store).register("t", [Column("c", text)], [], 0)
    assert manifest.schema == (Column("c", canonical),)
    assert (await Catalog(store).get("t")).schema == (Column("c", canonical),)


@pytest.mark.parametrize("text", ["union(n int, s varchar)", "HUGEINT", "UBIGINT", "INTERVAL", "BIT"])
async def test_a_type_an_iceberg_table_cannot_hold_is_refused_and_nothing_is_written(
    tmp_path: Path, text: str
) -> None:
    from lakehouse.storage.local import LocalStore

    store = LocalStore(tmp_path / "data")
    with pytest.raises(InvalidRequest, match="Apache Iceberg"):
        await Catalog(store).register("t", [Column("ok", "BIGINT"), Column("c", text)], [], 0)
    with pytest.raises(NotFound):
        await Catalog(store).get("t")


@given(st.text(max_size=60))
def test_any_text_is_refused_or_becomes_a_type_duckdb_reads_back_the_same(text: str) -> None:
    import duckdb

    try:
        canonical = canonical_type(text)
    except InvalidRequest:
        return
    conn = duckdb.connect(":memory:")
    assert conn.sqltype(canonical) == conn.sqltype(text)
    assert canonical_type(canonical) == canonical
    # The canonical text is exactly one type: it casts, alone, in a statement of its own.
    assert conn.execute(f"SELECT CAST(NULL AS {canonical}) IS NULL").fetchone() == (True,)


@given(
    st.lists(
        st.sampled_from(["INTEGER", "VARCHAR", "DOUBLE", "DATE", "DECIMAL(9,2)", "BOOLEAN"]),
        min_size=1,
        max_size=3,
    ).map(lambda kinds: "STRUCT(" + ", ".join(f"f{i} {k}" for i, k in enumerate(kinds)) + ")[]")
)
def test_nested_types_round_trip(text: str) -> None:
    assert canonical_type(text) == text


@pytest.mark.parametrize("name", ["", "a\x00b", "tab\there", "line\nbreak", "x" * 256])
async def test_bad_column_names_are_refused(tmp_path: Path, name: str) -> None:
    from lakehouse.storage.local import LocalStore

    with pytest.raises(InvalidRequest):
        await Catalog(LocalStore(tmp_path / "data")).register("t", [Column(name, "INTEGER")], [], 0)


async def test_any_printable_column_name_is_kept_as_given(tmp_path: Path) -> None:
    from lakehouse.storage.local import LocalStore

    odd = 'a"; DROP VIEW people; --'
    manifest, _ = await Catalog(LocalStore(tmp_path / "data")).register("t", [Column(odd, "INTEGER")], [], 0)
    assert manifest.schema[0].name == odd


async def test_too_many_columns_or_objects_are_refused(tmp_path: Path) -> None:
    from lakehouse.catalog.manifest import MAX_COLUMNS, MAX_OBJECTS
    from lakehouse.storage.local import LocalStore

    catalog = Catalog(LocalStore(tmp_path / "data"))
    wide = [Column(f"c{i}", "INTEGER") for i in range(MAX_COLUMNS + 1)]
    with pytest.raises(InvalidRequest):
        await catalog.register("t", wide, [], 0)
    many = [ObjectSpec(f"f/{i}.parquet", 0) for i in range(MAX_OBJECTS + 1)]
    with pytest.raises(InvalidRequest):
        await catalog.register("t", SCHEMA, many, 0)


async def test_a_stored_manifest_with_a_hostile_type_reads_back_as_invalid_not_as_its_text(
    store: ObjectStore,
) -> None:
    """An earlier release stored request text as the type; reading it back never yields that text."""
    import json

    raw = {
        "name": "people",
        "version": 1,
        "schema": [{"name": "id", "type": INJECTION}, {"name": "city", "type": "varchar"}],
        "objects": [],
        "row_count": 0,
        "fingerprint": "old",
        "created_at": "2024-01-01T00:00:00.000Z",
        "parent_version": None,
    }
    await store.put_bytes(manifest_key("people", 1), json.dumps(raw).encode())
    catalog = Catalog(store)
    manifest = await catalog.get("people")
    assert manifest.schema == (Column("id", INVALID_TYPE), Column("city", "VARCHAR"))
    assert manifest.problems and "id" in manifest.problems[0]
    assert all(INJECTION not in c.type for m in await catalog.datasets() for c in m.schema)
    # Nothing can be registered on top of it (the types differ), but it can be deleted.
    with pytest.raises(SchemaDrift):
        await catalog.register("people", [Column("id", "INTEGER"), Column("city", "VARCHAR")], [], 0)
    await catalog.delete("people")
    with pytest.raises(NotFound):
        await catalog.get("people")


# --- versions pin their objects ---------------------------------------------------------------


async def put_user_object(store: ObjectStore, key: str, data: bytes) -> ObjectSpec:
    await store.put_bytes(key, data)
    return ObjectSpec(key, rows=1)


async def read(store: ObjectStore, key: str) -> bytes:
    return await store.get_bytes(key)


async def test_a_version_keeps_its_bytes_when_the_user_object_is_replaced_or_deleted(
    store: ObjectStore,
) -> None:
    catalog = Catalog(store)
    spec = await put_user_object(store, "uploads/people.parquet", b"original bytes")
    v1, created = await catalog.register("people", SCHEMA, [spec], 1)
    assert created
    (pinned,) = v1.objects
    assert pinned.key.startswith("_lakehouse/datasets/people/") and pinned.key.endswith(".parquet")
    assert pinned.size == len(b"original bytes")
    await store.put_bytes("uploads/people.parquet", b"replaced by someone else")
    assert await read(store, (await catalog.get("people", 1)).objects[0].key) == b"original bytes"
    await store.delete("uploads/people.parquet")
    assert await read(store, (await Catalog(store).get("people", 1)).objects[0].key) == b"original bytes"


async def test_registering_the_same_user_object_again_is_idempotent_and_copies_nothing(
    store: ObjectStore,
) -> None:
    catalog = Catalog(store)
    spec = await put_user_object(store, "uploads/people.parquet", b"same")
    v1, _ = await catalog.register("people", SCHEMA, [spec], 1)
    again, created = await Catalog(store).register("people", SCHEMA, [spec], 1)
    assert (again, created) == (v1, False)
    assert await data_files(store, "_lakehouse/datasets/people/") == [v1.objects[0].key]
    # Other bytes under the same key are other content: a new version.
    await store.put_bytes("uploads/people.parquet", b"different")
    v2, created = await catalog.register("people", SCHEMA, [spec], 1)
    assert (v2.version, created) == (2, True)
    assert await read(store, v2.objects[0].key) == b"different"
    assert await read(store, v1.objects[0].key) == b"same"


async def test_size_is_optional_and_a_wrong_one_is_refused(store: ObjectStore) -> None:
    catalog = Catalog(store)
    await store.put_bytes("uploads/a.parquet", b"12345")
    with pytest.raises(InvalidRequest) as caught:
        await catalog.register("a", SCHEMA, [ObjectSpec("uploads/a.parquet", 1, size=4)], 1)
    assert caught.value.code == "invalid_request"
    assert await catalog_keys(store) == []
    listed, _ = await store.list("_lakehouse/datasets/")
    assert listed == []
    manifest, _ = await catalog.register("a", SCHEMA, [ObjectSpec("uploads/a.parquet", 1)], 1)
    assert manifest.objects[0].size == 5


async def data_files(store: ObjectStore, prefix: str) -> list[str]:
    """The data files under `prefix`: every key but the Iceberg tables' metadata."""
    from lakehouse.catalog.iceberg import is_table_metadata

    listed, _ = await store.list(prefix)
    return [info.key for info in listed if not is_table_metadata(info.key)]


async def test_a_refused_register_leaves_no_copy(store: ObjectStore) -> None:
    catalog = Catalog(store)
    first = await put_user_object(store, "uploads/one.parquet", b"one")
    await catalog.register("people", SCHEMA, [first], 1)
    second = await put_user_object(store, "uploads/two.parquet", b"two")
    with pytest.raises(SchemaDrift):
        await catalog.register("people", [Column("other", "INTEGER")], [second], 1)
    with pytest.raises(VersionConflict):
        await catalog.register("people", SCHEMA, [second], 1, expected_parent=NO_VERSION)
    assert len(await data_files(store, "_lakehouse/datasets/people/")) == 1


async def test_a_copy_whose_manifest_never_landed_is_swept_as_an_orphan(
    store_settings: Settings, tmp_path: Path
) -> None:
    """A crash between copy and manifest: the copy is an unreferenced file under the dataset's area."""
    from lakehouse.catalog.pinning import pin_all
    from lakehouse.ingest.ingester import Ingester

    store = open_store(store_settings)
    try:
        catalog = Catalog(store)
        spec = await put_user_object(store, "uploads/p.parquet", b"kept")
        v1, _ = await catalog.register("people", SCHEMA, [spec], 1)
        info = await store.head("uploads/p.parquet")
        # What register does before writing the manifest, with no manifest after it.
        _, copies = await pin_all(store, "people", [ObjectRef(info.key, info.size, 1)], {info.key: info})
        settings = store_settings.model_copy(deep=True)
        settings.ingestd.orphan_grace_secs = 0
        settings.ingestd.tmp_dir = str(tmp_path / "spool")  # never the machine's shared spool folder
        removed = await Ingester(settings, store, catalog).sweep()
        assert removed == 1
        assert await data_files(store, "_lakehouse/datasets/people/") == [v1.objects[0].key] != copies
    finally:
        await store.close()


# --- deleting a dataset -------------------------------------------------------------------------


async def test_delete_removes_every_version_and_every_file(store: ObjectStore) -> None:
    catalog = Catalog(store)
    own = await put_part(store, "trips", 1)
    await catalog.register("trips", SCHEMA, [own], 10)
    user = await put_user_object(store, "uploads/trips.parquet", b"user")
    await catalog.register("trips", SCHEMA, [own, ObjectSpec(user.key, 10)], 20)
    await catalog.register("fares", SCHEMA, [await put_part(store, "fares", 1)], 10)
    assert await catalog.delete("trips") == 2
    for reader in (catalog, Catalog(store)):
        with pytest.raises(NotFound):
            await reader.get("trips")
        with pytest.raises(NotFound):
            await reader.get("trips", 1)
        assert [m.name for m in await reader.datasets()] == ["fares"]
    assert await catalog_keys(store) == [manifest_key("fares", 1)]
    listed, _ = await store.list("_lakehouse/datasets/trips/")
    assert listed == []
    # The user's own object is theirs: deleting the dataset leaves it.
    assert await read(store, "uploads/trips.parquet") == b"user"
    with pytest.raises(NotFound):
        await catalog.delete("trips")
    with pytest.raises(InvalidName):
        await catalog.delete("../trips")


async def test_a_dataset_deleted_and_created_again_is_new_to_every_reader(store: ObjectStore) -> None:
    writer, reader = Catalog(store), Catalog(store)
    await writer.register("trips", SCHEMA, [await put_part(store, "trips", 1)], 10)
    old = await reader.get("trips", 1)
    await writer.delete("trips")
    fresh, _ = await writer.register("trips", SCHEMA, [await put_part(store, "trips", 7, rows=3)], 3)
    assert fresh.version == 1
    # The reader cached the old version 1; it must not serve it again.
    assert await reader.get("trips", 1) == fresh != old
    assert (await reader.current_all())["trips"].current == fresh


async def test_an_interrupted_delete_leaves_no_version_over_missing_files_and_a_retry_finishes(
    store: ObjectStore,
) -> None:
    catalog = Catalog(store)
    first = await put_part(store, "trips", 1)
    await catalog.register("trips", SCHEMA, [first], 10)
    second = await put_part(store, "trips", 2)
    await catalog.register("trips", SCHEMA, [first, second], 20)
    # The crash came after the first manifest went: the current version is still whole.
    await store.delete(manifest_key("trips", 1))
    current = await Catalog(store).get("trips")
    for obj in current.objects:
        await store.head(obj.key)
    await catalog.delete("trips")
    # After all manifests but before the files: a retry removes the leftovers.
    await catalog.register("trips", SCHEMA, [await put_part(store, "trips", 3)], 10)
    await store.delete(manifest_key("trips", 1))
    await catalog.delete("trips")
    listed, _ = await store.list("_lakehouse/")
    assert [info.key for info in listed] == ["_lakehouse/catalog/_changes"]
