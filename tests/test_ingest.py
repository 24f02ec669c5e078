"""CSV ingest over a real local store and catalog: versions, idempotency, drift, bad CSV, orphans."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lakehouse.catalog import Catalog
from lakehouse.config import Settings
from lakehouse.errors import InvalidCsv, InvalidName, InvalidRequest, NotFound, SchemaDrift, TooLarge
from lakehouse.ingest import Ingester
from lakehouse.ingest.spool import spool
from lakehouse.storage import DATASETS_PREFIX, open_store
from lakehouse.storage.base import ObjectStore
from tests.support.staffing import csv_bytes


async def body(data: bytes, chunk: int = 65536) -> AsyncIterator[bytes]:
    """A request body in chunks."""
    for i in range(0, len(data), chunk):
        yield data[i : i + chunk]


def multipart(field: str, data: bytes, boundary: str = "XyZ123") -> tuple[bytes, str]:
    """A multipart/form-data body with one file field (and a text field before it)."""
    parts = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="x.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return parts, f"multipart/form-data; boundary={boundary}"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Local storage and spool folders under tmp_path; no orphan grace period."""
    return Settings.model_validate(
        {
            "storage": {"root": str(tmp_path / "data")},
            "ingestd": {
                "tmp_dir": str(tmp_path / "tmp"),
                "orphan_grace_secs": 0,
                "max_upload_bytes": 2_000_000,
            },
        }
    )


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[ObjectStore]:
    """The local object store."""
    store = open_store(settings)
    yield store
    await store.close()


@pytest.fixture
def ingester(settings: Settings, store: ObjectStore) -> Ingester:
    """An ingester over the store."""
    return Ingester(settings, store, Catalog(store))


async def dataset_files(store: ObjectStore) -> list[str]:
    """Keys of every dataset data file in the store (not the Iceberg tables' metadata)."""
    from lakehouse.catalog.iceberg import is_table_metadata

    listed, _ = await store.list(DATASETS_PREFIX)
    return [info.key for info in listed if not is_table_metadata(info.key)]


async def test_ingest_makes_a_version_with_sniffed_types(ingester: Ingester, store: ObjectStore) -> None:
    result = await ingester.ingest("placements", body(csv_bytes("placements", 2000)))
    assert result.created and result.rows == 2000 and result.manifest.version == 1
    types = {c.name: c.type for c in result.schema}
    assert types == {
        "placement_id": "BIGINT",
        "candidate_id": "BIGINT",
        "job_id": "BIGINT",
        "start_date": "DATE",
        "end_date": "DATE",
        "margin": "DOUBLE",
        "placed_at": "TIMESTAMP",
    }
    assert len(await dataset_files(store)) == 1


async def test_same_bytes_twice_is_the_same_version(ingester: Ingester, store: ObjectStore) -> None:
    data = csv_bytes("jobs", 300)
    first = await ingester.ingest("jobs", body(data))
    again = await ingester.ingest("jobs", body(data, chunk=7))
    assert not again.created and again.manifest.version == first.manifest.version and again.rows == 300
    replaced = await ingester.ingest("jobs", body(data), mode="replace")
    assert not replaced.created
    assert len(await dataset_files(store)) == 1


async def test_append_and_replace(ingester: Ingester) -> None:
    await ingester.ingest("jobs", body(csv_bytes("jobs", 100)))
    appended = await ingester.ingest("jobs", body(csv_bytes("jobs", 50, start=101)))
    assert (appended.manifest.version, appended.manifest.row_count, appended.rows) == (2, 150, 50)
    replaced = await ingester.ingest("jobs", body(csv_bytes("jobs", 20, start=500)), mode="replace")
    assert (replaced.manifest.version, replaced.manifest.row_count, len(replaced.manifest.objects)) == (
        3,
        20,
        1,
    )


async def test_multipart_file_field(ingester: Ingester) -> None:
    data, content_type = multipart("file", csv_bytes("candidates", 120))
    result = await ingester.ingest("candidates", body(data, chunk=1000), content_type)
    assert result.rows == 120
    again, _ = multipart("file", csv_bytes("candidates", 120), boundary="other")
    assert not (
        await ingester.ingest("candidates", body(again), "multipart/form-data; boundary=other")
    ).created
    wrong, content_type = multipart("upload", csv_bytes("candidates", 5))
    with pytest.raises(InvalidRequest, match="'file'"):
        await ingester.ingest("candidates", body(wrong), content_type)


