"""JSON (an array of objects) and NDJSON (one object per line) for DuckDB, bounded before it reads.

DuckDB's JSON reader recurses over nesting and overflows its stack (the
whole process dies) somewhere past ten thousand levels, so the nesting is
measured first, outside strings, with numpy over 1 MiB blocks, and a file
nested deeper than `MAX_DEPTH` is refused. One object may be at most
`MAX_OBJECT_BYTES`; objects become rows, keys columns (never a MAP, however
many keys), and nested objects STRUCTs.
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import numpy as np
import numpy.typing as npt

from lakehouse.errors import InvalidFile, LakehouseError, TooLarge
from lakehouse.ingest.csv_reader import literal

MAX_DEPTH = 64
MAX_OBJECT_BYTES = 16 * 1024 * 1024
BLOCK_BYTES = 1024 * 1024
CAST_ERRORS = ("Failed to cast", "Could not convert", "JSON transform error")

_QUOTE, _BACKSLASH = ord('"'), ord("\\")
_OPEN_LIST, _OPEN_OBJECT, _CLOSE_LIST, _CLOSE_OBJECT = ord("["), ord("{"), ord("]"), ord("}")
_WHERE = re.compile(r"\bat byte \d+ in (?:record/value|line) \d+: [^\n|]*")


class NestingGauge:
    """The deepest nesting of `[` and `{` outside strings in JSON fed to it block by block."""

    def __init__(self) -> None:
        self.depth = 0
        self.deepest = 0
        self.in_string = False
        self._escape_next = False  # the block ended inside a run of an odd number of backslashes

    def feed(self, block: bytes) -> None:
        """Account for the next block of the file."""
        codes = np.frombuffer(block, np.uint8)
        if codes.size == 0:
            return
        quotes = codes == _QUOTE
        escaped = self._escaped(codes, block)
        if escaped.size:
            quotes[escaped] = False
        # Only the brackets and the quotes before them matter: work on their positions.
        at_quote = np.flatnonzero(quotes)
        opens = (codes == _OPEN_LIST) | (codes == _OPEN_OBJECT)
        at_bracket = np.flatnonzero(opens | (codes == _CLOSE_LIST) | (codes == _CLOSE_OBJECT))
        if at_bracket.size:
            # A bracket is inside a string when an odd number of quotes precede it.
            before = np.searchsorted(at_quote, at_bracket) + int(self.in_string)
            outside = (before & 1) == 0
            steps = np.where(opens[at_bracket], 1, -1).astype(np.int32) * outside
            depths = np.cumsum(steps)
            self.deepest = max(self.deepest, self.depth + int(depths.max()))
            self.depth += int(depths[-1])
        self.in_string = self.in_string != bool(at_quote.size & 1)

    def _escaped(self, codes: npt.NDArray[np.uint8], block: bytes) -> npt.NDArray[np.int64]:
        """Positions of the characters a backslash escapes (after a run of odd length)."""
        carry = self._escape_next
        if b"\\" not in block:
            self._escape_next = False
            return np.zeros(1 if carry else 0, np.int64)
        slashes = np.flatnonzero(codes == _BACKSLASH)
        starts = np.flatnonzero(np.diff(slashes, prepend=-2) != 1)
        ends = np.append(starts[1:], slashes.size) - 1
        lengths = ends - starts + 1
        leading = bool(slashes[0] == 0)
        if carry and leading:
            lengths[0] += 1
        after: npt.NDArray[np.int64] = slashes[ends[(lengths & 1).astype(np.bool_)]] + 1
        self._escape_next = bool(after.size and after[-1] == codes.size)
        after = after[after < codes.size]
        if carry and not leading:
            after = np.concatenate((np.zeros(1, np.int64), after))
        return after


def check_nesting(path: Path, limit: int = MAX_DEPTH) -> None:
    """Refuse a JSON file nested deeper than `limit`, or left unclosed, before DuckDB reads it.

    Raises:
        InvalidFile: the file nests arrays or objects deeper than `limit`, or ends
            inside a string, array or object.
    """
    gauge = NestingGauge()
    with open(path, "rb") as fh:
        while block := fh.read(BLOCK_BYTES):
            gauge.feed(block)
            if gauge.deepest > limit:
                raise InvalidFile(
                    f"the JSON nests arrays or objects deeper than {limit} levels", max_depth=limit
                )
    if gauge.depth != 0 or gauge.in_string:
        # DuckDB reads the objects of a cut-off array and stops quietly: never a silent truncation.
        raise InvalidFile("the JSON ends before all of its strings, arrays and objects are closed (cut off?)")


def reader_sql(path: Path, *, sample_size: int | None = None) -> str:
    """`read_json` taking objects as rows, from an array or one per line."""
    options = [
        "format = 'auto'",
        "records = 'true'",
        "map_inference_threshold = -1",
        f"maximum_object_size = {MAX_OBJECT_BYTES}",
    ]
    if sample_size is not None:
        options.append(f"sample_size = {sample_size}")
    return f"read_json({literal(str(path))}, {', '.join(options)})"


def invalid_json(exc: duckdb.Error) -> LakehouseError:
    """DuckDB's JSON error as a sentence that names no file."""
    message = str(exc)
    if "maximum_object_size" in message:
        return TooLarge(
            f"one JSON value is larger than the {MAX_OBJECT_BYTES // (1024 * 1024)} MiB a row may take",
            limit=MAX_OBJECT_BYTES,
        )
    if "non-record" in message or "expected records" in message:
        return InvalidFile(
            "the JSON must be an array of objects, or one object per line (NDJSON); "
            "this one holds no objects, or values that are not objects"
        )
    if "Malformed JSON" in message or "unexpected" in message:
        found = _WHERE.search(message)
        where = f" ({found.group(0).strip().rstrip('.')})" if found else ""
        return InvalidFile(f"the file is not valid JSON{where}")
    if "invalid UTF-8" in message or "unicode" in message.lower():
        return InvalidFile("the JSON is not valid UTF-8 text")
    return InvalidFile("the JSON cannot be read as rows: " + _first_line(message))


def _first_line(message: str) -> str:
    line = message.strip().splitlines()[0] if message.strip() else "unknown error"
    line = re.sub(r'\s*(?:in|while reading) file "[^"]*"', "", line)
    return line.split(": ", 1)[-1] if line.endswith(".") or ": " in line else line
