"""Validating what a request brings to an index: its definition, items to upsert, query vectors."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lakehouse.errors import Conflict, DimMismatch, InvalidName, InvalidRequest
from lakehouse.vectors.index import METRICS, IndexSpec
from lakehouse.vectors.records import Vectors

MAX_ID_CHARS = 512
NAME = re.compile(r"[a-z_][a-z0-9_-]{0,62}")
MAX_DIM = 65536
DTYPES = ("f32", "f16", "i8")

# A vector as a request brings it: JSON's float list, or a float32 row decoded from bytes (wire.py).
Vector = list[float] | Vectors


@dataclass
class NewItem:
    """One item to upsert: a vector, a text to embed (or both), and its metadata."""

    id: str
    vector: Vector | None = None
    text: str | None = None
    metadata: dict[str, Any] | None = None


def check_definition(name: str, dim: int, metric: str, dtype: str) -> None:
    """Refuse a new index's bad name, dimension, metric or storage type.

    Raises:
        InvalidName: the name breaks the naming rule.
        InvalidRequest: dim, metric or dtype out of range.
    """
    if not NAME.fullmatch(name):
        raise InvalidName(
            f"index name {name!r} must match {NAME.pattern} (lowercase letters, digits, _ and -)"
        )
    if not 1 <= dim <= MAX_DIM:
        raise InvalidRequest(f"dim must be between 1 and {MAX_DIM}, got {dim}")
    if metric not in METRICS:
        raise InvalidRequest(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if dtype not in DTYPES:
        raise InvalidRequest(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype == "i8" and metric != "cosine":
        # usearch quantises i8 for unit vectors; other metrics would get scaled distances.
        raise InvalidRequest(f"dtype i8 works with the cosine metric only, not {metric!r}")


def checked_items(items: list[NewItem], spec: IndexSpec, max_batch: int) -> tuple[list[NewItem], Vectors]:
    """The batch's distinct items (the last of repeated ids wins) and their given vectors.

    Rows of items without a vector are zeros, to be embedded from their texts.

    Raises:
        InvalidRequest: empty or oversized batch, bad id, an item with neither vector nor text.
        DimMismatch: a vector has the wrong length.
    """
    if not items:
        raise InvalidRequest("items must not be empty")
    if len(items) > max_batch:
        raise InvalidRequest(
            f"{len(items)} items is more than the {max_batch}-item batch limit", limit=max_batch
        )
    unique: dict[str, NewItem] = {}
    for item in items:
        check_id(item.id)
        if item.vector is None and item.text is None:
            raise InvalidRequest(f"item {item.id!r} needs a vector or a text", id=item.id)
        if item.vector is not None and len(item.vector) != spec.dim:
            raise DimMismatch(
                f"item {item.id!r} has {len(item.vector)} dimensions; index {spec.name!r} has {spec.dim}",
                id=item.id,
                expected=spec.dim,
                got=len(item.vector),
            )
        if item.metadata and not _finite(item.metadata):
            # JSON has no NaN or Infinity: such metadata could be stored but never answered.
            raise InvalidRequest(f"item {item.id!r}: metadata holds NaN or an infinite number", id=item.id)
        unique.pop(item.id, None)
        unique[item.id] = item  # the last of repeated ids wins, in its position
    batch_items = list(unique.values())
    vectors = np.zeros((len(batch_items), spec.dim), dtype=np.float32)
    with np.errstate(over="ignore"):  # values past float32 become inf, refused by check_finite
        for row, item in enumerate(batch_items):
            if item.vector is not None:
                vectors[row] = item.vector
    return batch_items, vectors


def _finite(value: Any) -> bool:
    """Whether a JSON value holds only finite numbers, however deeply nested."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def query_vectors(vectors: Sequence[Vector] | Vectors, spec: IndexSpec) -> Vectors:
    """Query vectors (float lists, float32 rows, or one 2-d array) as one float32 array.

    Raises:
        InvalidRequest: no vectors, NaN or infinite values.
        DimMismatch: a query has the wrong length.
    """
    if len(vectors) == 0:
        raise InvalidRequest("vectors must not be empty")
    for vector in vectors:
        if len(vector) != spec.dim:
            raise DimMismatch(
                f"query has {len(vector)} dimensions; index {spec.name!r} has {spec.dim}",
                expected=spec.dim,
                got=len(vector),
            )
    with np.errstate(over="ignore"):
        queries = np.asarray(vectors, dtype=np.float32)
    check_finite(queries, None)
    return queries


def check_unlinked(spec: IndexSpec) -> None:
    """Refuse direct changes to an index that follows a dataset.

    Raises:
        Conflict: the index has a source.
    """
    if spec.source is not None:
        raise Conflict(
            f"index {spec.name!r} follows dataset {spec.source['dataset']!r}; change the dataset instead",
            index=spec.name,
        )


def check_id(item_id: str) -> None:
    """Refuse an empty or overlong item id."""
    if not item_id or len(item_id) > MAX_ID_CHARS:
        raise InvalidRequest(f"item ids must be 1 to {MAX_ID_CHARS} characters", id=item_id)


def check_finite(vectors: Vectors, ids: list[str] | None) -> None:
    """Refuse NaN and infinite values, naming the item (or the query) holding one."""
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        row = int(np.argmax(bad))
        which = f"item {ids[row]!r}" if ids is not None else "the query"
        raise InvalidRequest(f"{which} has a NaN or infinite value (or one beyond float32's range)")
