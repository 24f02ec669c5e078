"""Manifests: one immutable version of a dataset, and the rules its parts follow."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from lakehouse.catalog.types import INVALID_TYPE, canonical_type, valid_column_name
from lakehouse.errors import InvalidName, InvalidRequest, SchemaDrift
from lakehouse.storage.base import CATALOG_PREFIX
from lakehouse.storage.keys import validate_key

NAME_PATTERN = re.compile(r"[a-z_][a-z0-9_]{0,62}\Z")
# Caps on one register body (a JSON body is also capped in bytes by [http]).
MAX_COLUMNS = 10_000
MAX_OBJECTS = 100_000


def manifest_key(name: str, version: int) -> str:
    """Where version `version` of dataset `name` is stored."""
    return f"{CATALOG_PREFIX}{name}/{version:010d}.json"


@dataclass(frozen=True)
class Column:
    """One column of a dataset's schema: its name and its DuckDB type name."""

    name: str
    type: str

    def to_dict(self) -> dict[str, str]:
        """The column as JSON."""
        return {"name": self.name, "type": self.type}


@dataclass(frozen=True)
class ObjectRef:
    """One data file of a version: its object key, byte size and row count."""

    key: str
    size: int
    rows: int

    def to_dict(self) -> dict[str, Any]:
        """The reference as JSON."""
        return {"key": self.key, "size": self.size, "rows": self.rows}


@dataclass(frozen=True)
class ObjectSpec:
    """An object named in a register request: its key, row count and, optionally, its size."""

    key: str
    rows: int
    size: int | None = None


@dataclass(frozen=True)
class Manifest:
    """One immutable version of a dataset."""

    name: str
    version: int
    schema: tuple[Column, ...]
    objects: tuple[ObjectRef, ...]
    row_count: int
    fingerprint: str
    created_at: str
    parent_version: int | None
    extra: dict[str, Any] = field(default_factory=dict)
    # The Apache Iceberg snapshot that is this version, and the table metadata
    # file holding it (both None until a release-0.1 manifest is upgraded).
    snapshot_id: int | None = None
    metadata_key: str | None = None
    # Set when read back: why this stored version cannot be trusted (a column
    # type that no longer validates, now shown as INVALID). Never stored.
    problems: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The manifest as stored and served."""
        return {
            "name": self.name,
            "version": self.version,
            "schema": [c.to_dict() for c in self.schema],
            "objects": [o.to_dict() for o in self.objects],
            "row_count": self.row_count,
            "fingerprint": self.fingerprint,
            "created_at": self.created_at,
            "parent_version": self.parent_version,
            "extra": self.extra,
            "snapshot_id": self.snapshot_id,
            "metadata_key": self.metadata_key,
        }

    def to_json(self) -> bytes:
        """The stored form: UTF-8 JSON."""
        return json.dumps(self.to_dict(), ensure_ascii=False, sort_keys=True, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Parse a stored manifest."""
        raw = json.loads(data)
        schema, problems = _stored_schema(raw["schema"])
        return cls(
            name=raw["name"],
            version=int(raw["version"]),
            schema=schema,
            objects=tuple(ObjectRef(o["key"], int(o["size"]), int(o["rows"])) for o in raw["objects"]),
            row_count=int(raw["row_count"]),
            fingerprint=raw["fingerprint"],
            created_at=raw["created_at"],
            parent_version=raw.get("parent_version"),
            extra=raw.get("extra") or {},
            snapshot_id=_optional_int(raw.get("snapshot_id")),
            metadata_key=raw.get("metadata_key") if isinstance(raw.get("metadata_key"), str) else None,
            problems=problems,
        )


def _optional_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _stored_schema(raw: list[dict[str, Any]]) -> tuple[tuple[Column, ...], tuple[str, ...]]:
    """A stored schema with canonical types; a type that does not validate becomes INVALID.

    Manifests written by earlier releases were not checked, so their types are
    checked again here rather than trusted: a hostile one never leaves this
    function, and the version is marked so nothing builds SQL from it.
    """
    columns: list[Column] = []
    problems: list[str] = []
    for col in raw:
        name = str(col["name"])
        try:
            kind = canonical_type(col["type"])
        except InvalidRequest:
            kind = INVALID_TYPE
            problems.append(f"column {name!r} has a stored type that is not a DuckDB type name")
        columns.append(Column(name, kind))
    return tuple(columns), tuple(problems)


