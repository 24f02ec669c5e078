"""The Iceberg tables themselves, written and read with pyiceberg (see `catalog.iceberg`).

The catalog's version pointer (`_lakehouse/catalog/<name>/<N>.json`, created
with a conditional create) stays the compare-and-set; this module writes what
the pointer names: the table's metadata file, manifest list and manifests,
with pyiceberg, in the dataset's own area beside its data files:

    staged = tables.stage(name, version=4, columns=..., parent=v3_metadata_key,
                          before=v3.objects, after=objects)
    # write pointer 4 naming staged.metadata_key; on losing the race:
    tables.discard(staged)

A version whose files are a superset of its parent's is an Iceberg append,
any other an overwrite (the parent's files no longer listed are deleted from
the snapshot, not from storage). Data files are described from what the
catalog already knows (size and rows), so staging never opens a data file:
its cost does not grow with the files a version keeps. Column types map from
DuckDB's to Iceberg's; a table also carries a name mapping, since the
Parquet files DuckDB writes have no field ids.

Everything here is blocking file I/O through pyiceberg's FileIO: callers run
it on a worker thread. Importing this module imports pyiceberg (about 0.3 s):
code outside it goes through `catalog.iceberg.load` first, so the server
starts without it and one thread at a time imports it.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import pyarrow.parquet as pq
from duckdb.sqltypes import DuckDBPyType
from pyiceberg.io import FileIO
from pyiceberg.io.pyarrow import _pyarrow_to_schema_without_ids
from pyiceberg.manifest import (
    DataFile,
    DataFileContent,
    FileFormat,
    ManifestEntry,
    ManifestEntryStatus,
    ManifestFile,
    write_manifest,
    write_manifest_list,
)
from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC
from pyiceberg.schema import Schema, assign_fresh_schema_ids
from pyiceberg.serializers import FromInputFile, ToOutputFile
from pyiceberg.table import Table, TableProperties
from pyiceberg.table.metadata import TableMetadata, new_table_metadata
from pyiceberg.table.name_mapping import create_mapping_from_schema
from pyiceberg.table.refs import MAIN_BRANCH, SnapshotRefType
from pyiceberg.table.snapshots import (
    Operation,
    Snapshot,
    SnapshotSummaryCollector,
    Summary,
    update_snapshot_summaries,
)
from pyiceberg.table.sorting import UNSORTED_SORT_ORDER
from pyiceberg.table.update import AddSnapshotUpdate, SetSnapshotRefUpdate, update_table_metadata
from pyiceberg.typedef import Record
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    FloatType,
    IcebergType,
    IntegerType,
    ListType,
    LongType,
    MapType,
    NestedField,
    StringType,
    StructType,
    TimestampType,
    TimestamptzType,
    TimeType,
    UUIDType,
)

from lakehouse.catalog.iceberg import NAMESPACE, VERSION_PROPERTY, Staged
from lakehouse.catalog.manifest import Column, ObjectRef
from lakehouse.catalog.properties import SERVER_PROPERTIES, kept_properties
from lakehouse.catalog.types import parsed_type
from lakehouse.catalog.warehouse import Warehouse
from lakehouse.errors import InvalidRequest
from lakehouse.storage.base import DATASETS_PREFIX

_METADATA_CACHE = 256


_SIMPLE: dict[str, IcebergType] = {
    "BOOLEAN": BooleanType(),
    "TINYINT": IntegerType(),
    "SMALLINT": IntegerType(),
    "INTEGER": IntegerType(),
    "UTINYINT": IntegerType(),
    "USMALLINT": IntegerType(),
    "BIGINT": LongType(),
    "UINTEGER": LongType(),
    "FLOAT": FloatType(),
    "DOUBLE": DoubleType(),
    "DATE": DateType(),
    "TIME": TimeType(),
    "TIMESTAMP": TimestampType(),
    "TIMESTAMP_S": TimestampType(),
    "TIMESTAMP_MS": TimestampType(),
    "TIMESTAMP_NS": TimestampType(),
    "TIMESTAMP WITH TIME ZONE": TimestamptzType(),
    "VARCHAR": StringType(),
    "JSON": StringType(),
    "BLOB": BinaryType(),
    "UUID": UUIDType(),
}


class IcebergTables:
    """Stage, read and prune the Iceberg tables of one warehouse (blocking; call from a thread)."""

    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse
        self._io: FileIO = warehouse.io()
        self._cache: OrderedDict[str, TableMetadata] = OrderedDict()
        self._lock = threading.Lock()

    def metadata(self, metadata_key: str) -> TableMetadata:
        """A table metadata file, parsed (cached: metadata files never change)."""
        with self._lock:
            cached = self._cache.get(metadata_key)
            if cached is not None:
                self._cache.move_to_end(metadata_key)
                return cached
        parsed = FromInputFile.table_metadata(self._io.new_input(self.warehouse.uri(metadata_key)))
        self._remember(metadata_key, parsed)
        return parsed

    def stage(
        self,
        name: str,
        *,
        version: int,
        columns: Sequence[Column],
        parent: str | None,
        before: Sequence[ObjectRef],
        after: Sequence[ObjectRef],
    ) -> Staged:
        """Write version `version` as a snapshot on top of metadata file `parent` (None: a new table).

        Raises:
            InvalidRequest: a column type has no Iceberg equivalent.
        """
        if parent is None:
            base = self.new_table(name, columns)
            before = ()
        else:
            base = self.metadata(parent)
        # The metadata may carry properties a client set: staging never acts on them.
        properties = kept_properties(base.properties)
        base = base.model_copy(update={"properties": properties})
        kept = {ref.key for ref in after}
        removed = [ref for ref in before if ref.key not in kept]
        known = {ref.key for ref in before}
        added = [ref for ref in after if ref.key not in known]
        if removed:
            staged, written = self._overwrite(name, version, base, parent, removed, added)
        else:
            staged, written = self._append(name, version, base, added)
        snapshot = staged.current_snapshot()
        assert snapshot is not None
        metadata_key = self.write(name, version, staged)
        return Staged(metadata_key, snapshot.snapshot_id, (metadata_key, *written))

    def _append(
        self, name: str, version: int, base: TableMetadata, added: Sequence[ObjectRef]
    ) -> tuple[TableMetadata, list[str]]:
        """A fast append: the parent's manifests kept as they are, one new manifest for `added`.

        Written here rather than through a pyiceberg transaction, which copies
        the whole table metadata (every snapshot) many times per commit.
        """
        parent = base.current_snapshot()
        snapshot_id = base.new_snapshot_id()
        sequence = base.next_sequence_number()
        schema, spec = base.schema(), base.spec()
        compression: Any = TableProperties.WRITE_AVRO_COMPRESSION_DEFAULT
        folder = f"{self._table_key(name)}/metadata"
        commit = uuid.uuid4()
        manifests: list[ManifestFile] = list(parent.manifests(self._io)) if parent is not None else []
        collector = SnapshotSummaryCollector()
        written: list[str] = []
        if added:
            manifest_key = f"{folder}/{commit}-m0.avro"
            output = self._io.new_output(self.warehouse.uri(manifest_key))
            with write_manifest(2, spec, schema, output, snapshot_id, compression) as writer:
                for ref in added:
                    data_file = self.data_file(ref)
                    writer.add(
                        ManifestEntry.from_args(
                            status=ManifestEntryStatus.ADDED,
                            snapshot_id=snapshot_id,
                            sequence_number=None,
                            file_sequence_number=None,
                            data_file=data_file,
                        )
                    )
                    collector.add_file(data_file, partition_spec=spec, schema=schema)
            manifests.insert(0, writer.to_manifest_file())
            written.append(manifest_key)
        list_key = f"{folder}/snap-{snapshot_id}-0-{commit}.avro"
        parent_id = parent.snapshot_id if parent is not None else None
        output = self._io.new_output(self.warehouse.uri(list_key))
        with write_manifest_list(2, output, snapshot_id, parent_id, sequence, compression) as lister:
            lister.add_manifests(manifests)
        written.append(list_key)
        summary = update_snapshot_summaries(
            Summary(Operation.APPEND, **collector.build(), **{VERSION_PROPERTY: str(version)}),
            parent.summary if parent is not None else None,
        )
        snapshot = Snapshot.model_validate(
            {
                "snapshot-id": snapshot_id,
                "parent-snapshot-id": parent_id,
                "sequence-number": sequence,
                "timestamp-ms": int(time.time() * 1000),
                "manifest-list": self.warehouse.uri(list_key),
                "summary": summary,
                "schema-id": base.current_schema_id,
            }
        )
        branch = SetSnapshotRefUpdate.model_validate(
            {"ref-name": MAIN_BRANCH, "type": SnapshotRefType.BRANCH, "snapshot-id": snapshot_id}
        )
        return update_table_metadata(base, (AddSnapshotUpdate(snapshot=snapshot), branch)), written

    def _overwrite(
        self,
        name: str,
        version: int,
        base: TableMetadata,
        parent: str | None,
        removed: Sequence[ObjectRef],
        added: Sequence[ObjectRef],
    ) -> tuple[TableMetadata, list[str]]:
        """An overwrite through a pyiceberg transaction: `removed` leave the snapshot, `added` join it.

        The transaction sees only the server's own properties (pyiceberg takes
        its location provider, paths and codecs from them); the new metadata
        gets `base`'s back.
        """
        inert = _inert(base)
        table = Table((NAMESPACE, name), inert, self.warehouse.uri(parent or ""), self._io, None)  # type: ignore[arg-type]
        tx = table.transaction()
        update = tx.update_snapshot(snapshot_properties={VERSION_PROPERTY: str(version)})
        with update.overwrite() as overwrite:
            for data_file in self._current_files(base, {ref.key for ref in removed}):
                overwrite.delete_data_file(data_file)
            for ref in added:
                overwrite.append_data_file(self.data_file(ref))
        staged = tx.table_metadata.model_copy(update={"properties": base.properties})
        snapshot = staged.current_snapshot()
        assert snapshot is not None
        written = self._keys([snapshot.manifest_list])
        manifests = snapshot.manifests(self._io)
        written += self._keys(
            m.manifest_path for m in manifests if m.added_snapshot_id == snapshot.snapshot_id
        )
        return staged, written

    def discard(self, staged: Staged) -> None:
        """Remove the files of a version that lost the race to be committed (best effort)."""
        for key in staged.written:
            with contextlib.suppress(OSError, FileNotFoundError):
                self._io.delete(self.warehouse.uri(key))
        with self._lock:
            self._cache.pop(staged.metadata_key, None)

    def new_table(self, name: str, columns: Sequence[Column]) -> TableMetadata:
        """The metadata of an empty table holding `columns`, at the dataset's location.

        Raises:
            InvalidRequest: a column type has no Iceberg equivalent.
        """
        schema = iceberg_schema(columns)
        properties = {
            TableProperties.DEFAULT_NAME_MAPPING: create_mapping_from_schema(schema).model_dump_json(),
            "write.parquet.compression-codec": "zstd",
        }
        return new_table_metadata(
            schema,
            UNPARTITIONED_PARTITION_SPEC,
            UNSORTED_SORT_ORDER,
            self.warehouse.table_location(name),
            properties,
        )

    def data_file(self, ref: ObjectRef) -> DataFile:
        """The Iceberg description of one Parquet object, from its size and row count."""
        return DataFile.from_args(
            content=DataFileContent.DATA,
            file_path=self.warehouse.uri(ref.key),
            file_format=FileFormat.PARQUET,
            partition=Record(),
            record_count=ref.rows,
            file_size_in_bytes=ref.size,
        )

    def check_data_files(self, refs: Sequence[ObjectRef], columns: Sequence[Column]) -> None:
        """Check each Parquet file holds `ref.rows` rows of the dataset's columns (its footer only).

        Names, order and types (nested ones too) must be the dataset's;
        nullability and field ids are not compared.

        Raises:
            InvalidRequest: a file is not Parquet, or its rows or schema differ.
        """
        expected = _shape(iceberg_schema(columns).as_struct())
        for ref in refs:
            try:
                with self._io.new_input(self.warehouse.uri(ref.key)).open() as stream:
                    footer = pq.ParquetFile(stream)
                    rows, arrow = footer.metadata.num_rows, footer.schema_arrow
                found = _shape(_pyarrow_to_schema_without_ids(arrow).as_struct())
            except (OSError, ValueError, TypeError) as exc:
                raise InvalidRequest(
                    f"data file {ref.key!r} is not a readable Parquet file: {exc}", key=ref.key
                ) from None
            if rows != ref.rows:
                raise InvalidRequest(
                    f"data file {ref.key!r} holds {rows} rows, not the {ref.rows} the commit claims",
                    key=ref.key,
                )
            if found != expected:
                raise InvalidRequest(
                    f"data file {ref.key!r} does not have the dataset's columns and types", key=ref.key
                )

    def snapshot_files(
        self, metadata: TableMetadata, snapshot_id: int, io: FileIO | None = None
    ) -> list[DataFile]:
        """Every data file of one snapshot (delete files too: callers refuse them), read through `io`."""
        snapshot = metadata.snapshot_by_id(snapshot_id)
        if snapshot is None:
            return []
        io = io or self._io
        return [entry.data_file for m in snapshot.manifests(io) for entry in self._live(m, io)]

    def manifest_files(self, metadata: TableMetadata, snapshot_id: int) -> list[str]:
        """The keys of a snapshot's manifest list and manifests."""
        snapshot = metadata.snapshot_by_id(snapshot_id)
        if snapshot is None:
            return []
        paths = [snapshot.manifest_list, *(m.manifest_path for m in snapshot.manifests(self._io))]
        return self._keys(paths)

    def write(self, name: str, version: int, metadata: TableMetadata) -> str:
        """Write `metadata` as a new metadata file of table `name`; returns its key."""
        key = f"{self._table_key(name)}/metadata/{version:05d}-{uuid.uuid4()}.metadata.json"
        ToOutputFile.table_metadata(metadata, self._io.new_output(self.warehouse.uri(key)))
        self._remember(key, metadata)
        return key

    def _current_files(self, metadata: TableMetadata, keys: set[str]) -> Iterable[DataFile]:
        snapshot = metadata.current_snapshot()
        if snapshot is None:
            return []
        return [
            entry.data_file
            for m in snapshot.manifests(self._io)
            for entry in self._live(m)
            if (self.warehouse.key(entry.data_file.file_path) or "") in keys
        ]

    def _live(self, manifest: ManifestFile, io: FileIO | None = None) -> list[ManifestEntry]:
        return list(manifest.fetch_manifest_entry(io or self._io, discard_deleted=True))

    def _table_key(self, name: str) -> str:
        return f"{DATASETS_PREFIX}{name}"

    def _keys(self, uris: Iterable[str]) -> list[str]:
        return [key for key in (self.warehouse.key(uri) for uri in uris) if key is not None]

    def _remember(self, key: str, metadata: TableMetadata) -> None:
        with self._lock:
            self._cache[key] = metadata
            self._cache.move_to_end(key)
            while len(self._cache) > _METADATA_CACHE:
                self._cache.popitem(last=False)


