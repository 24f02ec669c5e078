"""Uploads to disk: the body (raw CSV or a multipart `file` field) streamed to a temp file.

The sha256 is computed on the way, so idempotency costs no second read, and
memory stays at one buffer whatever the upload's size.
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

from lakehouse.errors import InvalidCsv, InvalidRequest, TooLarge
from lakehouse.runner import run_blocking

FLUSH_BYTES = 1024 * 1024
SPOOL_PREFIX = "upload-"
BOM = b"\xef\xbb\xbf"
BLANK = b" \t\r\n"


@dataclass(frozen=True)
class Spooled:
    """An upload on local disk: where, how big, and its sha256."""

    path: Path
    size: int
    sha256: str


async def spool(chunks: AsyncIterator[bytes], content_type: str, folder: Path, max_bytes: int) -> Spooled:
    """Write the CSV carried by the body to a temp file in `folder`.

    A `multipart/form-data` body contributes its `file` field; any other body is the CSV.
    The temp file is removed when anything goes wrong, including a cut-off upload.

    Raises:
        TooLarge: the CSV passed `max_bytes`.
        InvalidRequest: a multipart body without a `file` field, or a broken one.
        InvalidCsv: the CSV is empty.
    """
    mime, options = parse_options_header(content_type or "")
    if mime == b"multipart/form-data":
        boundary = options.get(b"boundary")
        if not boundary:
            raise InvalidRequest("multipart body without a boundary")
        chunks = file_field(chunks, boundary)
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=SPOOL_PREFIX, suffix=".csv", dir=folder)
    path = Path(name)
    hasher = hashlib.sha256()
    size = 0
    blank = True  # only whitespace so far: blank lines count as an empty CSV
    buffer = bytearray()
    try:
        with os.fdopen(fd, "wb") as fh:
            async for chunk in chunks:
                if blank and chunk:
                    blank = not (chunk.removeprefix(BOM) if size == 0 else chunk).strip(BLANK)
                size += len(chunk)
                if size > max_bytes:
                    raise TooLarge(f"the upload is larger than the {max_bytes}-byte limit", limit=max_bytes)
                buffer += chunk
                if len(buffer) >= FLUSH_BYTES:
                    await run_blocking(_write, fh, hasher, bytes(buffer))
                    buffer.clear()
            await run_blocking(_write, fh, hasher, bytes(buffer))
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    if size == 0 or blank:
        path.unlink()
        raise InvalidCsv("the CSV is empty" if size == 0 else "the CSV holds only blank lines", line=1)
    return Spooled(path, size, hasher.hexdigest())


def _write(fh: BinaryIO, hasher: hashlib._Hash, data: bytes) -> None:
    fh.write(data)
    hasher.update(data)


async def file_field(
    chunks: AsyncIterator[bytes], boundary: bytes, field: str = "file"
) -> AsyncIterator[bytes]:
    """The bytes of one field of a multipart/form-data stream, as they arrive."""
    state = _Parts(field)
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": state.part_begin,
            "on_header_field": state.header_field,
            "on_header_value": state.header_value,
            "on_header_end": state.header_end,
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

    def __init__(self, field: str) -> None:
        self.field = field
        self.found = False
        self.out: list[bytes] = []
        self._wanted = False
        self._name = b""
        self._value = b""

    def part_begin(self) -> None:
        self._wanted = False

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def header_end(self) -> None:
        if self._name.lower() == b"content-disposition":
            _, params = parse_options_header(self._value)
            self._wanted = params.get(b"name") == self.field.encode() and not self.found
        self._name, self._value = b"", b""

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
