"""A linked index's source: which dataset, which columns, and the rows read from its Parquet files.

Rows come from the objects of the dataset's current manifest, read with
pyarrow through the object store (so local folders and S3 alike). A row's
item id is its id column as text; its text joins the text columns' non-empty
values with newlines; its metadata holds the metadata columns, turned into
JSON values (dates and times as ISO 8601 text, decimals as numbers). Each
row's digest hashes the model and the text: the one thing an embedding
depends on, so an unchanged digest means the stored vector is still right.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from lakehouse.errors import InvalidRequest
from lakehouse.runner import run_blocking
from lakehouse.storage.base import ObjectStore

if TYPE_CHECKING:  # pyarrow is imported by the worker threads that read a dataset, not at start
    import pyarrow as pa

MAX_COLUMNS = 256


class ColumnLike(Protocol):
    """A schema column: its name."""

    name: str


class ManifestLike(Protocol):
    """What a linked index reads of a dataset version."""

    @property
    def version(self) -> int:
        """The version number."""
        ...

    @property
    def schema(self) -> Sequence[Any]:
        """The columns (each with a `name`)."""
        ...

    @property
    def objects(self) -> Sequence[Any]:
        """The Parquet objects (each a key, or with a `key`)."""
        ...


class DatasetCatalog(Protocol):
    """The catalog as a linked index needs it (lakehouse.catalog.Catalog)."""

    async def get(self, name: str, version: int | None = None) -> Any:
        """The current (or a given) manifest; NotFound when absent."""
        ...


@dataclass(frozen=True)
class Source:
    """Which dataset an index follows and how its rows become items."""

    dataset: str
    id_column: str
    text_columns: tuple[str, ...]
    metadata_columns: tuple[str, ...]

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> Source:
        """A source from a create request's `source` object.

        Raises:
            InvalidRequest: a field missing or of the wrong type.
        """
        dataset, id_column = raw.get("dataset"), raw.get("id_column")
        texts, metadata = raw.get("text_columns"), raw.get("metadata_columns")
        if not isinstance(dataset, str) or not dataset:
            raise InvalidRequest("source.dataset must name a dataset")
        if not isinstance(id_column, str) or not id_column:
            raise InvalidRequest("source.id_column must name a column")
        if not isinstance(texts, list) or not texts or not all(isinstance(c, str) and c for c in texts):
            raise InvalidRequest("source.text_columns must be a non-empty list of column names")
        if metadata is not None and (
            not isinstance(metadata, list) or not all(isinstance(c, str) and c for c in metadata)
        ):
            raise InvalidRequest("source.metadata_columns must be a list of column names")
        if len(texts) + len(metadata or []) > MAX_COLUMNS:
            raise InvalidRequest(f"a source may name at most {MAX_COLUMNS} columns")
        unknown = set(raw) - {"dataset", "id_column", "text_columns", "metadata_columns"}
        if unknown:
            raise InvalidRequest(f"source has unknown field {sorted(unknown)[0]!r}")
        meta = tuple(dict.fromkeys(metadata)) if metadata is not None else ()
        return cls(dataset, id_column, tuple(dict.fromkeys(texts)), meta)

    def resolved(self, manifest: ManifestLike, explicit_metadata: bool) -> Source:
        """This source checked against the dataset's schema; metadata defaults to the other columns.

        Raises:
            InvalidRequest: a named column is not in the dataset.
        """
        names = [column.name for column in manifest.schema]
        for column in (self.id_column, *self.text_columns, *self.metadata_columns):
            if column not in names:
                raise InvalidRequest(
                    f"dataset {self.dataset!r} has no column {column!r} (it has {', '.join(names)})",
                    dataset=self.dataset,
                    column=column,
                )
        if explicit_metadata:
            return self
        others = tuple(n for n in names if n != self.id_column and n not in self.text_columns)
        return Source(self.dataset, self.id_column, self.text_columns, others[:MAX_COLUMNS])

    def to_dict(self) -> dict[str, Any]:
        """The source as stored and shown in the index's info."""
        return {
            "dataset": self.dataset,
            "id_column": self.id_column,
            "text_columns": list(self.text_columns),
            "metadata_columns": list(self.metadata_columns),
        }


@dataclass(frozen=True)
class Row:
    """One dataset row as an index item."""

    id: str
    text: str
    metadata: dict[str, Any]
    digest: str


def digest(model: str, text: str) -> str:
    """The content hash an item's vector was embedded from."""
    return hashlib.sha256(f"{model}\x00{text}".encode("utf-8", "surrogatepass")).hexdigest()[:32]


async def read_rows(store: ObjectStore, manifest: ManifestLike, source: Source, model: str) -> list[Row]:
    """The rows of a dataset version as items (rows with no text are left out).

    Raises:
        InvalidRequest: a column is missing, or the id column holds empty or repeated values.
    """
    source.resolved(manifest, explicit_metadata=True)
    wanted = list(dict.fromkeys((source.id_column, *source.text_columns, *source.metadata_columns)))
    tables = []
    for obj in manifest.objects:
        key = obj if isinstance(obj, str) else obj.key
        data = await store.get_bytes(key)
        tables.append(await run_blocking(_read_parquet, data, wanted))
    return await run_blocking(_rows, tables, wanted, source, model)


def _read_parquet(data: bytes, columns: list[str]) -> pa.Table:
    import pyarrow.parquet as pq

    return pq.read_table(io.BytesIO(data), columns=columns)


def _rows(tables: list[pa.Table], wanted: list[str], source: Source, model: str) -> list[Row]:
    if not tables:
        return []
    import pyarrow as pa

    table = pa.concat_tables(tables, promote_options="permissive")
    ids = table.column(source.id_column)
    if ids.null_count:
        raise InvalidRequest(
            f"id column {source.id_column!r} has {ids.null_count} empty values; every row needs an id",
            column=source.id_column,
        )
    id_texts = [_id_text(value) for value in ids.to_pylist()]
    seen: set[str] = set()
    for item_id in id_texts:
        if item_id in seen:
            raise InvalidRequest(
                f"id column {source.id_column!r} repeats the value {item_id!r}; ids must be unique",
                column=source.id_column,
            )
        seen.add(item_id)
    texts = [table.column(c).to_pylist() for c in source.text_columns]
    metas = {c: table.column(c).to_pylist() for c in source.metadata_columns}
    rows = []
    for n, item_id in enumerate(id_texts):
        text = "\n".join(str(col[n]) for col in texts if col[n] is not None and str(col[n]).strip())
        if not text:
            continue
        metadata = {c: _json_value(values[n]) for c, values in metas.items()}
        rows.append(Row(item_id, text, metadata, digest(model, text)))
    return rows


def _id_text(value: Any) -> str:
    return value if isinstance(value, str) else str(_json_value(value))


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    return str(value)