def _shape(kind: IcebergType) -> Any:
    """A type's names and types, without field ids or nullability, to compare schemas by."""
    if isinstance(kind, StructType):
        return ("struct", tuple((f.name, _shape(f.field_type)) for f in kind.fields))
    if isinstance(kind, ListType):
        return ("list", _shape(kind.element_type))
    if isinstance(kind, MapType):
        return ("map", _shape(kind.key_type), _shape(kind.value_type))
    return str(kind)


def _inert(metadata: TableMetadata) -> TableMetadata:
    """`metadata` with only the server's own properties, for pyiceberg code that acts on properties."""
    own = {k: v for k, v in metadata.properties.items() if k in SERVER_PROPERTIES}
    return metadata.model_copy(update={"properties": own})


def iceberg_schema(columns: Sequence[Column]) -> Schema:
    """The Iceberg schema of a dataset's columns, with fresh field ids.

    Raises:
        InvalidRequest: a column's DuckDB type has no Iceberg equivalent
            (HUGEINT, UBIGINT, INTERVAL, UNION, BIT, TIME WITH TIME ZONE ...).
    """
    ids = iter(range(1, 1 << 30))
    fields = [
        NestedField(next(ids), column.name, _iceberg_type(column.name, parsed_type(column.type), ids), False)
        for column in columns
    ]
    return assign_fresh_schema_ids(Schema(*fields))