def validate_name(name: str) -> str:
    """Return `name` when it is a valid dataset name.

    Raises:
        InvalidName: it does not match `^[a-z_][a-z0-9_]{0,62}$`.
    """
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise InvalidName(
            f"dataset name {name!r} must be 1-63 lowercase letters, digits or '_', not starting with a digit",
            name=name,
        )
    return name


def normalize_schema(schema: Sequence[Column]) -> tuple[Column, ...]:
    """The schema with every type in DuckDB's canonical spelling, after checking it.

    Raises:
        InvalidRequest: no columns, more than MAX_COLUMNS, a repeated, empty,
            over-long or control-character column name, or a type that is not
            a DuckDB type name.
    """
    if not schema:
        raise InvalidRequest("a dataset needs at least one column")
    if len(schema) > MAX_COLUMNS:
        raise InvalidRequest(f"a dataset may have at most {MAX_COLUMNS} columns (got {len(schema)})")
    seen: set[str] = set()
    columns = []
    for column in schema:
        valid_column_name(column.name)
        if column.name in seen:
            raise InvalidRequest(f"column {column.name!r} appears twice in the schema", column=column.name)
        seen.add(column.name)
        columns.append(Column(column.name, canonical_type(column.type)))
    return tuple(columns)


def validate_parts(schema: Sequence[Column], objects: Sequence[ObjectRef], row_count: int) -> None:
    """Check a manifest's (normalized) schema, objects and counts before anything is stored.

    Raises:
        InvalidRequest: no columns, a negative size or row count, more than
            MAX_OBJECTS objects, or rows that do not add up to `row_count`.
        InvalidKey: an object key breaks the key rules.
    """
    if not schema:
        raise InvalidRequest("a dataset needs at least one column")
    if len(objects) > MAX_OBJECTS:
        raise InvalidRequest(f"a version may have at most {MAX_OBJECTS} objects (got {len(objects)})")
    if row_count < 0:
        raise InvalidRequest(f"row_count must not be negative (got {row_count})")
    keys: set[str] = set()
    for obj in objects:
        validate_key(obj.key)
        if obj.size < 0 or obj.rows < 0:
            raise InvalidRequest(f"object {obj.key!r} has a negative size or row count", key=obj.key)
        if obj.key in keys:
            raise InvalidRequest(f"object {obj.key!r} is listed twice", key=obj.key)
        keys.add(obj.key)
    total = sum(obj.rows for obj in objects)
    if objects and total != row_count:
        raise InvalidRequest(
            f"row_count is {row_count} but the objects hold {total} rows", row_count=row_count, rows=total
        )


def fingerprint(
    schema: Sequence[Column], objects: Sequence[ObjectRef], etags: Mapping[str, str] | None = None
) -> str:
    """sha256 of the canonical JSON of the schema and the objects.

    `etags` (the store's content tags of user objects, which are copied at
    register) join their object's entry, so the same key holding other bytes
    is other content, and the copy's fresh key never enters the fingerprint.
    """
    entries = []
    for obj in objects:
        entry: dict[str, Any] = obj.to_dict()
        if etags and obj.key in etags:
            entry["etag"] = etags[obj.key]
        entries.append(entry)
    canonical = json.dumps(
        {"schema": [c.to_dict() for c in schema], "objects": entries},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def schema_drift(name: str, current: Sequence[Column], proposed: Sequence[Column]) -> SchemaDrift | None:
    """The drift between the current and a proposed schema, or None when the columns match.

    Column order does not count: the same names with the same types are the same schema.
    """
    before = {c.name: c.type for c in current}
    after = {c.name: c.type for c in proposed}
    added = [c.to_dict() for c in proposed if c.name not in before]
    removed = [c.to_dict() for c in current if c.name not in after]
    changed = [
        {"name": c.name, "from": before[c.name], "to": c.type}
        for c in proposed
        if c.name in before and before[c.name] != c.type
    ]
    if not (added or removed or changed):
        return None
    parts = [
        f"{label} {', '.join(str(c['name']) for c in cols)}"
        for label, cols in (("added", added), ("removed", removed), ("changed", changed))
        if cols
    ]
    return SchemaDrift(
        f"the schema differs from dataset {name!r}'s current one: " + "; ".join(parts),
        dataset=name,
        added=added,
        removed=removed,
        changed=changed,
    )


def now_iso() -> str:
    """The current UTC time as ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
