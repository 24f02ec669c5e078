"""The worksheet scan that refuses cells beyond Excel's bounds before DuckDB sizes a sheet by them."""

from __future__ import annotations

import io

import pytest

from lakehouse.errors import InvalidFile
from lakehouse.ingest import xlsx_extent
from lakehouse.ingest.xlsx_extent import check_extent

NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
HEADER = '<row r="1"><c r="A1" t="inlineStr"><is><t>id</t></is></c></row>'
DATA = '<row r="2"><c r="A2"><v>1</v></c></row>'


def sheet(data: str, before: str = "", prefix: str = "") -> bytes:
    """A worksheet's XML around `data` (the inside of sheetData)."""
    p = f"{prefix}:" if prefix else ""
    xmlns = f"xmlns:{prefix}" if prefix else "xmlns"
    return (
        f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<{p}worksheet {xmlns}="{NS}">'
        f"{before}<{p}sheetData>{data}</{p}sheetData></{p}worksheet>"
    ).encode()


def cells(count: int) -> str:
    """A header row of `count` cells that carry no reference (each one column on)."""
    return '<row r="1">' + "<c><v>1</v></c>" * count + "</row>"


HOSTILE = {
    "column-ZZZZ": sheet(HEADER.replace("</row>", '<c r="ZZZZ1"><v>1</v></c></row>') + DATA),
    "column-ZZZZZZ": sheet(HEADER.replace("</row>", '<c r="ZZZZZZ1"><v>1</v></c></row>') + DATA),
    "column-XFE": sheet(HEADER.replace("</row>", '<c r="XFE1"><v>1</v></c></row>') + DATA),
    "column-XFD-past-the-cap": sheet(HEADER.replace("</row>", '<c r="XFD1"><v>1</v></c></row>') + DATA),
    "column-10001": sheet(HEADER.replace("</row>", '<c r="NTQ1"><v>1</v></c></row>') + DATA),
    "lowercase-ref": sheet(HEADER.replace("</row>", '<c r="zzzz1"><v>1</v></c></row>') + DATA),
    "dollar-ref": sheet(HEADER.replace("</row>", '<c r="$ZZZZ$1"><v>1</v></c></row>') + DATA),
    "cell-row-2000000000": sheet(HEADER + '<row r="2000000000"><c r="A2000000000"><v>1</v></c></row>'),
    "row-only-2000000000": sheet(HEADER + '<row r="2000000000"><c><v>1</v></c></row>'),
    "row-1048577": sheet(HEADER + '<row r="1048577"><c r="A1048577"><v>1</v></c></row>'),
    "row-of-a-thousand-digits": sheet(HEADER + f'<row r="{"9" * 1000}"><c><v>1</v></c></row>'),
    "unreferenced-cells-past-the-cap": sheet(cells(10_001)),
    "dimension-only": sheet(HEADER + DATA, before='<dimension ref="A1:ZZZZZZ1"/>'),
    "dimension-past-the-cap": sheet(HEADER + DATA, before='<dimension ref="A1:XFD1048576"/>'),
    "prefixed-elements": sheet(
        '<x:row r="1"><x:c r="A1"><x:v>1</x:v></x:c><x:c r="ZZZZ1"><x:v>1</x:v></x:c></x:row>', prefix="x"
    ),
    "single-quotes-and-attribute-order": sheet(
        HEADER.replace("</row>", "<c s='1' r='ZZZZ1'><v>1</v></c></row>") + DATA
    ),
    "a-fake-r-inside-another-value": sheet(
        HEADER.replace("</row>", '<c t="n r=\'B1\'" r="ZZZZ1"><v>1</v></c></row>') + DATA
    ),
    "after-a-comment": sheet(HEADER + '<!-- <c r="A9" --><row r="2"><c r="ZZZZ2"><v>1</v></c></row>'),
    "not-a-reference": sheet(HEADER.replace("</row>", '<c r="1A"><v>1</v></c></row>') + DATA),
    "entity-in-a-reference": sheet(HEADER.replace("</row>", '<c r="&#90;ZZZ1"><v>1</v></c></row>') + DATA),
    "unquoted-attribute": sheet(HEADER.replace("</row>", "<c r=ZZZZ1><v>1</v></c></row>") + DATA),
    "doctype": b'<?xml version="1.0"?><!DOCTYPE w [<!ENTITY e "<c r=\'ZZZZ1\'/>">]>' + sheet(HEADER)[38:],
    "utf-16": sheet(HEADER.replace("</row>", '<c r="ZZZZ1"><v>1</v></c></row>')).decode().encode("utf-16"),
    "cut-inside-a-tag": sheet(HEADER)[:-3] + b'<c r="A',
}