async def test_drift_writes_nothing(ingester: Ingester, store: ObjectStore) -> None:
    await ingester.ingest("jobs", body(b"id,title\n1,clerk\n"))
    cases = {
        b"id,title,city\n2,cook,Lyon\n": ("added", "city"),
        b"id\n3\n": ("removed", "title"),
        b"id,title\nx,cook\n": ("changed", "id"),
    }
    for data, (kind, column) in cases.items():
        with pytest.raises(SchemaDrift) as caught:
            await ingester.ingest("jobs", body(data))
        assert [c["name"] for c in caught.value.detail[kind]] == [column]
    assert len(await dataset_files(store)) == 1
    # Same columns in another order is the same schema.
    swapped = await ingester.ingest("jobs", body(b"title,id\nbaker,4\n"))
    assert swapped.manifest.version == 2 and [c.name for c in swapped.schema] == ["id", "title"]


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b"a,b\n1,2\n3,4,5\n", 3),
        (b"a,b\n1,2\n3\n", 3),
        (b'a,b\n1,"open\n', 2),
        (b"a,b\n1,\xff\xfe\n", 2),
        (b"", 1),
        (b"a,b\n", 2),
        (b"\n\n\n", 1),
        (b"\r\n \r\n\t\n", 1),
        (b"\xef\xbb\xbf\n\n", 1),
        (b"a,b\n\n\n\n", 2),
    ],
    ids=[
        "ragged-long",
        "ragged-short",
        "unterminated-quote",
        "not-utf8",
        "empty",
        "header-only",
        "blank-lines",
        "blank-crlf-and-spaces",
        "bom-then-blank",
        "header-then-blank",
    ],
)
async def test_bad_csv_names_the_line(ingester: Ingester, store: ObjectStore, data: bytes, line: int) -> None:
    with pytest.raises(InvalidCsv) as caught:
        await ingester.ingest("broken", body(data))
    assert caught.value.detail["line"] == line
    assert await dataset_files(store) == []


async def test_late_type_change_past_the_sniff_sample_is_read(ingester: Ingester) -> None:
    data = b"n\n" + b"1\n" * 30000 + b"n/a\n"
    result = await ingester.ingest("numbers", body(data))
    assert result.schema[0].type == "VARCHAR" and result.rows == 30001


async def test_bad_names_fail_before_reading(ingester: Ingester) -> None:
    async def never() -> AsyncIterator[bytes]:
        raise AssertionError("the body was read")
        yield b""

    for name in ["Bad", "1abc", "a-b", "", "x" * 64, "../etc", "abc\n"]:
        with pytest.raises(InvalidName):
            await ingester.ingest(name, never())


async def test_upload_cap_and_cut_off_upload_leave_nothing(ingester: Ingester, settings: Settings) -> None:
    with pytest.raises(TooLarge):
        await ingester.ingest("big", body(b"a\n" + b"1\n" * 1_100_000))

    async def cut() -> AsyncIterator[bytes]:
        yield b"a,b\n1,2\n"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await ingester.ingest("cut", cut())
    assert list((Path(settings.ingestd.tmp_dir) / "lakehouse-ingest").iterdir()) == []


async def test_spool_hashes_while_streaming(tmp_path: Path) -> None:
    import hashlib

    data = os.urandom(3_000_000)
    spooled = await spool(body(data), "text/csv", tmp_path, max_bytes=10**7)
    assert spooled.sha256 == hashlib.sha256(data).hexdigest() and spooled.path.read_bytes() == data


async def test_sweep_removes_only_unreferenced_files(ingester: Ingester, store: ObjectStore) -> None:
    await ingester.ingest("jobs", body(csv_bytes("jobs", 10)))
    kept = await dataset_files(store)
    await store.put_bytes(f"{DATASETS_PREFIX}jobs/orphan.parquet", b"half")
    stale = Path(ingester._tmp) / "upload-stale.csv"  # a spool file from a crashed process
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"a\n1\n")
    os.utime(stale, (time.time() - 10, time.time() - 10))
    assert await ingester.sweep() == 1
    assert await dataset_files(store) == kept and not stale.exists()


async def parquet_rows(store: ObjectStore, keys: list[str]) -> int:
    """Rows DuckDB reads from these dataset files, as a query would see them."""
    import duckdb

    files = ", ".join(f"'{store.engine_path(key)}'" for key in keys)
    found = duckdb.connect().execute(f"SELECT count(*) FROM read_parquet([{files}])").fetchone()
    assert found is not None
    return int(found[0])


@pytest.fixture
async def rivals(settings: Settings, store: ObjectStore) -> AsyncIterator[list[Ingester]]:
    """Two ingesters over the same folder with their own store and catalog: they share no lock."""
    other = open_store(settings)
    try:
        yield [Ingester(settings, store, Catalog(store)), Ingester(settings, other, Catalog(other))]
    finally:
        await other.close()


