"""Every input format through a real `lakehouse serve` over HTTP, the Python client and the CLI."""

from __future__ import annotations

import io
import json
import os
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lakehouse.client import Client
from tests.support.cluster import LakehouseCluster
from tests.support.procs import LAKEHOUSE, LakehouseProcess, serving, write_config
from tests.support.uploads import (
    CONTENT_TYPES,
    EXTENSIONS,
    FORMATS,
    MALFORMED,
    PEOPLE,
    delimited,
    multipart,
    table_bytes,
    xlsx_bytes,
)

pytestmark = pytest.mark.e2e

# The services a split-mode ingest reaches through the gateway.
SPLIT_SERVICES = ("ingestd", "catalogd")
TYPES = {fmt: ["BIGINT", "VARCHAR", "DOUBLE"] for fmt in FORMATS} | {"xlsx": ["DOUBLE", "VARCHAR", "DOUBLE"]}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LakehouseProcess, Path]]:
    """One lakehouse with its data and spool folders under one root (the root is what no error may name)."""
    root = tmp_path_factory.mktemp("formats")
    config = write_config(
        root / "lakehouse.toml",
        {
            "storage": {"root": str(root / "data")},
            "ingestd": {"tmp_dir": str(root / "spool"), "max_upload_bytes": 64 * 1024 * 1024},
        },
    )
    with serving(config) as proc:
        yield proc, root


@pytest.fixture
def client(served: tuple[LakehouseProcess, Path]) -> Iterator[httpx.Client]:
    """An HTTP client of the lakehouse."""
    with served[0].client() as http:
        yield http


def created(answer: httpx.Response) -> dict[str, Any]:
    """The body of a 201 ingest answer."""
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    assert body["created"] is True
    return body


def rows(client: httpx.Client, sql: str) -> list[list[Any]]:
    """Rows of a query that must succeed."""
    answer = client.post("/v1/sql", json={"sql": sql})
    assert answer.status_code == 200, answer.text
    found: list[list[Any]] = answer.json()["rows"]
    return found


def assert_people(client: httpx.Client, body: dict[str, Any], fmt: str) -> None:
    """The answer and the dataset hold the people table."""
    assert body["rows"] == len(PEOPLE)
    assert [(c["name"], c["type"]) for c in body["schema"]] == list(
        zip(["id", "name", "score"], TYPES[fmt], strict=True)
    )
    got = rows(client, f'SELECT id, name, score FROM "{body["dataset"]}" ORDER BY id')
    assert [(int(i), n, float(s)) for i, n, s in got] == PEOPLE


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_by_content_type_then_the_same_bytes_again(client: httpx.Client, fmt: str) -> None:
    data = table_bytes(fmt)
    headers = {"content-type": CONTENT_TYPES[fmt]}
    body = created(client.post(f"/v1/ingest/ct_{fmt}", content=data, headers=headers))
    assert_people(client, body, fmt)
    again = client.post(f"/v1/ingest/ct_{fmt}", content=data, headers=headers)
    assert again.status_code == 200 and again.json()["created"] is False and again.json()["version"] == 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_by_multipart_filename(client: httpx.Client, fmt: str) -> None:
    files = {"file": (f"people{EXTENSIONS[fmt]}", table_bytes(fmt), "application/octet-stream")}
    assert_people(client, created(client.post(f"/v1/ingest/mp_{fmt}", files=files)), fmt)
    # A hand-built form whose part has no Content-Type at all.
    data, content_type = multipart(table_bytes(fmt), f"people{EXTENSIONS[fmt]}")
    answer = client.post(f"/v1/ingest/mp2_{fmt}", content=data, headers={"content-type": content_type})
    assert_people(client, created(answer), fmt)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json", "ndjson", "xlsx"])
def test_each_format_by_bytes_alone(client: httpx.Client, fmt: str) -> None:
    assert_people(client, created(client.post(f"/v1/ingest/raw_{fmt}", content=table_bytes(fmt))), fmt)
    octets = client.post(
        f"/v1/ingest/oct_{fmt}",
        content=table_bytes(fmt),
        headers={"content-type": "application/octet-stream"},
    )
    assert_people(client, created(octets), fmt)


