"""Bytes in and out of `lakehouse.Client`: uploads in chunks, an Arrow answer as a file, SSE events."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from lakehouse.media_types import ARROW_STREAM as ARROW_STREAM  # where the client's modules take it from

CHUNK = 1024 * 1024
# Content types by file extension (the formats ingest takes); any other file goes without
# one, and the server reads its format from the bytes.
CONTENT_TYPES = {
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".parquet": "application/vnd.apache.parquet",
    ".json": "application/json",
    ".ndjson": "application/x-ndjson",
    ".jsonl": "application/x-ndjson",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

Source = str | os.PathLike[str] | bytes | IO[bytes]
Progress = Callable[[int], None]


def body_of(source: Source, progress: Progress | None = None) -> bytes | Iterator[bytes]:
    """A request body from bytes (as they are), a path or a binary file object (read in chunks)."""
    if isinstance(source, bytes):
        return source
    if isinstance(source, str | os.PathLike):
        return chunks_of_path(Path(source), progress)
    return chunks_of_file(source, progress)


def chunks_of_path(path: Path, progress: Progress | None) -> Iterator[bytes]:
    """A file's bytes, a megabyte at a time; `progress` is called with each chunk's size."""
    with open(path, "rb") as fh:
        yield from chunks_of_file(fh, progress)


def chunks_of_file(fh: IO[bytes], progress: Progress | None) -> Iterator[bytes]:
    """An open binary file's bytes, a megabyte at a time; `progress` is called with each chunk's size."""
    while data := fh.read(CHUNK):
        if progress is not None:
            progress(len(data))
        yield data


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """(event, parsed data) for each server-sent event in `lines`."""
    kind = "message"
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield kind, json.loads("\n".join(data))
            kind, data = "message", []
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield kind, json.loads("\n".join(data))


class ResponseFile:
    """A streamed response's bytes as the read-only file pyarrow's IPC reader takes."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all that is left when negative)."""
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out

    def readable(self) -> bool:
        """Always: the file is for reading."""
        return True

    def close(self) -> None:
        """Mark the file closed (the response is closed by its owner)."""
        self.closed = True
