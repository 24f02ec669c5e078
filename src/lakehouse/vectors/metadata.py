"""Item metadata kept columnar, so a filter is one vectorised pass over numpy arrays.

Rows are dense (a deleted row is filled by the last one), each holding one
item's key. A column per metadata field holds, per row, the value's class
(missing, null, bool, number, string, other), its number (bools as 0/1) and
its text (strings, or the canonical JSON of lists and objects). Columns are
built on the first filter that reads a field and kept in step from then on;
at most `MAX_COLUMNS` are kept (least recently used go), so filters on ever
new field names cannot grow memory without bound.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import numpy.typing as npt

from lakehouse.vectors.filters import And, Equals, Node, Not, Or, Range, Value, fields, value_of
from lakehouse.vectors.records import Keys

MAX_COLUMNS = 64
KINDS = {"missing": 0, "null": 1, "bool": 2, "number": 3, "string": 4, "other": 5}
_STR = np.dtypes.StringDType()

Mask = npt.NDArray[np.bool_]


class _Column:
    def __init__(self, capacity: int) -> None:
        self.kind = np.zeros(capacity, dtype=np.int8)
        self.number = np.zeros(capacity, dtype=np.float64)
        self.text: Any = np.zeros(capacity, dtype=_STR)

    def grow(self, capacity: int) -> None:
        extra = capacity - len(self.kind)
        self.kind = np.concatenate([self.kind, np.zeros(extra, dtype=np.int8)])
        self.number = np.concatenate([self.number, np.zeros(extra, dtype=np.float64)])
        self.text = np.concatenate([self.text, np.zeros(extra, dtype=_STR)])

    def set(self, row: int, raw: Any, present: bool) -> None:
        if not present:
            self.kind[row], self.number[row], self.text[row] = 0, 0.0, ""
            return
        value = value_of(raw)
        self.kind[row], self.number[row], self.text[row] = KINDS[value.kind], value.number, value.text

    def move(self, source: int, target: int) -> None:
        self.kind[target] = self.kind[source]
        self.number[target] = self.number[source]
        self.text[target] = self.text[source]


class MetadataColumns:
    """Row-aligned metadata columns over an index's items; not thread-safe for writes.

    The owner serialises `put` / `remove` (its writer lock) against `select`;
    concurrent `select` calls are safe (column builds take an inner lock).
    """

    def __init__(self) -> None:
        self._keys: Keys = np.zeros(16, dtype=np.uint64)
        self._metadata: list[dict[str, Any]] = []
        # Each key's row, built on the first removal: a replayed or loaded index need not pay for it.
        self._rows: dict[int, int] | None = None
        self._columns: OrderedDict[str, _Column] = OrderedDict()
        self._building = threading.Lock()

    def __len__(self) -> int:
        return len(self._metadata)

    def put_all(self, keys: list[int], metadata: list[dict[str, Any]]) -> None:
        """Record new items' metadata in one pass (no key may be present)."""
        start, end = len(self._metadata), len(self._metadata) + len(keys)
        if end > len(self._keys):
            capacity = max(2 * len(self._keys), end)
            self._keys = np.concatenate([self._keys, np.zeros(capacity - len(self._keys), dtype=np.uint64)])
            for column in self._columns.values():
                column.grow(capacity)
        self._keys[start:end] = keys
        self._metadata.extend(metadata)
        if self._rows is not None:
            self._rows.update(zip(keys, range(start, end), strict=True))
        for name, column in self._columns.items():
            for row, meta in enumerate(metadata, start):
                column.set(row, meta.get(name), name in meta)

    def remove(self, key: int) -> None:
        """Forget an item's metadata."""
        if self._rows is None:
            count = len(self._metadata)
            self._rows = dict(zip(self._keys[:count].tolist(), range(count), strict=True))
        row = self._rows.pop(key)
        last = len(self._metadata) - 1
        if row != last:
            moved = int(self._keys[last])
            self._keys[row] = moved
            self._metadata[row] = self._metadata[last]
            self._rows[moved] = row
            for column in self._columns.values():
                column.move(last, row)
        self._metadata.pop()

    def select(self, node: Node) -> Keys:
        """The keys of every item the filter matches."""
        n = len(self._metadata)
        columns = {name: self._column(name) for name in fields(node)}
        mask = _evaluate(node, columns, n)
        return self._keys[:n][mask]

    def _column(self, name: str) -> _Column:
        with self._building:
            column = self._columns.get(name)
            if column is not None:
                self._columns.move_to_end(name)
                return column
            column = _Column(len(self._keys))
            for row, metadata in enumerate(self._metadata):
                if name in metadata:
                    column.set(row, metadata[name], True)
            self._columns[name] = column
            while len(self._columns) > MAX_COLUMNS:
                self._columns.popitem(last=False)
            return column


def _evaluate(node: Node, columns: dict[str, _Column], n: int) -> Mask:
    if isinstance(node, Equals):
        column = columns[node.field]
        mask = np.zeros(n, dtype=bool)
        for value in node.values:
            mask |= _equals(column, value, n)
        return mask
    if isinstance(node, Range):
        return _range(columns[node.field], node, n)
    if isinstance(node, Not):
        return ~_evaluate(node.node, columns, n)
    if isinstance(node, And):
        mask = np.ones(n, dtype=bool)
        for child in node.nodes:
            mask &= _evaluate(child, columns, n)
        return mask
    assert isinstance(node, Or)
    mask = np.zeros(n, dtype=bool)
    for child in node.nodes:
        mask |= _evaluate(child, columns, n)
    return mask


def _equals(column: _Column, value: Value, n: int) -> Mask:
    same_kind: Mask = column.kind[:n] == KINDS[value.kind]
    if value.kind == "null":
        return same_kind
    if value.kind in ("bool", "number"):
        equal: Mask = column.number[:n] == value.number
    else:
        equal = column.text[:n] == value.text
    return same_kind & equal


def _range(column: _Column, node: Range, n: int) -> Mask:
    bound = node.bound
    values: Any = column.number[:n] if bound.kind == "number" else column.text[:n]
    limit: Any = bound.number if bound.kind == "number" else bound.text
    ordered: Mask
    if node.op == "$lt":
        ordered = values < limit
    elif node.op == "$lte":
        ordered = values <= limit
    elif node.op == "$gt":
        ordered = values > limit
    else:
        ordered = values >= limit
    same_kind: Mask = column.kind[:n] == KINDS[bound.kind]
    return same_kind & ordered
