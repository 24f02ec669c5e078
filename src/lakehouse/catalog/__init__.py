"""The dataset catalog: append-only histories of immutable manifests.

from lakehouse.catalog import Catalog, Column, ObjectRef
catalog = Catalog(store)
manifest, created = await catalog.register("trips", [Column("id", "BIGINT")], objects, row_count)
# compare-and-set: only on top of version 3, else VersionConflict
await catalog.register("trips", schema, [*v3.objects, new], rows, expected_parent=3)
"""

from __future__ import annotations

from lakehouse.catalog.catalog import NO_VERSION, Catalog, DatasetHistory
from lakehouse.catalog.manifest import (
    NAME_PATTERN,
    Column,
    Manifest,
    ObjectRef,
    ObjectSpec,
    fingerprint,
    manifest_key,
    normalize_schema,
    schema_drift,
    validate_name,
)
from lakehouse.catalog.types import INVALID_TYPE, canonical_type

__all__ = [
    "INVALID_TYPE",
    "NAME_PATTERN",
    "NO_VERSION",
    "Catalog",
    "Column",
    "DatasetHistory",
    "Manifest",
    "ObjectRef",
    "ObjectSpec",
    "canonical_type",
    "fingerprint",
    "manifest_key",
    "normalize_schema",
    "schema_drift",
    "validate_name",
]
