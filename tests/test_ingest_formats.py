"""Every input format through the real ingester on a temp local store: detection, delimiters, errors."""

from __future__ import annotations

import json
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from lakehouse.catalog import Catalog
from lakehouse.config import Settings
from lakehouse.errors import InvalidCsv, InvalidFile, InvalidRequest, LakehouseError, SchemaDrift, TooLarge
from lakehouse.ingest import Ingester, IngestResult
from lakehouse.ingest.formats import sniff
from lakehouse.ingest.json_reader import MAX_DEPTH, NestingGauge
from lakehouse.storage import DATASETS_PREFIX, open_store
from lakehouse.storage.base import ObjectStore
from tests.support.uploads import (
    CONTENT_TYPES,
    EXTENSIONS,
    FORMATS,
    MALFORMED,
    PEOPLE,
    delimited,
    multipart,
    parquet_bytes,
    table_bytes,
    xlsx_bytes,
)

# What each format's people table reads as: XLSX numbers are all DOUBLE.
TYPES = {fmt: ["BIGINT", "VARCHAR", "DOUBLE"] for fmt in FORMATS} | {"xlsx": ["DOUBLE", "VARCHAR", "DOUBLE"]}


async def body(data: bytes, chunk: int = 65536) -> AsyncIterator[bytes]:
    """A request body in chunks."""
    for i in range(0, len(data), chunk):
        yield data[i : i + chunk]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Local storage and spool folders under tmp_path."""
    return Settings.model_validate(
        {
            "storage": {"root": str(tmp_path / "data")},
            "ingestd": {"tmp_dir": str(tmp_path / "spool"), "max_upload_bytes": 64 * 1024 * 1024},
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


async def dataset_rows(store: ObjectStore, result: IngestResult) -> list[tuple[Any, ...]]:
    """The current version's rows, read by DuckDB from the stored Parquet files, by id."""
    files = ", ".join(f"'{store.engine_path(obj.key)}'" for obj in result.manifest.objects)
    with duckdb.connect() as conn:
        return conn.execute(f"SELECT * FROM read_parquet([{files}]) ORDER BY 1").fetchall()


async def dataset_files(store: ObjectStore) -> list[str]:
    """Keys of every dataset data file (Parquet) in the store."""
    listed, _ = await store.list(DATASETS_PREFIX)
    return [info.key for info in listed if info.key.endswith(".parquet")]


def assert_people(result: IngestResult, fmt: str) -> None:
    """The result is the people table, with the format's types."""
    assert result.created and result.rows == len(PEOPLE)
    assert [c.name for c in result.schema] == ["id", "name", "score"]
    assert [c.type for c in result.schema] == TYPES[fmt]


@pytest.mark.parametrize("fmt", FORMATS)
async def test_each_format_by_content_type(ingester: Ingester, store: ObjectStore, fmt: str) -> None:
    result = await ingester.ingest("people", body(table_bytes(fmt), chunk=1000), CONTENT_TYPES[fmt])
    assert_people(result, fmt)
    rows = await dataset_rows(store, result)
    assert [(int(i), n, float(s)) for i, n, s in rows] == PEOPLE


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "part_type", [None, "application/octet-stream"], ids=["no-part-type", "octet-stream"]
)
async def test_each_format_by_multipart_filename(ingester: Ingester, fmt: str, part_type: str | None) -> None:
    data, content_type = multipart(table_bytes(fmt), f"upload{EXTENSIONS[fmt]}", part_type)
    assert_people(await ingester.ingest("people", body(data), content_type), fmt)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json", "ndjson", "xlsx"])
async def test_each_format_by_bytes_alone(ingester: Ingester, fmt: str) -> None:
    for content_type in ("", "application/octet-stream"):
        result = await ingester.ingest(f"people_{fmt}", body(table_bytes(fmt)), content_type, mode="replace")
        assert result.rows == len(PEOPLE) and [c.type for c in result.schema] == TYPES[fmt]
    # A multipart part with neither a type nor a known extension is sniffed too.
    data, content_type = multipart(table_bytes(fmt), "upload.bin")
    assert (await ingester.ingest("sniffed", body(data), content_type, mode="replace")).rows == len(PEOPLE)


def test_sniffing_the_first_bytes() -> None:
    assert sniff(b"PAR1\x15\x04") == "parquet"
    assert sniff(b"PK\x03\x04\x14\x00") == "xlsx"
    assert sniff(b"\xef\xbb\xbf \n [{") == "json"
    assert sniff(b'\n{"a": 1}') == "ndjson"
    assert sniff(b"a,b\n") == "csv" and sniff(b"") == "csv"


