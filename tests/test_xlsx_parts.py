"""Which part of a workbook is the sheet is the excel extension's reading, so every XML part is bounded.

Each crafted workbook below makes a reading by relationships (ours) and the
extension's differ: the part checked would be a plain sheet while DuckDB
sizes another, with a cell at XFD1, by it. Each is refused before DuckDB runs.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from pathlib import Path

import pytest

from lakehouse.errors import InvalidFile
from lakehouse.ingest.xlsx_reader import check_workbook
from tests.support.uploads import xlsx_bytes

NS = "http://schemas.openxmlformats.org"
CONTENT_TYPES = (
    f'<?xml version="1.0" encoding="UTF-8"?><Types xmlns="{NS}/package/2006/content-types">'
    '<Default Extension="xml" ContentType="application/xml"/></Types>'
)
ROOT_RELS = (
    f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{NS}/package/2006/relationships">'
    f'<Relationship Id="rId1" Type="{NS}/officeDocument/2006/relationships/officeDocument" '
    'Target="xl/workbook.xml"/></Relationships>'
)


def workbook_xml(sheets: str) -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{NS}/spreadsheetml/2006/main" '
        f'xmlns:r="{NS}/officeDocument/2006/relationships" xmlns:a="urn:x">'
        f"<sheets>{sheets}</sheets></workbook>"
    )


def rels(*targets: tuple[str, str], quote: str = '"') -> str:
    body = "".join(
        f"<Relationship Id={quote}{rid}{quote} Type={quote}{NS}/officeDocument/2006/relationships/worksheet"
        f"{quote} Target={quote}{target}{quote}/>"
        for rid, target in targets
    )
    head = f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{NS}/package/2006/relationships">'
    return f"{head}{body}</Relationships>"


def sheet_xml(far: bool) -> str:
    wide = '<c r="XFD1" t="inlineStr"><is><t>z</t></is></c>' if far else ""
    return (
        f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{NS}/spreadsheetml/2006/main"><sheetData>'
        f'<row r="1"><c r="A1" t="inlineStr"><is><t>id</t></is></c>{wide}</row></sheetData></worksheet>'
    )


GOOD, FAR = sheet_xml(False), sheet_xml(True)
COMMON = [("[Content_Types].xml", CONTENT_TYPES), ("_rels/.rels", ROOT_RELS)]
CASES = {
    "a single-quoted relationship to a part outside worksheets/": [
        ("xl/workbook.xml", workbook_xml('<sheet name="S" sheetId="1" r:id="rId1"/>')),
        ("xl/_rels/workbook.xml.rels", rels(("rId1", "evil.xml"), quote="'")),
        ("xl/worksheets/sheet1.xml", GOOD),
        ("xl/evil.xml", FAR),
    ],
    "another id attribute before r:id": [
        ("xl/workbook.xml", workbook_xml('<sheet name="S" sheetId="1" a:id="rId2" r:id="rId1"/>')),
        (
            "xl/_rels/workbook.xml.rels",
            rels(("rId1", "worksheets/sheet1.xml"), ("rId2", "worksheets/sheet2.xml")),
        ),
        ("xl/worksheets/sheet1.xml", FAR),
        ("xl/worksheets/sheet2.xml", GOOD),
    ],
    "two sheets of one name": [
        (
            "xl/workbook.xml",
            workbook_xml(
                '<sheet name="S" sheetId="1" r:id="rId2"/><sheet name="S" sheetId="2" r:id="rId1"/>'
            ),
        ),
        (
            "xl/_rels/workbook.xml.rels",
            rels(("rId1", "worksheets/sheet1.xml"), ("rId2", "worksheets/sheet2.xml")),
        ),
        ("xl/worksheets/sheet1.xml", FAR),
        ("xl/worksheets/sheet2.xml", GOOD),
    ],
    "two relationships of one id": [
        ("xl/workbook.xml", workbook_xml('<sheet name="S" sheetId="1" r:id="rId1"/>')),
        (
            "xl/_rels/workbook.xml.rels",
            rels(("rId1", "worksheets/sheet2.xml"), ("rId1", "worksheets/sheet1.xml")),
        ),
        ("xl/worksheets/sheet1.xml", FAR),
        ("xl/worksheets/sheet2.xml", GOOD),
    ],
    "two zip parts of one name": [
        ("xl/workbook.xml", workbook_xml('<sheet name="S" sheetId="1" r:id="rId1"/>')),
        ("xl/_rels/workbook.xml.rels", rels(("rId1", "worksheets/sheet1.xml"))),
        ("xl/worksheets/sheet1.xml", FAR),
        ("xl/worksheets/sheet1.xml", GOOD),
    ],
}


def write_zip(path: Path, parts: list[tuple[str, str | bytes]]) -> Path:
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as book:
        warnings.simplefilter("ignore")  # zipfile warns of the duplicate name it is told to write
        for name, data in parts:
            book.writestr(name, data)
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_far_sheet_behind_a_crafted_workbook_is_refused(tmp_path: Path, case: str) -> None:
    path = write_zip(tmp_path / "book.xlsx", COMMON + CASES[case])
    with pytest.raises(InvalidFile) as refused:
        check_workbook(path, "S")
    assert "XFD1" in refused.value.message or "two parts of one name" in refused.value.message


def test_a_workbook_with_pictures_drawings_and_styles_still_passes(tmp_path: Path) -> None:
    with zipfile.ZipFile(io.BytesIO(xlsx_bytes({"s": [["id"], [1]]}))) as source:
        parts: list[tuple[str, str | bytes]] = [(n, source.read(n)) for n in source.namelist()]
    drawing = (
        '<?xml version="1.0" encoding="UTF-8"?><xdr:wsDr xmlns:xdr="urn:drawing"><xdr:twoCellAnchor>'
        + "<xdr:from><xdr:col>0</xdr:col><xdr:row>5</xdr:row></xdr:from>" * 50
        + "</xdr:twoCellAnchor></xdr:wsDr>"
    )
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8  # binary, with stray "<" bytes in it
    path = write_zip(
        tmp_path / "book.xlsx", [*parts, ("xl/drawings/drawing1.xml", drawing), ("xl/media/image1.png", png)]
    )
    assert check_workbook(path, None) == ["s"]
