"""Bounds on an Avro file a client wrote (a commit's manifest list or manifest), before pyiceberg reads it.

pyiceberg reads an Avro container file into memory in one call and inflates
each of its blocks in one call, then makes a Python object per record. So a
commit naming a file of gigabytes, or a few megabytes of deflate that inflate
to gigabytes (deflate reaches about 1,000:1 on zeros, bzip2 far more), or a
block claiming billions of records, would take the server's memory before any
check on what the file lists could run.

`check_avro` walks the container as the Avro specification lays it out
(magic, a metadata map naming the codec, a sync marker, then blocks of a
record count, a byte size, the bytes and the sync marker again) and inflates
each block into a bounded buffer, refusing the file once its bytes, inflated
bytes or records pass their bounds. It reads no record: what the records
hold is pyiceberg's to read once the file is known to be small.
"""

from __future__ import annotations

import bz2
import io
import zlib
from typing import TYPE_CHECKING, Any

from lakehouse.catalog.manifest import MAX_OBJECTS
from lakehouse.errors import InvalidRequest

if TYPE_CHECKING:
    from pyiceberg.io import FileIO

# One manifest list or manifest, as stored and inflated; a version's worth of
# files takes a few megabytes.
MAX_AVRO_BYTES = 64 << 20
# All of a commit's snapshot's manifest list and manifests together, as stored.
MAX_SNAPSHOT_AVRO_BYTES = 256 << 20
# Entries in a snapshot's manifests: a version's files, and as many deleted ones beside them.
MAX_ENTRIES = 2 * MAX_OBJECTS

MAGIC = b"Obj\x01"
SYNC_SIZE = 16
# More metadata entries than any writer sets (schema, codec and a few of Iceberg's).
MAX_METADATA_ENTRIES = 64
# The codecs pyiceberg reads here (snappy needs a package the server does not install).
CODECS = ("null", "deflate", "bzip2", "zstandard")
_INFLATE_STEP = 1 << 20


def check_avro(data: bytes, what: str, max_bytes: int, max_records: int) -> int:
    """The records in an Avro container file, once its size, inflated size and records are within bounds.

    Raises:
        InvalidRequest: the file is not an Avro container, names another codec, is cut short,
            holds more than `max_records` records, or is or inflates past `max_bytes` bytes.
    """
    if len(data) > max_bytes:
        raise InvalidRequest(f"the commit's {what} is {len(data)} bytes; at most {max_bytes} are read")
    if not data.startswith(MAGIC):
        raise InvalidRequest(f"the commit's {what} is not an Avro file")
    reader = _Reader(data, what)
    reader.take(len(MAGIC))
    codec = _codec(reader, what)
    sync = reader.take(SYNC_SIZE)
    records = inflated = 0
    while not reader.done:
        count, size = reader.long(), reader.long()
        if count < 0 or size < 0:
            raise InvalidRequest(f"the commit's {what} has a block of negative length")
        records += count
        if records > max_records:
            raise InvalidRequest(f"the commit's {what} holds more than {max_records} records")
        inflated += _inflated_size(codec, reader.take(size), max_bytes - inflated, what)
        if reader.take(SYNC_SIZE) != sync:
            raise InvalidRequest(f"the commit's {what} has a block that does not end with its sync marker")
    return records


def _codec(reader: _Reader, what: str) -> str:
    """The codec the file's metadata map names ("null" when it names none)."""
    codec = "null"
    entries = 0
    while count := reader.long():
        if count < 0:  # a negative count is followed by the block's byte size
            count = -count
            reader.long()
        entries += count
        if entries > MAX_METADATA_ENTRIES:
            raise InvalidRequest(f"the commit's {what} has more than {MAX_METADATA_ENTRIES} metadata entries")
        for _ in range(count):
            key, value = reader.bytes(), reader.bytes()
            if key == b"avro.codec":
                codec = value.decode("utf-8", "replace")
    if codec not in CODECS:
        raise InvalidRequest(
            f"the commit's {what} is compressed with {codec!r}; use one of {', '.join(CODECS)}"
        )
    return codec