def _iceberg_type(column: str, kind: DuckDBPyType, ids: Iterator[int]) -> IcebergType:
    text = str(kind)
    if text in _SIMPLE:
        return _SIMPLE[text]
    family = kind.id
    parts: dict[str, Any] = dict(kind.children) if family in ("decimal", "list", "array", "map") else {}
    if family == "decimal":
        return DecimalType(int(parts["precision"]), int(parts["scale"]))
    if family == "enum":
        return StringType()
    if family in ("list", "array"):
        return ListType(next(ids), _iceberg_type(column, parts["child"], ids), element_required=False)
    if family == "struct":
        members: list[tuple[str, Any]] = list(kind.children)
        return StructType(
            *(NestedField(next(ids), str(n), _iceberg_type(column, t, ids), False) for n, t in members)
        )
    if family == "map":
        key_id, value_id = next(ids), next(ids)
        return MapType(
            key_id,
            _iceberg_type(column, parts["key"], ids),
            value_id,
            _iceberg_type(column, parts["value"], ids),
            value_required=False,
        )
    raise InvalidRequest(
        f"column {column!r} has type {text}, which an Apache Iceberg table cannot hold",
        column=column,
        type=text,
    )


def field_ids_sql(columns: Sequence[Column]) -> str:
    """DuckDB's `FIELD_IDS` copy option giving each column (nested ones too) its Iceberg field id.

    Parquet files written with it carry the ids of `iceberg_schema(columns)`,
    which is the schema of the dataset's table, so engines that match columns
    by id only (Daft) read them. Names are written as quoted string literals.

    Raises:
        InvalidRequest: a column type has no Iceberg equivalent.
    """
    schema = iceberg_schema(columns)
    return (
        "FIELD_IDS {"
        + ", ".join(_field_id_entry(f.name, f.field_id, f.field_type) for f in schema.fields)
        + "}"
    )


def _field_id_entry(name: str, field_id: int, kind: IcebergType) -> str:
    key = "'" + name.replace("'", "''") + "'"
    children: list[str] = []
    if isinstance(kind, StructType):
        children = [_field_id_entry(f.name, f.field_id, f.field_type) for f in kind.fields]
    elif isinstance(kind, ListType):
        children = [_field_id_entry("element", kind.element_id, kind.element_type)]
    elif isinstance(kind, MapType):
        children = [
            _field_id_entry("key", kind.key_id, kind.key_type),
            _field_id_entry("value", kind.value_id, kind.value_type),
        ]
    if not children:
        return f"{key}: {field_id}"
    return f"{key}: {{__duckdb_field_id: {field_id}, {', '.join(children)}}}"
