"""vectors/wire.py: Arrow streams and base64 vectors decode exactly, and hostile bytes only ever give 400."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lakehouse.client.vectors import arrow_stream, base64_vector
from lakehouse.errors import InvalidRequest
from lakehouse.vectors.wire import items_of_arrow, rows_of_base64, vector_of_base64

IDS = st.text(min_size=1, max_size=20)
FLOATS = st.floats(width=32, allow_nan=False, allow_infinity=False)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(IDS, st.lists(FLOATS, min_size=3, max_size=3), st.none() | st.text(max_size=30)),
        min_size=1,
        max_size=40,
    ),
    metadata=st.none()
    | st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3),
)
def test_what_the_client_writes_the_server_reads_back_exactly(
    rows: list[tuple[str, list[float], str | None]], metadata: dict[str, Any] | None
) -> None:
    ids = [r[0] for r in rows]
    vectors = np.array([r[1] for r in rows], dtype=np.float32)
    texts = [r[2] for r in rows]
    items = items_of_arrow(arrow_stream(ids, vectors, texts=texts, metadata=[metadata] * len(rows)), 100)
    assert [i.id for i in items] == ids
    assert [i.text for i in items] == texts
    assert [i.metadata for i in items] == [metadata] * len(rows)
    got = np.stack([np.asarray(i.vector) for i in items])
    assert got.dtype == np.float32 and np.array_equal(got, vectors)


@settings(max_examples=60, deadline=None)
@given(st.lists(FLOATS, max_size=50))
def test_base64_vectors_round_trip_bit_for_bit(values: list[float]) -> None:
    vector = np.array(values, dtype=np.float32)
    assert np.array_equal(vector_of_base64(base64_vector(vector)), vector)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(FLOATS, min_size=1, max_size=6), min_size=1, max_size=8))
def test_a_batch_decoded_at_once_equals_each_decoded_alone(rows: list[list[float]]) -> None:
    texts = [base64_vector(np.array(row, dtype=np.float32)) for row in rows]
    at_once = rows_of_base64(texts)
    alone = [vector_of_base64(text) for text in texts]
    if at_once is None:
        # Only when the rows differ in length or pad: then each is decoded (and judged) alone.
        assert len({len(t) for t in texts}) > 1 or any("=" in t for t in texts)
    else:
        assert at_once.shape == (len(rows), len(rows[0]))
        assert all(np.array_equal(mine, theirs) for mine, theirs in zip(at_once, alone, strict=True))


def test_a_batch_with_one_bad_vector_is_left_to_the_one_by_one_decoding() -> None:
    good = base64_vector(np.ones(3, dtype=np.float32))  # 12 bytes, 16 characters, no padding
    assert rows_of_base64([good, good]) is not None
    assert rows_of_base64([good, "a-b_" * 4]) is None  # not base64
    assert rows_of_base64([good, good[:-4] + "AA=="]) is None  # padded: 10 bytes, not 12
    assert rows_of_base64([good, good + "AAAA"]) is None  # another length
    assert rows_of_base64([base64.b64encode(b"123456").decode()] * 2) is None  # 6 bytes a row: not float32s
    assert rows_of_base64([]) is None


def _sample_stream() -> bytes:
    table = pa.table(
        {
            "id": ["a", "b", "c", "d"],
            "vector": pa.array([[1.0, 2.0], [3.0], [4.0, 5.0, 6.0], [7.0, 8.0]], type=pa.list_(pa.float32())),
            "text": ["one", None, "three", "four"],
            "metadata": [json.dumps({"n": 1}), None, "{}", json.dumps({"k": "v"})],
        }
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=2)
    return bytes(sink.getvalue().to_pybytes())


SAMPLE = _sample_stream()


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(SAMPLE) - 1), st.integers(0, 255)), min_size=1, max_size=6))
def test_damaged_streams_are_read_or_refused_never_crash(changes: list[tuple[int, int]]) -> None:
    damaged = bytearray(SAMPLE)
    for at, value in changes:
        damaged[at] = value
    try:
        items = items_of_arrow(bytes(damaged), 100)
    except InvalidRequest:
        return
    assert all(isinstance(i.id, str) for i in items)  # what is read is well formed


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(InvalidRequest):
        items_of_arrow(data + b"\xff\xff\xff\xff\x00\x00\x00\x00", 100)


@pytest.mark.parametrize("cut", [1, 8, 100, len(SAMPLE) // 2, len(SAMPLE) - 9, len(SAMPLE) - 1])
def test_every_truncation_is_refused(cut: int) -> None:
    with pytest.raises(InvalidRequest):
        items_of_arrow(SAMPLE[:cut], 100)


def test_a_sliced_and_null_holding_column_keeps_each_rows_own_vector() -> None:
    values = pa.array(np.arange(12, dtype=np.float32))
    vectors = pa.FixedSizeListArray.from_arrays(values, 3, mask=pa.array([False, True, False, False]))
    table = pa.table({"id": ["a", "b", "c", "d"], "vector": vectors, "text": ["x", "y", "z", "w"]}).slice(1)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    items = items_of_arrow(sink.getvalue().to_pybytes(), 10)
    assert [i.id for i in items] == ["b", "c", "d"]
    assert items[0].vector is None  # embedded from its text
    assert [np.asarray(i.vector).tolist() for i in items[1:]] == [[6.0, 7.0, 8.0], [9.0, 10.0, 11.0]]


def test_base64_refusals_say_what_is_wrong() -> None:
    with pytest.raises(InvalidRequest, match="5 bytes"):
        vector_of_base64(base64.b64encode(b"12345").decode())
    with pytest.raises(InvalidRequest, match="base64"):
        vector_of_base64("a-b_")