@pytest.mark.parametrize("delimiter", [",", ";", "|", "\t"], ids=["comma", "semicolon", "pipe", "tab"])
@pytest.mark.parametrize("content_type", ["text/csv", ""], ids=["declared-csv", "sniffed"])
async def test_csv_delimiters_become_the_right_columns(
    ingester: Ingester, store: ObjectStore, delimiter: str, content_type: str
) -> None:
    # Values hold the other delimiters (and a decimal comma), which must stay inside their cells.
    rows = [("id", "name", "price", "note"), (1, "Ada", 9.5, "a,b;c|d"), (2, "Bo", 7.25, "1,5")]
    result = await ingester.ingest("items", body(delimited(rows, delimiter)), content_type)
    assert [(c.name, c.type) for c in result.schema] == [
        ("id", "BIGINT"),
        ("name", "VARCHAR"),
        ("price", "DOUBLE"),
        ("note", "VARCHAR"),
    ]
    assert await dataset_rows(store, result) == [(1, "Ada", 9.5, "a,b;c|d"), (2, "Bo", 7.25, "1,5")]


async def test_a_semicolon_file_with_decimal_commas_keeps_its_columns(ingester: Ingester) -> None:
    result = await ingester.ingest("eu", body(b"city;amount\nLyon;1,50\nGent;2,75\n"), "text/csv")
    assert [c.name for c in result.schema] == ["city", "amount"] and result.rows == 2


async def test_the_strict_row_check_still_names_the_line_for_other_delimiters(ingester: Ingester) -> None:
    for data in (b"a;b\n1;2\n3;4;5\n", b"a|b\n1|2\n3\n", b"a\tb\n1\t2\n3\t4\t5\n"):
        with pytest.raises(InvalidCsv) as caught:
            await ingester.ingest("ragged", body(data))
        assert caught.value.detail["line"] == 3


@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_malformed_files_get_their_code_and_name_no_server_path(
    ingester: Ingester, store: ObjectStore, settings: Settings, tmp_path: Path, case: str
) -> None:
    fmt, data, code = MALFORMED[case]
    with pytest.raises(LakehouseError) as caught:
        await ingester.ingest("broken", body(data), CONTENT_TYPES.get(fmt, ""))
    assert caught.value.code == code and caught.value.status == 400
    said = json.dumps(caught.value.body())
    for secret in (
        str(tmp_path),
        settings.storage.root,
        settings.ingestd.tmp_dir,
        "upload-",
        "lakehouse-ingest",
    ):
        assert secret not in said, said
    assert caught.value.message[0].islower() and len(caught.value.message) > 15
    assert await dataset_files(store) == []
    assert list((tmp_path / "spool" / "lakehouse-ingest").iterdir()) == []


async def test_sheet_picks_a_sheet_and_an_unknown_one_is_invalid_file(
    ingester: Ingester, store: ObjectStore
) -> None:
    workbook = xlsx_bytes(
        {
            "summary": [["total"], [3]],
            "People & more": [["id", "name"], [1, "Ada"], [], [2, "Bo"]],
        }
    )
    first = await ingester.ingest("summary", body(workbook))
    assert [c.name for c in first.schema] == ["total"] and first.rows == 1
    chosen = await ingester.ingest("people", body(workbook), sheet="People & more")
    # The blank row is skipped, and the row after it is kept.
    assert await dataset_rows(store, chosen) == [(1.0, "Ada"), (2.0, "Bo")]
    with pytest.raises(InvalidFile, match="no sheet 'nope'") as caught:
        await ingester.ingest("people", body(workbook), sheet="nope")
    assert caught.value.detail["sheets"] == ["summary", "People & more"]
    with pytest.raises(InvalidRequest, match="XLSX"):
        await ingester.ingest("people", body(table_bytes("csv")), sheet="People & more")


async def test_another_sheet_of_the_same_bytes_is_not_already_ingested(ingester: Ingester) -> None:
    workbook = xlsx_bytes({"a": [["x"], [1]], "b": [["x"], [2], [3]]})
    await ingester.ingest("sheets", body(workbook), sheet="a")
    other = await ingester.ingest("sheets", body(workbook), sheet="b")
    assert other.created and other.manifest.row_count == 3
    again = await ingester.ingest("sheets", body(workbook), sheet="b")
    assert not again.created and again.manifest.version == other.manifest.version


@pytest.mark.parametrize("fmt", FORMATS)
async def test_same_bytes_again_and_drift_for_every_format(
    ingester: Ingester, store: ObjectStore, fmt: str
) -> None:
    data = table_bytes(fmt)
    first = await ingester.ingest("people", body(data), CONTENT_TYPES[fmt])
    again = await ingester.ingest("people", body(data, chunk=333), CONTENT_TYPES[fmt])
    assert not again.created and again.manifest.version == first.manifest.version == 1
    more = await ingester.ingest("people", body(table_bytes(fmt, [(4, "Di", 1.5)])), CONTENT_TYPES[fmt])
    assert more.created and more.manifest.row_count == 4
    drifted = {
        "csv": b"id,city\n1,Lyon\n",
        "tsv": b"id\tcity\n1\tLyon\n",
        "parquet": parquet_bytes("SELECT 1 AS id, 'Lyon' AS city"),
        "json": b'[{"id": 1, "city": "Lyon"}]',
        "ndjson": b'{"id": 1, "city": "Lyon"}\n',
        "xlsx": xlsx_bytes({"s": [["id", "city"], [1, "Lyon"]]}),
    }[fmt]
    with pytest.raises(SchemaDrift) as caught:
        await ingester.ingest("people", body(drifted), CONTENT_TYPES[fmt])
    assert [c["name"] for c in caught.value.detail["added"]] == ["city"]
    assert len(await dataset_files(store)) == 2