@pytest.mark.parametrize("delimiter", [";", "|", "\t"], ids=["semicolon", "pipe", "tab"])
def test_delimiters_become_the_right_columns(client: httpx.Client, delimiter: str) -> None:
    name = {";": "semicolons", "|": "pipes", "\t": "tabs"}[delimiter]
    data = delimited([("id", "city", "note"), (1, "Lyon", "a,b"), (2, "Gent", "1,5")], delimiter)
    body = created(client.post(f"/v1/ingest/{name}", content=data, headers={"content-type": "text/csv"}))
    assert [c["name"] for c in body["schema"]] == ["id", "city", "note"]
    assert rows(client, f"SELECT * FROM {name} ORDER BY id") == [[1, "Lyon", "a,b"], [2, "Gent", "1,5"]]


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_get_their_code_and_name_no_server_path(
    served: tuple[LakehouseProcess, Path], client: httpx.Client, case: str
) -> None:
    fmt, data, code = MALFORMED[case]
    headers = {"content-type": CONTENT_TYPES[fmt]} if fmt else {}
    answer = client.post("/v1/ingest/broken", content=data, headers=headers)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == code and error["message"]
    root = served[1]
    for secret in (str(root), str(root.resolve()), "upload-", "lakehouse-ingest", "/tmp/"):
        assert secret not in answer.text, answer.text
    assert client.get("/v1/catalog/datasets/broken").status_code == 404


def test_sheet_picks_a_sheet_and_an_unknown_one_is_400(client: httpx.Client) -> None:
    workbook = xlsx_bytes({"notes": [["text"], ["hello"]], "Q1 sales": [["region", "amount"], ["north", 10]]})
    headers = {"content-type": CONTENT_TYPES["xlsx"]}
    body = created(client.post("/v1/ingest/sales?sheet=Q1%20sales", content=workbook, headers=headers))
    assert [c["name"] for c in body["schema"]] == ["region", "amount"]
    assert rows(client, "SELECT * FROM sales") == [["north", 10.0]]
    first = created(client.post("/v1/ingest/notes", content=workbook, headers=headers))
    assert [c["name"] for c in first["schema"]] == ["text"]
    unknown = client.post("/v1/ingest/sales?sheet=Q2", content=workbook, headers=headers)
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "invalid_file"
    assert "Q1 sales" in unknown.json()["error"]["message"]
    too_long = client.post(f"/v1/ingest/sales?sheet={'x' * 40}", content=workbook, headers=headers)
    assert too_long.status_code == 400
    not_a_workbook = client.post("/v1/ingest/sales?sheet=Q1", content=b"a,b\n1,2\n")
    assert not_a_workbook.status_code == 400 and not_a_workbook.json()["error"]["code"] == "invalid_request"


def test_drift_is_409_across_formats(client: httpx.Client) -> None:
    created(client.post("/v1/ingest/mixed", content=table_bytes("parquet")))
    # The same columns from another format append; other columns are drift.
    appended = client.post("/v1/ingest/mixed", content=table_bytes("ndjson", [(9, "Zed", 1.0)]))
    assert appended.status_code == 201 and appended.json()["row_count"] == 4
    drift = client.post("/v1/ingest/mixed", content=b'[{"id": 1, "city": "Lyon"}]')
    assert drift.status_code == 409 and drift.json()["error"]["code"] == "schema_drift"


def test_bounds_give_a_clear_4xx_and_the_server_stays_up(client: httpx.Client) -> None:
    deep = b'[{"v":' + b"[" * 300_000 + b"]" * 300_000 + b"}]"
    answer = client.post("/v1/ingest/bounded", content=deep)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_file"
    huge = b'{"text": "' + b"x" * (40 * 1024 * 1024) + b'"}\n'
    answer = client.post("/v1/ingest/bounded", content=huge, headers={"content-type": "application/x-ndjson"})
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "too_large"
    assert client.get("/health").status_code == 200
    assert client.get("/v1/catalog/datasets/bounded").status_code == 404


SHEET_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
ID_HEADER = '<row r="1"><c r="A1" t="inlineStr"><is><t>id</t></is></c>'
# Sheets a few hundred bytes big that DuckDB would size by their farthest cell: minutes of CPU or
# gigabytes of memory each, before the scan refused them.
FAR_SHEETS = {
    "column-ZZZZ": f'{ID_HEADER}<c r="ZZZZ1"><v>1</v></c></row><row r="2"><c r="A2"><v>1</v></c></row>',
    "column-ZZZZZZ": f'{ID_HEADER}<c r="ZZZZZZ1"><v>1</v></c></row><row r="2"><c r="A2"><v>1</v></c></row>',
    "row-2000000000": f'{ID_HEADER}</row><row r="2000000000"><c r="A2000000000"><v>1</v></c></row>',
    "column-XFD-past-the-column-cap": f'{ID_HEADER}<c r="XFD1"><v>1</v></c></row>',
    "unreferenced-cells-past-the-column-cap": '<row r="1">' + "<c><v>1</v></c>" * 10_001 + "</row>",
    "a-lying-dimension": f"{ID_HEADER}</row>",
}
BEFORE_DATA = {"a-lying-dimension": '<dimension ref="A1:XFD1048576"/>'}