NORMAL = {
    "plain": sheet(HEADER + DATA),
    "dimension": sheet(HEADER + DATA, before='<dimension ref="A1:A2"/>'),
    "last-cell": sheet(
        HEADER + '<row r="1048576"><c r="XFD1048576"><v>1</v></c></row>'.replace("XFD", "NTP")
    ),
    "unreferenced": sheet(cells(10_000) + "<row><c><v>2</v></c></row>"),
    "prefixed": sheet('<x:row r="1"><x:c r="A1"><x:v>1</x:v></x:c></x:row>', prefix="x"),
    "comment-and-cdata": sheet(
        HEADER + '<!-- <c r="ZZZZ9"/> --><row r="2"><c r="B2" t="inlineStr"><is><t><![CDATA[<c r="ZZZZ2">]]>'
        "</t></is></c></row>"
    ),
    "attributes-with-gt": sheet(
        '<row r="1" spans="1:2" x14ac:dyDescent=">"><c r="B1" s="2"><v>1</v></c></row>'
    ),
}


@pytest.fixture(params=[xlsx_extent.CHUNK_BYTES, 7, 1], ids=["one-chunk", "chunks-of-7", "chunks-of-1"])
def chunked(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scan in the usual chunks and in tiny ones, so every tag and comment straddles a chunk boundary."""
    monkeypatch.setattr(xlsx_extent, "CHUNK_BYTES", request.param)


@pytest.mark.parametrize("case", sorted(HOSTILE))
@pytest.mark.usefixtures("chunked")
def test_a_sheet_reaching_past_the_bounds_is_refused(case: str) -> None:
    with pytest.raises(InvalidFile) as raised:
        check_extent(io.BytesIO(HOSTILE[case]), 10_000)
    assert raised.value.status == 400 and raised.value.code == "invalid_file"
    assert raised.value.message


@pytest.mark.parametrize("case", sorted(NORMAL))
@pytest.mark.usefixtures("chunked")
def test_a_sheet_within_the_bounds_passes(case: str) -> None:
    check_extent(io.BytesIO(NORMAL[case]), 10_000)


def test_the_error_names_the_cell_and_the_bound() -> None:
    with pytest.raises(InvalidFile) as raised:
        check_extent(io.BytesIO(HOSTILE["column-ZZZZZZ"]), 10_000)
    assert "ZZZZZZ1" in raised.value.message and "XFD" in raised.value.message
    with pytest.raises(InvalidFile) as raised:
        check_extent(io.BytesIO(HOSTILE["column-10001"]), 10_000)
    assert "10001" in raised.value.message and "10000 columns" in raised.value.message


def test_a_large_ordinary_sheet_passes_in_bulk() -> None:
    rows = "".join(
        f'<row r="{r}" spans="1:3"><c r="A{r}"><v>{r}</v></c><c r="B{r}" t="s"><v>0</v></c>'
        f'<c r="C{r}" s="1"><v>1.5</v></c></row>'
        for r in range(1, 50_001)
    )
    check_extent(io.BytesIO(sheet(rows, before='<dimension ref="A1:C50000"/>')), 10_000)
    # The same sheet with one cell too far is refused however deep in it the cell lies.
    far = rows.replace('<c r="C49999" s="1">', '<c r="ZZZZ49999" s="1">')
    with pytest.raises(InvalidFile):
        check_extent(io.BytesIO(sheet(far)), 10_000)