async def test_a_json_array_on_one_long_line_is_read_whole(ingester: Ingester) -> None:
    records = [{"id": i, "name": f"n{i}", "tags": [i, i + 1], "at": {"x": i}} for i in range(60_000)]
    data = json.dumps(records, separators=(",", ":")).encode()
    assert b"\n" not in data and len(data) > 3_000_000
    result = await ingester.ingest("long", body(data), "application/json")
    assert result.rows == 60_000
    assert [c.type for c in result.schema] == ["BIGINT", "VARCHAR", "BIGINT[]", "STRUCT(x BIGINT)"]


async def test_one_json_value_past_the_object_limit_is_too_large(
    ingester: Ingester, store: ObjectStore
) -> None:
    # DuckDB reads values up to twice its limit in one buffer; far past that it refuses.
    huge = b'{"id": 1, "text": "' + b"x" * (40 * 1024 * 1024) + b'"}\n'
    for content_type in ("application/x-ndjson", "application/json", ""):
        with pytest.raises(TooLarge):
            await ingester.ingest("huge", body(huge, chunk=1024 * 1024), content_type)
    assert await dataset_files(store) == []


@pytest.mark.parametrize("opener", [b"[", b'{"a":'], ids=["arrays", "objects"])
async def test_deep_nesting_is_refused_before_duckdb_reads_it(ingester: Ingester, opener: bytes) -> None:
    closer = b"]" if opener == b"[" else b"}"
    for depth in (MAX_DEPTH + 1, 200_000):  # far past the depth that overflows DuckDB's stack
        data = b'[{"v":' + opener * depth + (b"1" if opener != b"[" else b"") + closer * depth + b"}]"
        with pytest.raises(InvalidFile, match="deeper than"):
            await ingester.ingest("deep", body(data))
    fine = b'[{"v":' + b'{"a":' * 10 + b"1" + b"}" * 10 + b"}]"
    assert (await ingester.ingest("deep", body(fine))).rows == 1


def test_the_nesting_gauge_ignores_brackets_in_strings_across_blocks() -> None:
    data = json.dumps([{"s": '[[[{{ \\" ]]', "t": ["\\", [["x"]]]}]).encode()
    for size in (1, 2, 3, 7, len(data)):
        gauge = NestingGauge()
        for i in range(0, len(data), size):
            gauge.feed(data[i : i + size])
        assert (gauge.deepest, gauge.depth, gauge.in_string) == (5, 0, False), size


def _depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    return 0


_TRICKY = st.text(alphabet='"\\[]{}a', max_size=6)
_JSON = st.recursive(
    st.none() | st.integers() | _TRICKY,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TRICKY, inner, max_size=3),
    max_leaves=20,
)


@hypothesis_settings(max_examples=300, deadline=None)
@given(value=_JSON, block=st.integers(min_value=1, max_value=64))
def test_the_nesting_gauge_measures_any_json_in_any_blocks(value: Any, block: int) -> None:
    data = json.dumps(value).encode()
    gauge = NestingGauge()
    for i in range(0, len(data), block):
        gauge.feed(data[i : i + block])
    assert (gauge.deepest, gauge.depth, gauge.in_string) == (_depth(value), 0, False)


async def test_many_columns_are_read_or_refused_clearly(ingester: Ingester, store: ObjectStore) -> None:
    wide = {f"c{i}": i for i in range(500)}
    result = await ingester.ingest("wide", body(json.dumps([wide, wide]).encode()))
    assert len(result.schema) == 500 and result.rows == 2
    csv = (",".join(f"c{i}" for i in range(800)) + "\n" + ",".join("1" for _ in range(800)) + "\n").encode()
    assert len((await ingester.ingest("wide_csv", body(csv))).schema) == 800
    too_wide = parquet_bytes("SELECT " + ", ".join(f"{i} AS c{i}" for i in range(10_001)))
    with pytest.raises((InvalidFile, TooLarge)) as caught:
        await ingester.ingest("too_wide", body(too_wide))
    assert caught.value.status in (400, 413) and caught.value.message
    assert [k for k in await dataset_files(store) if "too_wide" in k] == []


async def test_an_xlsx_that_unpacks_far_past_its_size_is_too_large(
    ingester: Ingester, tmp_path: Path
) -> None:
    bomb = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as book:
        book.writestr("[Content_Types].xml", "<Types/>")
        book.writestr("xl/workbook.xml", '<workbook><sheets><sheet name="s"/></sheets></workbook>')
        with book.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as sheet:
            block = b" " * (1024 * 1024)
            for _ in range(300):
                sheet.write(block)
    data = bomb.read_bytes()
    assert len(data) < 2_000_000
    with pytest.raises(TooLarge, match="unpacks"):
        await ingester.ingest("bomb", body(data))


async def test_a_bom_before_json_is_skipped(ingester: Ingester) -> None:
    result = await ingester.ingest("bom", body(b'\xef\xbb\xbf[{"a": 1}]'), "application/json")
    assert [c.name for c in result.schema] == ["a"] and result.rows == 1
