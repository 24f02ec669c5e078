"""Each dataset is an Apache Iceberg table (format version 2); each version is one snapshot.

The catalog's version pointer (`_lakehouse/catalog/<name>/<N>.json`, created
with a conditional create) stays the compare-and-set; `catalog.tables`
writes what the pointer names: the table's metadata file, manifest list and
manifests, with pyiceberg, in the dataset's own area beside its data files.

This module is what the rest of the lakehouse imports: names, key rules and
the schema mapping, without pyiceberg. pyiceberg takes about 0.3 s to import,
so the server starts without it and `load` imports it on first use (a start
warms it on a worker thread once listening). `load` is the one way in: one
thread imports, the others wait for it, since two threads importing pyiceberg
through different modules at once can deadlock on Python's import locks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lakehouse.lazy import LazyImport
from lakehouse.storage.base import DATASETS_PREFIX

if TYPE_CHECKING:
    from pyiceberg.schema import Schema

    from lakehouse.catalog.manifest import Column

# The snapshot summary property naming the dataset version a snapshot is.
VERSION_PROPERTY = "lakehouse.version"
NAMESPACE = "default"

# pyiceberg, through `catalog.tables`, the module that imports it.
PYICEBERG = LazyImport("lakehouse.catalog.tables")
load = PYICEBERG.load
ready = PYICEBERG.ready


@dataclass(frozen=True)
class Staged:
    """A written but not yet committed version: its metadata file and the files it added."""

    metadata_key: str
    snapshot_id: int
    written: tuple[str, ...]


def iceberg_schema(columns: Sequence[Column]) -> Schema:
    """The Iceberg schema of a dataset's columns, with fresh field ids (see `tables.iceberg_schema`).

    Raises:
        InvalidRequest: a column's DuckDB type has no Iceberg equivalent.
    """
    load()
    from lakehouse.catalog.tables import iceberg_schema as schema_of

    return schema_of(columns)


def is_table_metadata(key: str) -> bool:
    """Whether `key` is an Iceberg metadata file, manifest list or manifest of some dataset's table."""
    rest = key[len(DATASETS_PREFIX) :] if key.startswith(DATASETS_PREFIX) else ""
    parts = rest.split("/")
    return len(parts) >= 3 and parts[1] == "metadata"


def field_ids_sql(columns: Sequence[Column]) -> str:
    """DuckDB's `FIELD_IDS` copy option giving each column its Iceberg field id (see `tables.field_ids_sql`).

    Raises:
        InvalidRequest: a column type has no Iceberg equivalent.
    """
    load()
    from lakehouse.catalog.tables import field_ids_sql as field_ids

    return field_ids(columns)
