"""Bounds on a commit's Avro files: real manifests pass; too large, inflating too far or cut short do not."""

from __future__ import annotations

import bz2
import io
import tracemalloc
import zlib
from pathlib import Path

import pytest
import zstandard

from lakehouse.catalog.avro_bounds import CODECS, check_avro, checked_io
from lakehouse.errors import InvalidRequest

SYNC = bytes(range(16))
MIB = 1 << 20


def long(value: int) -> bytes:
    """Avro's zig-zag varint."""
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def text(value: bytes) -> bytes:
    return long(len(value)) + value


def compress(codec: str, raw: bytes) -> bytes:
    if codec == "deflate":
        packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        return packer.compress(raw) + packer.flush()
    if codec == "bzip2":
        return bz2.compress(raw)
    if codec == "zstandard":
        return zstandard.ZstdCompressor().compress(raw)
    return raw


def container(codec: str | None, blocks: list[tuple[int, bytes]], sync: bytes = SYNC) -> bytes:
    """An Avro container file: header naming `codec` (none when None), then each (records, block bytes)."""
    meta = [(b"avro.schema", b'{"type": "long"}')] + ([(b"avro.codec", codec.encode())] if codec else [])
    out = b"Obj\x01" + long(len(meta)) + b"".join(text(k) + text(v) for k, v in meta) + long(0) + SYNC
    for records, data in blocks:
        out += long(records) + text(data) + sync
    return out


def longs(values: range) -> bytes:
    return b"".join(long(v) for v in values)


@pytest.mark.parametrize("codec", CODECS)
def test_a_file_within_bounds_passes_with_its_record_count(codec: str) -> None:
    blocks = [(100, compress(codec, longs(range(100)))), (5, compress(codec, longs(range(5))))]
    assert check_avro(container(codec, blocks), "manifest", MIB, 1000) == 105


@pytest.mark.parametrize("codec", CODECS)
def test_a_file_pyiceberg_wrote_passes(codec: str, tmp_path: Path) -> None:
    from pyiceberg.avro.file import AvroFile, AvroOutputFile
    from pyiceberg.io.pyarrow import PyArrowFileIO
    from pyiceberg.schema import Schema
    from pyiceberg.typedef import Record
    from pyiceberg.types import LongType, NestedField, StringType

    schema = Schema(
        NestedField(1, "n", LongType(), required=True), NestedField(2, "s", StringType(), required=True)
    )
    uri = f"file://{tmp_path}/m.avro"
    fileio = PyArrowFileIO()
    with AvroOutputFile[Record](fileio.new_output(uri), schema, "m", metadata={"avro.codec": codec}) as out:
        out.write_block([Record(n, f"row {n}") for n in range(300)])
    data = (tmp_path / "m.avro").read_bytes()
    assert check_avro(data, "manifest", MIB, 1000) == 300
    with AvroFile[Record](checked_io({uri: data}).new_input(uri), schema) as reader:
        assert [record[0] for record in reader] == list(range(300))


@pytest.mark.parametrize("codec", ["deflate", "bzip2", "zstandard"])
def test_a_small_file_that_inflates_past_the_bound_is_refused_without_inflating_it(codec: str) -> None:
    bomb = compress(codec, bytes(80 * MIB))
    data = container(codec, [(1, bomb)])
    assert len(data) < 2 * MIB
    tracemalloc.start()
    try:
        with pytest.raises(InvalidRequest, match="inflates past"):
            check_avro(data, "manifest list", 64 * MIB, 1000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * MIB  # a megabyte at a time, never the 80 MiB


def test_bzip2_streams_one_after_another_count_together() -> None:
    stream = bz2.compress(bytes(8 * MIB))
    with pytest.raises(InvalidRequest, match="inflates past"):
        check_avro(container("bzip2", [(1, stream * 20)]), "manifest", 64 * MIB, 1000)


def test_blocks_inflating_within_bounds_one_by_one_but_past_them_together_are_refused() -> None:
    block = compress("deflate", bytes(3 * MIB))
    assert check_avro(container("deflate", [(1, block)] * 3), "manifest", 10 * MIB, 1000) == 3
    with pytest.raises(InvalidRequest, match="inflates past"):
        check_avro(container("deflate", [(1, block)] * 4), "manifest", 10 * MIB, 1000)


def test_more_records_than_the_bound_are_refused_before_any_is_read() -> None:
    data = container("null", [(10**15, b"\x00")])
    with pytest.raises(InvalidRequest, match="more than 1000 records"):
        check_avro(data, "manifest", MIB, 1000)
    with pytest.raises(InvalidRequest, match="more than 1000 records"):
        check_avro(container("null", [(600, longs(range(600)))] * 2), "manifest", MIB, 1000)


def test_a_file_larger_than_the_bound_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="at most 1000 are read"):
        check_avro(container("null", [(1, bytes(2000))]), "manifest", 1000, 10)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not an Avro file"),
        (b"PAR1" + bytes(100), "not an Avro file"),
        (container("snappy", [(1, b"x")]), "compressed with 'snappy'"),
        (container("lzma", [(1, b"x")]), "compressed with 'lzma'"),
        (container("null", [(3, longs(range(3)))])[:-5], "cut short"),
        (container("null", [(3, longs(range(3)))])[:20], "cut short"),
        (container("null", [(3, longs(range(3)))], sync=bytes(16)), "sync marker"),
        (container("null", [(-3, b"")]), "negative length"),
        (b"Obj\x01" + long(1) + long(-5) + b"x" + long(0) + SYNC, "negative length"),
        (b"Obj\x01" + b"\xff" * 11, "longer than 64 bits"),
        (b"Obj\x01" + long(100) + text(b"k") * 100 + long(0) + SYNC, "metadata entries"),
        (container("deflate", [(1, b"not deflate at all")]), "does not inflate"),
        (container("bzip2", [(1, b"BZh9 not bzip2")]), "does not inflate"),
        (container("zstandard", [(1, b"not zstandard")]), "does not inflate"),
    ],
)
def test_what_is_not_a_well_formed_container_is_refused(data: bytes, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        check_avro(data, "manifest", MIB, 1000)


def test_a_codec_named_in_a_negative_count_block_of_the_metadata_is_read() -> None:
    entry = text(b"avro.codec") + text(b"lzma")
    data = b"Obj\x01" + long(-1) + long(len(entry)) + entry + long(0) + SYNC
    with pytest.raises(InvalidRequest, match="compressed with 'lzma'"):
        check_avro(data, "manifest", MIB, 1000)


def test_no_codec_named_is_null_and_counted_as_stored() -> None:
    assert check_avro(container(None, [(2, longs(range(2)))]), "manifest", MIB, 10) == 2


def test_the_checked_files_are_the_only_ones_read() -> None:
    fileio = checked_io({"file:///t/a.avro": b"checked"})
    with fileio.new_input("file:///t/a.avro").open() as stream:
        assert stream.read() == b"checked"
    unchecked = fileio.new_input("file:///t/b.avro")
    assert not unchecked.exists()
    with pytest.raises(FileNotFoundError):
        unchecked.open()
    with pytest.raises(PermissionError):
        fileio.new_output("file:///t/a.avro")
    with pytest.raises(PermissionError):
        fileio.delete("file:///t/a.avro")
    assert isinstance(fileio.new_input("file:///t/a.avro").open(), io.BytesIO)
