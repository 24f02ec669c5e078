"""The same small table in every format ingest takes, and broken variants of each, built in memory.

`table_bytes(fmt)` gives the `people` table (id, name, score) as CSV, TSV,
Parquet (written by DuckDB), JSON, NDJSON or XLSX (a workbook zipped here
from its XML parts, with as many sheets as asked); `MALFORMED` lists, per
format, the broken files a user might send and the error code each gets.
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from xml.sax.saxutils import escape

import duckdb

PEOPLE: list[tuple[int, str, float]] = [(1, "Ada", 9.5), (2, "Bo; the second", 7.25), (3, "Cy|Z", 8.0)]
COLUMNS = ("id", "name", "score")

CONTENT_TYPES = {
    "csv": "text/csv",
    "tsv": "text/tab-separated-values",
    "parquet": "application/vnd.apache.parquet",
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
EXTENSIONS = {
    "csv": ".csv",
    "tsv": ".tsv",
    "parquet": ".parquet",
    "json": ".json",
    "ndjson": ".ndjson",
    "xlsx": ".xlsx",
}
FORMATS = tuple(CONTENT_TYPES)


def delimited(rows: Sequence[Sequence[object]], delimiter: str) -> bytes:
    """Rows joined by `delimiter`, fields quoted when they hold it."""
    out = []
    for row in rows:
        cells = [str(v) for v in row]
        out.append(delimiter.join(f'"{c}"' if delimiter in c or '"' in c else c for c in cells))
    return ("\n".join(out) + "\n").encode()


def parquet_bytes(sql: str) -> bytes:
    """The Parquet file DuckDB writes for `sql`."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.parquet"
        with duckdb.connect() as conn:
            conn.execute(f"COPY ({sql}) TO '{path}' (FORMAT parquet)")
        return path.read_bytes()


def _cell(ref: str, value: object) -> str:
    if isinstance(value, bool):
        return f'<c r="{ref}" t="b"><v>{int(value)}</v></c>'
    if isinstance(value, int | float):
        return f'<c r="{ref}"><v>{value}</v></c>'
    return f'<c r="{ref}" t="inlineStr"><is><t>{escape(str(value))}</t></is></c>'


def _column(index: int) -> str:
    name, index = "", index + 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(65 + rest) + name
    return name