def workbook_with_sheet(sheet_data: str, before: str = "") -> bytes:
    """A one-sheet workbook whose sheet XML holds `sheet_data` inside its sheetData, `before` ahead of it."""
    book = io.BytesIO(xlsx_bytes({"s": [["id"], [1]]}))
    out = io.BytesIO()
    with zipfile.ZipFile(book) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for name in source.namelist():
            data = source.read(name)
            if name == "xl/worksheets/sheet1.xml":
                data = (
                    f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{SHEET_NS}">'
                    f"{before}<sheetData>{sheet_data}</sheetData></worksheet>"
                ).encode()
            target.writestr(name, data)
    return out.getvalue()


@pytest.mark.parametrize("case", sorted(FAR_SHEETS))
def test_a_sheet_reaching_past_excels_bounds_is_400_at_once_and_creates_nothing(
    client: httpx.Client, case: str
) -> None:
    workbook = workbook_with_sheet(FAR_SHEETS[case], BEFORE_DATA.get(case, ""))
    assert len(workbook) < 4096
    name = "far_" + case.replace("-", "_").lower()
    answer = client.post(
        f"/v1/ingest/{name}", content=workbook, headers={"content-type": CONTENT_TYPES["xlsx"]}
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["code"] == "invalid_file"
    assert "XFD" in error["message"] or "10000 columns" in error["message"]
    assert client.get(f"/v1/catalog/datasets/{name}").status_code == 404
    # Named by ?sheet= the same sheet is refused the same way.
    named = client.post(
        f"/v1/ingest/{name}?sheet=s", content=workbook, headers={"content-type": CONTENT_TYPES["xlsx"]}
    )
    assert named.status_code == 400 and named.json()["error"]["code"] == "invalid_file"
    assert client.get(f"/v1/catalog/datasets/{name}").status_code == 404
    assert client.get("/health").status_code == 200


def test_a_sheet_at_the_edge_of_the_bounds_still_ingests(client: httpx.Client) -> None:
    # Unreferenced cells (each one column on) and a cell at Excel's last row: both allowed.
    data = (
        '<row r="1"><c r="A1" t="inlineStr"><is><t>id</t></is></c>'
        '<c t="inlineStr"><is><t>b</t></is></c></row>'
        '<row r="2"><c r="A2"><v>1</v></c><c><v>2</v></c></row>'
        '<row r="1048576"><c r="A1048576"><v>3</v></c></row>'
    )
    workbook = workbook_with_sheet(data)
    body = created(
        client.post("/v1/ingest/edge", content=workbook, headers={"content-type": CONTENT_TYPES["xlsx"]})
    )
    assert [c["name"] for c in body["schema"]] == ["id", "b"]
    assert rows(client, "SELECT id, b FROM edge ORDER BY id") == [[1.0, 2.0], [3.0, None]]


def test_the_python_client_sends_each_format_by_its_extension(
    served: tuple[LakehouseProcess, Path], tmp_path: Path
) -> None:
    with Client(served[0].url) as lh:
        for fmt in FORMATS:
            path = tmp_path / f"people{EXTENSIONS[fmt]}"
            path.write_bytes(table_bytes(fmt))
            result = lh.ingest(f"client_{fmt}", path)
            assert result.created and result.rows == len(PEOPLE)
        workbook = tmp_path / "book.xlsx"
        workbook.write_bytes(xlsx_bytes({"a": [["x"], [1]], "b": [["y"], [2], [3]]}))
        assert lh.ingest("client_sheet", workbook, sheet="b").rows == 2


def lakehouse_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """`lakehouse ARGS` as a user runs it."""
    done = subprocess.run(
        [LAKEHOUSE, *args],
        input=stdin,
        capture_output=True,
        env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
        timeout=60,
    )
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


def test_the_cli_ingests_any_format_from_a_file_or_stdin(
    served: tuple[LakehouseProcess, Path], tmp_path: Path
) -> None:
    gw = ["--gateway", served[0].url]
    piped = lakehouse_cli("ingest", "-", "--name", "cli_piped", "--json", *gw, stdin=table_bytes("parquet"))
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)["rows"] == len(PEOPLE)
    book = tmp_path / "book.xlsx"
    book.write_bytes(xlsx_bytes({"a": [["x"], [1]], "b": [["y"], [2], [3]]}))
    done = lakehouse_cli("ingest", str(book), "--name", "cli_book", "--sheet", "b", "--json", *gw)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["schema"] == [{"name": "y", "type": "DOUBLE"}]
    refused = lakehouse_cli("ingest", "-", "--name", "cli_bad", *gw, stdin=b'[{"a": 1},')
    assert refused.returncode == 1 and "invalid_file" in refused.stderr


