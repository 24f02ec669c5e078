"""How far a worksheet reaches, read from its XML before DuckDB sees it.

DuckDB's excel extension sizes a sheet by its farthest cell: one cell at
ZZZZZZ1 in a 1.5 KB workbook makes it build hundreds of millions of columns
(gigabytes outside DuckDB's memory limit), one at row 2 000 000 000 keeps it
walking empty rows. So the sheet's XML is scanned first, streamed in bounded
chunks, and every cell reference (`<c r="...">`, or a cell's place in its row
when it has none), every row number and the `<dimension ref>` are checked
against Excel's own bounds (column XFD, row 1 048 576) and the dataset's
column cap. The dimension is checked but never trusted: a sheet may leave it
out or lie in it, so the cells decide.

The scan is a tokenizer, not a parser, to stay fast (an XML parser calling
back into Python for every element takes several times longer than DuckDB's
own read): outside comments, CDATA and processing instructions every `<`
starts markup (XML allows none in text or attribute values), so finding each
`<c`, `<row` and `<dimension` start tag misses no cell. A document type (whose
entities could add cells no tokenizer sees), a sheet not in UTF-8, and start
tags the scan cannot read are refused rather than guessed at.
"""

from __future__ import annotations

import re
from typing import IO

from lakehouse.errors import InvalidFile

MAX_SHEET_ROWS = 1_048_576
MAX_SHEET_COLUMNS = 16_384  # XFD
CHUNK_BYTES = 1024 * 1024
# The longest markup (a tag, comment or CDATA section) the scan holds across chunks.
MAX_MARKUP_BYTES = 1024 * 1024
_REF = re.compile(r"\$?([A-Za-z]+)\$?([0-9]+)")
_ROW = re.compile(r"[0-9]+")
# Where the scan must look: markup that hides or declares, and the start tags that place cells.
_MARKUP = re.compile(rb"<(?:(!--)|(!\[CDATA\[)|(\?)|(!)|(?:[A-Za-z_][\w.-]*:)?(c|row|dimension)(?=[\s/>]))")
_ATTRIBUTES = re.compile(rb"""((?:\s+[\w.:-]+\s*=\s*(?:"[^"<]*"|'[^'<]*'))*)\s*/?>""")
_ATTRIBUTE = re.compile(rb"""\s([\w.:-]+)\s*=\s*(?:"([^"<]*)"|'([^'<]*)')""")
_ENDS = {1: b"-->", 2: b"]]>", 3: b"?>"}
# The fast path: tags exactly as Excel and the usual libraries write them, counted against every tag.
_PREFIXED = re.compile(rb"<[\w.-]+:")
_ANY_CELL = re.compile(rb"<c[\s/>]")
_ANY_ROW = re.compile(rb"<row[\s/>]")
_PLAIN_CELL = re.compile(rb'<c r="([A-Z]{1,3})([0-9]{1,7})"[\s/>]')
_PLAIN_ROW = re.compile(rb'<row r="([0-9]{1,7})"[\s/>]')


def check_extent(sheet: IO[bytes], max_columns: int) -> None:
    """Check a worksheet's XML (streamed from `sheet`) reaches no farther than a dataset may.

    Raises:
        InvalidFile: a cell, row or dimension beyond Excel's bounds or past
            `max_columns` columns, a reference that is not one, a document
            type, a sheet not in UTF-8, or markup the scan cannot read.
    """
    extent = _Extent(min(max_columns, MAX_SHEET_COLUMNS))
    tail = start = b""
    while chunk := sheet.read(CHUNK_BYTES):
        if len(start) < 4:
            start += chunk[: 4 - len(start)]
            _check_encoding(start)
        buf = tail + chunk if tail else chunk
        cut = _cut(buf)
        if not extent.fast(buf[:cut]):
            cut = extent.scan(buf)
        tail = buf[cut:]
        if len(tail) > MAX_MARKUP_BYTES:
            raise InvalidFile(f"the sheet's XML holds markup longer than {MAX_MARKUP_BYTES} bytes")
    if tail:
        raise InvalidFile("the sheet's XML ends inside a tag")


def _cut(buf: bytes) -> int:
    """Where the markup `buf` holds only part of begins: at its last `<` if no `>` follows, else its end."""
    last = buf.rfind(b"<")
    return last if last >= 0 and buf.find(b">", last) < 0 else len(buf)


