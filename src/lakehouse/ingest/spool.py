"""Uploads to disk: the body (raw, or a multipart `file` field) streamed to a temp file.

The sha256 is computed on the way, so idempotency costs no second read, and
memory stays at two buffers whatever the upload's size: one being written
and hashed on a worker thread while the next one arrives. The format the request
declares is kept: the Content-Type of a raw body, or a multipart part's own
Content-Type, else its filename's extension. A leading UTF-8 BOM is left out of
the file (never out of the hash): DuckDB's CSV reader skips one, its JSON
reader does not, and no binary format starts with one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from lakehouse.errors import InvalidCsv, InvalidFile, InvalidRequest, TooLarge
from lakehouse.ingest.formats import TEXT_TABLES, Format, from_filename, from_media_type
from lakehouse.storage.base import write_streamed

SPOOL_PREFIX = "upload-"
BOM = b"\xef\xbb\xbf"
BLANK = b" \t\r\n"
# What a multipart body may hold beyond `max_bytes`: its boundaries, part headers and small fields.
MULTIPART_ALLOWANCE = 64 * 1024


@dataclass(frozen=True)
class Spooled:
    """An upload on local disk: where, how big, its sha256, and the format the request declared."""

    path: Path
    size: int
    sha256: str
    declared: Format | None = None


async def spool(chunks: AsyncIterator[bytes], content_type: str, folder: Path, max_bytes: int) -> Spooled:
    """Write the file carried by the body to a temp file in `folder`.

    A `multipart/form-data` body contributes its `file` field; any other body is the file.
    A multipart body as a whole, its other fields included, may hold at most
    `MULTIPART_ALLOWANCE` bytes more than `max_bytes`; nothing past that is read.
    The temp file is removed when anything goes wrong, including a cut-off upload.

    Raises:
        TooLarge: the file, or a multipart body with it, passed its limit.
        InvalidRequest: a multipart body without a `file` field, or a broken one.
        InvalidCsv: the upload is empty or blank and not declared as another format.
        InvalidFile: the upload is empty and declared as Parquet, JSON, NDJSON or XLSX.
    """
    mime, options = parse_options_header(content_type or "")
    part: FilePart | None = None
    if mime == b"multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            raise InvalidRequest("multipart body without a boundary")
        part = FilePart()
        chunks = file_field(_capped(chunks, max_bytes), boundary, part=part)
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=SPOOL_PREFIX, suffix=".upload", dir=folder)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            sink = _Sink(fh)
            size = await write_streamed(chunks, sink, max_bytes, what="upload")
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    declared = from_media_type(content_type) if part is None else part.declared()
    text_table = declared is None or declared in TEXT_TABLES
    # Blank lines count as an empty CSV.
    if size == 0 or (sink.blank and text_table):
        path.unlink()
        if not text_table:
            raise InvalidFile("the file is empty")
        raise InvalidCsv("the CSV is empty" if size == 0 else "the CSV holds only blank lines", line=1)
    return Spooled(path, size, sink.hasher.hexdigest(), declared)


async def _capped(chunks: AsyncIterator[bytes], max_bytes: int) -> AsyncIterator[bytes]:
    """The raw multipart body, cut off with `TooLarge` at the chunk that takes it past its limit."""
    limit = max_bytes + MULTIPART_ALLOWANCE
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise TooLarge(
                f"the multipart body is larger than the {max_bytes}-byte upload limit "
                f"(and {MULTIPART_ALLOWANCE} bytes for its other fields and framing)",
                limit=max_bytes,
            )
        yield chunk


class _Sink:
    """Writes an upload's batches to its file (on a worker thread, one at a time, in order).

    Each batch is hashed as it arrives, and the upload's leading BOM is left out
    of the file, never out of the hash. `blank`: the upload so far holds only
    whitespace (after a leading BOM).
    """

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.hasher = hashlib.sha256()
        self.blank = True
        self._first = True

    def __call__(self, chunks: list[bytes]) -> None:
        data = b"".join(chunks)
        self.hasher.update(data)
        if self._first:
            data = data.removeprefix(BOM)
            self._first = False
        if self.blank and data:
            self.blank = not data.strip(BLANK)
        self.fh.write(data)


@dataclass
class FilePart:
    """What a multipart `file` part says of itself: its Content-Type and filename."""

    content_type: bytes = b""
    filename: bytes = b""

    def declared(self) -> Format | None:
        """The format the part's Content-Type names, else its filename's extension."""
        return from_media_type(self.content_type) or from_filename(self.filename)


async def file_field(
    chunks: AsyncIterator[bytes], boundary: bytes, field: str = "file", part: FilePart | None = None
) -> AsyncIterator[bytes]:
    """The bytes of one field of a multipart/form-data stream, as they arrive; its headers fill `part`."""
    state = _Parts(field, part if part is not None else FilePart())
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": state.part_begin,
            "on_header_field": state.header_field,
            "on_header_value": state.header_value,
            "on_header_end": state.header_end,
            "on_headers_finished": state.headers_finished,
            "on_part_data": state.part_data,
            "on_part_end": state.part_end,
        },
    )
    try:
        async for chunk in chunks:
            parser.write(chunk)
            if state.out:
                yield b"".join(state.out)
                state.out.clear()
        parser.finalize()
    except MultipartParseError as exc:
        raise InvalidRequest(f"the multipart body is malformed: {exc}") from None
    if state.out:
        yield b"".join(state.out)
    if not state.found:
        raise InvalidRequest(f"the multipart body has no '{field}' field", field=field)


class _Parts:
    """python-multipart callbacks that keep the data of one named field."""

    def __init__(self, field: str, part: FilePart) -> None:
        self.field = field
        self.part = part
        self.found = False
        self.out: list[bytes] = []
        self._wanted = False
        self._name = b""
        self._value = b""
        self._content_type = b""

    def part_begin(self) -> None:
        self._wanted = False
        self._content_type = b""

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def header_end(self) -> None:
        name = self._name.lower()
        if name == b"content-disposition":
            _, params = parse_options_header(self._value)
            self._wanted = params.get(b"name") == self.field.encode() and not self.found
            if self._wanted:
                self.part.filename = params.get(b"filename", b"")[:1024]
        elif name == b"content-type":
            self._content_type = self._value[:256]
        self._name, self._value = b"", b""

    def headers_finished(self) -> None:
        if self._wanted:
            self.part.content_type = self._content_type

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self._wanted:
            self.out.append(data[start:end])

    def part_end(self) -> None:
        if self._wanted:
            self.found = True
            self._wanted = False


def clean_spool(folder: Path, older_than: float, now: float) -> int:
    """Remove upload temp files a crashed process left behind; returns how many."""
    removed = 0
    if not folder.is_dir():
        return 0
    for entry in folder.glob(SPOOL_PREFIX + "*"):
        with contextlib.suppress(OSError):
            if entry.stat().st_mtime < now - older_than:
                entry.unlink()
                removed += 1
    return removed