def test_split_mode_passes_the_format_and_the_sheet_through_the_gateway(tmp_path: Path) -> None:
    config = {"ingestd": {"tmp_dir": str(tmp_path / "spool")}}
    cluster = LakehouseCluster("split", tmp_path, config=config, services=SPLIT_SERVICES)
    try:
        cluster.start_all()
        with cluster.client() as http:
            for fmt in ("parquet", "json", "xlsx"):
                headers = {"content-type": CONTENT_TYPES[fmt]}
                body = created(
                    http.post(f"/v1/ingest/split_{fmt}", content=table_bytes(fmt), headers=headers)
                )
                assert body["rows"] == len(PEOPLE)
            files = {"file": ("people.ndjson", table_bytes("ndjson"), "application/octet-stream")}
            assert created(http.post("/v1/ingest/split_form", files=files))["rows"] == len(PEOPLE)
            workbook = xlsx_bytes({"a": [["x"], [1]], "b": [["y"], [2], [3]]})
            assert created(http.post("/v1/ingest/split_sheet?sheet=b", content=workbook))["rows"] == 2
            broken = http.post("/v1/ingest/split_bad", content=b'[{"a": 1},')
            assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_file"
            assert str(tmp_path) not in broken.text
    finally:
        cluster.stop_all()


def form_body(fields: list[tuple[str, bytes]], boundary: str = "B0und") -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body of these fields in order (the one named `file` a CSV file), its headers."""
    out = b""
    for name, value in fields:
        filename = '; filename="a.csv"' if name == "file" else ""
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"{filename}\r\n\r\n'.encode()
        out += value + b"\r\n"
    body = out + f"--{boundary}--\r\n".encode()
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


def test_extra_multipart_fields_count_against_the_upload_cap(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "lakehouse.toml",
        {
            "storage": {"root": str(tmp_path / "data")},
            "ingestd": {"tmp_dir": str(tmp_path / "spool"), "max_upload_bytes": 1000},
        },
    )
    junk = b"x" * 5_000_000
    with serving(config) as proc, proc.client(timeout=60) as http:
        for name, fields in {
            "before": [("junk", junk), ("file", b"id\n1\n")],
            "after": [("file", b"id\n1\n"), ("after", junk)],
            "around": [("junk", junk), ("file", b"id\n1\n"), ("after", junk)],
        }.items():
            content, headers = form_body(fields)
            answer = http.post(f"/v1/ingest/padded_{name}", content=content, headers=headers)
            assert answer.status_code == 413, answer.text
            assert answer.json()["error"]["code"] == "too_large"
            assert http.get(f"/v1/catalog/datasets/padded_{name}").status_code == 404
        # The same code as a raw body past the cap.
        raw = http.post(
            "/v1/ingest/raw", content=b"id\n" + b"1\n" * 1000, headers={"content-type": "text/csv"}
        )
        assert raw.status_code == 413 and raw.json()["error"]["code"] == "too_large"
        # A file within the cap, with a small field and the framing on top, still ingests.
        content, headers = form_body([("note", b"n" * 500), ("file", b"id\n" + b"1\n" * 400)])
        assert len(content) > 1000
        body = created(http.post("/v1/ingest/small", content=content, headers=headers))
        assert body["row_count"] == 400
        assert http.get("/v1/catalog/datasets").status_code == 200
        listed = http.get("/v1/catalog/datasets").json()
        assert "padded_around" not in json.dumps(listed) and "small" in json.dumps(listed)