def _check_encoding(start: bytes) -> None:
    if start[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in start[:4]:
        raise InvalidFile("the sheet's XML is not in UTF-8")


class _Extent:
    """The current row and column of a scan, refusing any beyond the bounds."""

    def __init__(self, max_columns: int) -> None:
        self.max_columns = max_columns
        self.row = 0
        self.column = 0

    def fast(self, region: bytes) -> bool:
        """Check `region` (whole tags only) in bulk; False when it needs `scan` (or breaks a bound).

        Only for markup where every cell and row is written `<c r="A1"` and
        `<row r="1"`, with no prefixes, comments, CDATA, declarations or
        dimension; then the farthest cell is all that matters.
        """
        if b"<!" in region or b"<?" in region or b"dimension" in region or _PREFIXED.search(region):
            return False
        cells = _PLAIN_CELL.findall(region)
        rows = _PLAIN_ROW.findall(region)
        if len(cells) != len(_ANY_CELL.findall(region)) or len(rows) != len(_ANY_ROW.findall(region)):
            return False
        farthest = max((_column(letters) for letters in {cell[0] for cell in cells}), default=0)
        deepest = max(max(map(int, rows), default=0), max(map(int, (cell[1] for cell in cells)), default=0))
        if farthest > self.max_columns or deepest > MAX_SHEET_ROWS:
            return False  # `scan` names the cell
        if rows:
            self.row = int(rows[-1])
        if cells and region.rfind(b'<c r="') > region.rfind(b"<row "):
            self.column = _column(cells[-1][0])
        elif rows:
            self.column = 0
        return True

    def scan(self, buf: bytes) -> int:
        """Check the markup in `buf`; returns where the first markup `buf` holds only part of begins."""
        pos = 0
        while (found := _MARKUP.search(buf, pos)) is not None:
            kind = found.lastindex or 0
            if kind in _ENDS:
                end = buf.find(_ENDS[kind], found.end())
                if end < 0:
                    return found.start()
                pos = end + len(_ENDS[kind])
                continue
            if kind == 4:
                if len(buf) - found.start() < 9 and b">" not in buf[found.start() :]:
                    return found.start()
                raise InvalidFile("the sheet's XML declares a document type, which no worksheet does")
            attributes = _ATTRIBUTES.match(buf, found.end())
            if attributes is None:
                if b">" not in buf[found.end() : found.end() + MAX_MARKUP_BYTES]:
                    return found.start()
                raise InvalidFile("the sheet's XML has a start tag the scan cannot read")
            self._element(found.group(5), attributes.group(1))
            pos = attributes.end()
        # What follows the last markup is text, or a `<` whose markup the next chunk completes.
        last = buf.rfind(b"<")
        return last if last >= pos and b">" not in buf[last:] else len(buf)

    def _element(self, name: bytes, attributes: bytes) -> None:
        values = {
            m.group(1): m.group(2) if m.group(2) is not None else m.group(3)
            for m in _ATTRIBUTE.finditer(attributes)
        }
        if name == b"c":
            ref = values.get(b"r")
            if ref is None:
                self.column += 1
                self._check(self.column, max(self.row, 1), f"a cell after column {self.column - 1}")
            else:
                self.column, row = _cell(ref.decode("utf-8", "replace"))
                self._check(self.column, row, f"the cell {ref[:32].decode('utf-8', 'replace')}")
        elif name == b"row":
            raw = values.get(b"r")
            if raw is None:
                self.row += 1
            else:
                number = raw.decode("utf-8", "replace").strip()
                if not _ROW.fullmatch(number):
                    raise InvalidFile(
                        f"the sheet has a row numbered {number[:32]!r}, which is not a row number"
                    )
                self.row = _number(number, f"the row {number[:32]}")
            self._check(1, self.row, f"the row {self.row}")
            self.column = 0
        else:
            ref = values.get(b"ref", b"").decode("utf-8", "replace")
            for corner in ref.split(":")[:2]:
                column, row = _cell(corner)
                self._check(column, row, f"the sheet's dimension {ref[:32]}")

    def _check(self, column: int, row: int, what: str) -> None:
        if column > MAX_SHEET_COLUMNS or row > MAX_SHEET_ROWS:
            raise _beyond(what)
        if column > self.max_columns:
            raise InvalidFile(
                f"{what} is in column {column}; a dataset may have at most {self.max_columns} columns"
            )


def _cell(ref: str) -> tuple[int, int]:
    """(column, row) of an A1 reference (letters then digits), both from 1; past Excel's bounds is refused."""
    found = _REF.fullmatch(ref.strip())
    if found is None:
        raise InvalidFile(f"the sheet has a cell reference {ref[:32]!r}, which is not one")
    letters, digits = found.group(1).upper(), found.group(2)
    what = f"the cell {ref[:32]}"
    if len(letters) > 3:  # AAAA is column 18 279, past XFD
        raise _beyond(what)
    column = 0
    for letter in letters:
        column = column * 26 + ord(letter) - 64
    return column, _number(digits, what)


def _column(letters: bytes) -> int:
    column = 0
    for letter in letters:
        column = column * 26 + letter - 64
    return column


def _number(digits: str, what: str) -> int:
    """A row number, refused unread when it has more digits than Excel's last row."""
    if len(digits) > len(str(MAX_SHEET_ROWS)):
        raise _beyond(what)
    return int(digits)


def _beyond(what: str) -> InvalidFile:
    return InvalidFile(
        f"{what} lies beyond the last cell a sheet may have "
        f"(column XFD = {MAX_SHEET_COLUMNS}, row {MAX_SHEET_ROWS})"
    )