async def test_concurrent_appends_from_two_ingesters_keep_every_file(
    rivals: list[Ingester], store: ObjectStore
) -> None:
    # Only the catalog's compare-and-set keeps one append from dropping another's file.
    sizes = [5 + i for i in range(10)]
    uploads = [csv_bytes("jobs", n, start=1000 * i) for i, n in enumerate(sizes)]
    results = await asyncio.gather(*(rivals[i % 2].ingest("jobs", body(d)) for i, d in enumerate(uploads)))
    assert all(r.created for r in results) and sorted(r.rows for r in results) == sorted(sizes)
    current = await Catalog(store).get("jobs")
    files = await dataset_files(store)
    assert current.version == 10 and current.row_count == sum(sizes)
    assert sorted(obj.key for obj in current.objects) == sorted(files) and len(files) == 10
    assert sorted({r.manifest.version for r in results}) == list(range(1, 11))
    assert await parquet_rows(store, files) == sum(sizes)


async def test_appends_from_two_threads_keep_every_row(settings: Settings, store: ObjectStore) -> None:
    errors: list[BaseException] = []
    # Opened up front: opening a LocalStore sweeps this process's temp files.
    stores = [open_store(settings) for _ in range(2)]

    async def writer(own: ObjectStore, starts: list[int]) -> None:
        try:
            ingester = Ingester(settings, own, Catalog(own))
            uploads = (body(csv_bytes("jobs", 7, start=s)) for s in starts)
            await asyncio.gather(*(ingester.ingest("jobs", upload) for upload in uploads))
        finally:
            await own.close()

    def run(own: ObjectStore, starts: list[int]) -> None:
        try:
            asyncio.run(writer(own, starts))
        except BaseException as exc:
            errors.append(exc)

    starts = [[1000 * (2 * i + t) for i in range(4)] for t in range(2)]
    threads = [threading.Thread(target=run, args=(stores[t], starts[t])) for t in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    current = await Catalog(store).get("jobs")
    assert (current.version, current.row_count, len(current.objects)) == (8, 56, 8)
    assert sorted(obj.key for obj in current.objects) == sorted(await dataset_files(store))


async def test_racing_first_ingests_with_other_columns_leave_one_file(
    rivals: list[Ingester], store: ObjectStore
) -> None:
    outcomes = await asyncio.gather(
        rivals[0].ingest("jobs", body(b"id,title\n1,clerk\n")),
        rivals[1].ingest("jobs", body(b"id,city\n2,Lyon\n")),
        return_exceptions=True,
    )
    assert sorted(type(o).__name__ for o in outcomes) == ["IngestResult", "SchemaDrift"]
    current = await Catalog(store).get("jobs")
    assert current.version == 1 and [obj.key for obj in current.objects] == await dataset_files(store)


async def test_same_bytes_racing_from_two_ingesters_make_one_version(
    rivals: list[Ingester], store: ObjectStore
) -> None:
    data = csv_bytes("jobs", 40)
    await rivals[0].ingest("jobs", body(csv_bytes("jobs", 3, start=900)))
    results = await asyncio.gather(*(ing.ingest("jobs", body(data)) for ing in rivals))
    assert sorted(r.created for r in results) == [False, True]
    assert {r.manifest.version for r in results} == {2} and {r.rows for r in results} == {40}
    current = await Catalog(store).get("jobs")
    assert current.row_count == 43 and sorted(obj.key for obj in current.objects) == sorted(
        await dataset_files(store)
    )


async def test_a_deleted_dataset_starts_again_at_version_one(ingester: Ingester, store: ObjectStore) -> None:
    first = await ingester.ingest("jobs", body(b"id,title\n1,baker\n"))
    await ingester.ingest("jobs", body(b"id,title\n2,cook\n"))
    assert first.manifest.version == 1
    catalog = Catalog(store)
    assert await catalog.delete("jobs") == 2
    assert await dataset_files(store) == []
    # The same bytes as before: not "already ingested", a new first version.
    again = await ingester.ingest("jobs", body(b"id,title\n1,baker\n"))
    assert (again.manifest.version, again.created, again.manifest.row_count) == (1, True, 1)
    # Deleted again, other columns are welcome: nothing of the old schema is left to drift from.
    await catalog.delete("jobs")
    other = await ingester.ingest("jobs", body(b"x\n1\n"))
    assert other.manifest.version == 1 and [c.name for c in other.schema] == ["x"]


@pytest.mark.parametrize("chunk", [1, 7, 65536, 3_000_000], ids=["1B", "7B", "64KiB", "3MB"])
async def test_spool_keeps_every_byte_but_a_leading_bom_whatever_the_chunks(
    tmp_path: Path, chunk: int
) -> None:
    import hashlib

    data = b"\xef\xbb\xbf" + os.urandom(2_500_000) if chunk > 1 else b"\xef\xbb\xbfa,b\n1,2\n"
    spooled = await spool(body(data, chunk), "text/csv", tmp_path, max_bytes=10**7)
    assert spooled.sha256 == hashlib.sha256(data).hexdigest() and spooled.size == len(data)
    assert spooled.path.read_bytes() == data[3:]


async def test_a_large_upload_cancelled_mid_body_leaves_nothing(
    ingester: Ingester, store: ObjectStore, settings: Settings
) -> None:
    started = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        yield b"a,b\n"
        for i in range(25):  # under the 2 MB cap: the upload is cut off, not refused
            if i == 20:  # over a megabyte in: a write is in flight
                started.set()
            yield b"1,2\n" * 16384
            await asyncio.sleep(0)

    task = asyncio.ensure_future(ingester.ingest("cancelled", endless()))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert list((Path(settings.ingestd.tmp_dir) / "lakehouse-ingest").iterdir()) == []
    assert await dataset_files(store) == []
    with pytest.raises(NotFound):
        await Catalog(store).get("cancelled")


async def test_an_ingest_leaves_no_copy_behind(
    ingester: Ingester, store: ObjectStore, settings: Settings
) -> None:
    result = await ingester.ingest("jobs", body(csv_bytes("jobs", 3000)))
    files = await dataset_files(store)
    assert len(files) == 1 and await parquet_rows(store, files) == 3000 == result.rows
    # The converted file was moved into the store: neither the spool nor the store's temp folder keeps one.
    assert list((Path(settings.ingestd.tmp_dir) / "lakehouse-ingest").iterdir()) == []
    assert list((Path(settings.storage.root) / ".tmp").iterdir()) == []


def form(fields: list[tuple[str, bytes]], boundary: str = "B0und") -> tuple[bytes, str]:
    """A multipart/form-data body of these fields in order; the one named `file` is a CSV file."""
    out = b""
    for name, value in fields:
        filename = '; filename="x.csv"' if name == "file" else ""
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"{filename}\r\n\r\n'.encode()
        out += value + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@pytest.mark.parametrize(
    "fields",
    [
        [("junk", b"x" * 3_000_000), ("file", b"a\n1\n")],
        [("file", b"a\n1\n"), ("after", b"x" * 3_000_000)],
        [("junk", b"x" * 1_500_000), ("file", b"a\n1\n"), ("after", b"x" * 1_500_000)],
        [(f"f{i}", b"x" * 1000) for i in range(3000)] + [("file", b"a\n1\n")],
    ],
    ids=["field-before", "field-after", "fields-around", "many-small-fields"],
)
async def test_a_multipart_body_counts_whole_against_the_upload_cap(
    ingester: Ingester, store: ObjectStore, settings: Settings, fields: list[tuple[str, bytes]]
) -> None:
    # The file is 4 bytes; the body around it is far past the 2 MB cap.
    data, content_type = form(fields)
    pulled = 0

    async def counted() -> AsyncIterator[bytes]:
        nonlocal pulled
        async for chunk in body(data):
            pulled += len(chunk)
            yield chunk

    with pytest.raises(TooLarge) as raised:
        await ingester.ingest("padded", counted(), content_type)
    assert raised.value.code == "too_large" and raised.value.status == 413
    # Reading stopped at the chunk that passed the cap (and its allowance for framing).
    cap = settings.ingestd.max_upload_bytes + 64 * 1024
    assert pulled <= cap + 65536 < len(data)
    assert list((Path(settings.ingestd.tmp_dir) / "lakehouse-ingest").iterdir()) == []
    assert await dataset_files(store) == []
    with pytest.raises(NotFound):
        await Catalog(store).get("padded")


async def test_a_multipart_body_near_the_cap_with_small_fields_still_ingests(ingester: Ingester) -> None:
    # A file just under the cap, with a few small fields and the framing on top of it.
    file = b"a\n" + b"1\n" * 999_000
    data, content_type = form([("note", b"hello"), ("file", file), ("tag", b"x" * 10_000)])
    assert len(file) < 2_000_000 < len(data)
    result = await ingester.ingest("near_cap", body(data), content_type)
    assert result.rows == 999_000