def xlsx_bytes(sheets: Mapping[str, Sequence[Sequence[object]]]) -> bytes:
    """A minimal XLSX workbook with these sheets (name -> rows, the first row the header)."""
    ns = "http://schemas.openxmlformats.org"
    overrides = "".join(
        f'<Override PartName="/xl/worksheets/sheet{i}.xml" ContentType="application/'
        f'vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/>'
        for i in range(1, len(sheets) + 1)
    )
    listed = "".join(
        f'<sheet name="{escape(name, {chr(34): "&quot;"})}" sheetId="{i}" r:id="rId{i}"/>'
        for i, name in enumerate(sheets, start=1)
    )
    rels = "".join(
        f'<Relationship Id="rId{i}" Type="{ns}/officeDocument/2006/relationships/worksheet" '
        f'Target="worksheets/sheet{i}.xml"/>'
        for i in range(1, len(sheets) + 1)
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as book:
        book.writestr(
            "[Content_Types].xml",
            f'<?xml version="1.0" encoding="UTF-8"?><Types xmlns="{ns}/package/2006/content-types">'
            '<Default Extension="rels" '
            'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/'
            f'vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>{overrides}</Types>',
        )
        book.writestr(
            "_rels/.rels",
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{ns}/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{ns}/officeDocument/2006/relationships/officeDocument" '
            'Target="xl/workbook.xml"/></Relationships>',
        )
        book.writestr(
            "xl/workbook.xml",
            f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{ns}/spreadsheetml/2006/main" '
            f'xmlns:r="{ns}/officeDocument/2006/relationships"><sheets>{listed}</sheets></workbook>',
        )
        book.writestr(
            "xl/_rels/workbook.xml.rels",
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{ns}/package/2006/relationships">'
            f"{rels}</Relationships>",
        )
        for i, rows in enumerate(sheets.values(), start=1):
            body = "".join(
                f'<row r="{r}">' + "".join(_cell(f"{_column(c)}{r}", v) for c, v in enumerate(row)) + "</row>"
                for r, row in enumerate(rows, start=1)
            )
            book.writestr(
                f"xl/worksheets/sheet{i}.xml",
                f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{ns}/spreadsheetml/2006/main">'
                f"<sheetData>{body}</sheetData></worksheet>",
            )
    return out.getvalue()


def table_bytes(fmt: str, rows: Sequence[tuple[int, str, float]] = PEOPLE) -> bytes:
    """The people table (or `rows` of it) as a file in `fmt`."""
    records = [dict(zip(COLUMNS, row, strict=True)) for row in rows]
    if fmt == "csv":
        return delimited([COLUMNS, *rows], ",")
    if fmt == "tsv":
        return delimited([COLUMNS, *rows], "\t")
    if fmt == "json":
        return json.dumps(records).encode()
    if fmt == "ndjson":
        return b"".join(json.dumps(r).encode() + b"\n" for r in records)
    if fmt == "xlsx":
        return xlsx_bytes({"people": [COLUMNS, *rows]})
    if fmt == "parquet":
        values = ", ".join(f"({i}, '{n}', {s})" for i, n, s in rows)
        typed = "SELECT id::BIGINT AS id, name, score::DOUBLE AS score"
        return parquet_bytes(f"{typed} FROM (VALUES {values}) AS t(id, name, score)")
    raise ValueError(fmt)


def multipart(
    data: bytes, filename: str, part_type: str | None = None, boundary: str = "b0undary"
) -> tuple[bytes, str]:
    """A multipart/form-data body whose `file` part carries `data` as `filename`."""
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
    if part_type is not None:
        head += f"Content-Type: {part_type}\r\n"
    body = head.encode() + b"\r\n" + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _malformed() -> dict[str, tuple[str, bytes, str]]:
    """Broken uploads: id -> (declared format or "" for none, bytes, the error code they get)."""
    parquet = table_bytes("parquet")
    workbook = table_bytes("xlsx")
    return {
        "parquet-truncated": ("parquet", parquet[: len(parquet) // 2], "invalid_file"),
        "parquet-footer-only": ("parquet", b"PAR1" + b"\x00" * 16 + b"PAR1", "invalid_file"),
        "parquet-sniffed-truncated": ("", parquet[:-9], "invalid_file"),
        "parquet-empty": ("parquet", b"", "invalid_file"),
        "json-syntax-error": ("json", b'[{"id": 1}, {"id": ]', "invalid_file"),
        "json-cut-off": ("json", b'[{"id": 1}, {"id": 2}', "invalid_file"),
        "json-sniffed-cut-off": ("", b'[{"id": 1},', "invalid_file"),
        "json-scalar": ("json", b"42", "invalid_file"),
        "json-string": ("json", b'"hello"', "invalid_file"),
        "json-array-of-numbers": ("json", b"[1, 2, 3]", "invalid_file"),
        "json-empty-array": ("json", b"[]", "invalid_file"),
        "json-empty": ("json", b"", "invalid_file"),
        "json-blank": ("json", b"  \n ", "invalid_file"),
        "json-not-utf8": ("json", b'[{"name": "caf\xe9"}]', "invalid_file"),
        "ndjson-bad-line": ("ndjson", b'{"id": 1}\n{"id": \n', "invalid_file"),
        "ndjson-scalars": ("ndjson", b"1\n2\n", "invalid_file"),
        "xlsx-not-a-zip": ("xlsx", b"this is not a workbook", "invalid_file"),
        "xlsx-zip-header-only": ("", b"PK\x03\x04garbage", "invalid_file"),
        "xlsx-truncated": ("xlsx", workbook[: len(workbook) // 2], "invalid_file"),
        "xlsx-zip-not-workbook": ("xlsx", _zip({"hello.txt": b"hi"}), "invalid_file"),
        "xlsx-empty-sheet": ("xlsx", xlsx_bytes({"s": []}), "invalid_file"),
        "xlsx-header-only": ("xlsx", xlsx_bytes({"s": [["a", "b"]]}), "invalid_file"),
        "xlsx-empty": ("xlsx", b"", "invalid_file"),
        "csv-unclosed-quote-in-header": ("", b'"a\n', "invalid_csv"),
        "csv-ragged": ("csv", b"a;b\n1;2\n3;4;5\n", "invalid_csv"),
        "tsv-ragged": ("tsv", b"a\tb\n1\n", "invalid_csv"),
        "csv-empty": ("", b"", "invalid_csv"),
    }


def _zip(members: Mapping[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


MALFORMED = _malformed()
