"""The dataset catalog: append-only histories of immutable manifests.

from lakehouse.catalog import Catalog, Column, ObjectRef
catalog = Catalog(store)
manifest, created = await catalog.register("trips", [Column("id", "BIGINT")], objects, row_count)
"""

from __future__ import annotations

from lakehouse.catalog.catalog import Catalog, DatasetHistory, manifest_key
from lakehouse.catalog.manifest import (
    NAME_PATTERN,
    Column,
    Manifest,
    ObjectRef,
    fingerprint,
    schema_drift,
    validate_name,
)

__all__ = [
    "NAME_PATTERN",
    "Catalog",
    "Column",
    "DatasetHistory",
    "Manifest",
    "ObjectRef",
    "fingerprint",
    "manifest_key",
    "schema_drift",
    "validate_name",
]