def _inflated_size(codec: str, block: bytes, room: int, what: str) -> int:
    """How many bytes a block inflates to, inflating at most about `room` of them."""
    try:
        if codec == "null":
            size = len(block)
        elif codec == "deflate":
            size = _deflated(block, room)
        elif codec == "bzip2":
            size = _bzip2(block, room)
        else:
            size = _zstandard(block, room)
    except (OSError, ValueError, EOFError, zlib.error) as exc:
        raise InvalidRequest(f"the commit's {what} has a block that does not inflate: {exc}") from None
    if size > room:
        raise InvalidRequest(f"the commit's {what} inflates past the {room} bytes left of its bound")
    return size


def _deflated(block: bytes, room: int) -> int:
    """Raw deflate, as pyiceberg writes it (`zlib.decompress(data, -15)` reads it)."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    size, pending = 0, block
    while size <= room and not inflater.eof:
        out = inflater.decompress(pending, _INFLATE_STEP)
        size += len(out)
        pending = inflater.unconsumed_tail
        if not pending and len(out) < _INFLATE_STEP:
            break
    return size


def _bzip2(block: bytes, room: int) -> int:
    """bzip2, one stream after another as `bz2.decompress` reads them."""
    size, pending = 0, block
    while pending and size <= room:
        inflater = bz2.BZ2Decompressor()
        out = inflater.decompress(pending, _INFLATE_STEP)
        size += len(out)
        while size <= room and not inflater.eof and not inflater.needs_input:
            out = inflater.decompress(b"", _INFLATE_STEP)
            size += len(out)
        if not inflater.eof:
            break
        pending = inflater.unused_data
    return size


def _zstandard(block: bytes, room: int) -> int:
    """zstandard's first frame, as pyiceberg's stream reader reads it."""
    import zstandard

    size = 0
    try:
        with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(block)) as stream:
            while size <= room and (chunk := stream.read(_INFLATE_STEP)):
                size += len(chunk)
    except zstandard.ZstdError as exc:
        raise ValueError(str(exc)) from None
    return size


class _Reader:
    """Avro's binary encoding over bytes: zig-zag varint longs and length-prefixed bytes."""

    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.at, self.what = data, 0, what

    @property
    def done(self) -> bool:
        return self.at >= len(self.data)

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.at:
            raise InvalidRequest(f"the commit's {self.what} is cut short")
        chunk = self.data[self.at : self.at + n]
        self.at += n
        return chunk

    def long(self) -> int:
        value = shift = 0
        for _ in range(10):  # a 64-bit varint takes at most 10 bytes
            (byte,) = self.take(1)
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return (value >> 1) ^ -(value & 1)
            shift += 7
        raise InvalidRequest(f"the commit's {self.what} holds a number longer than 64 bits")

    def bytes(self) -> bytes:
        size = self.long()
        if size < 0:
            raise InvalidRequest(f"the commit's {self.what} holds a negative length")
        return self.take(size)


def checked_io(files: dict[str, bytes]) -> FileIO:
    """A pyiceberg FileIO reading only `files` (URI -> checked bytes): what is read is what was checked.

    A file the client replaced after the check, or one the check never saw,
    cannot be read through it.
    """
    from pyiceberg.io import FileIO, InputFile

    class CheckedFile(InputFile):
        def __len__(self) -> int:
            return len(files[self.location])

        def exists(self) -> bool:
            return self.location in files

        def open(self, seekable: bool = True) -> Any:
            if self.location not in files:
                raise FileNotFoundError(f"{self.location} was not checked")
            return io.BytesIO(files[self.location])

    class CheckedFiles(FileIO):
        def new_input(self, location: str) -> InputFile:
            return CheckedFile(location)

        def new_output(self, location: str) -> Any:
            raise PermissionError("checked files are read only")

        def delete(self, location: Any) -> None:
            raise PermissionError("checked files are read only")

    return CheckedFiles()
