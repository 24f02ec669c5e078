"""The Iceberg REST catalog over the dataset catalog: one namespace, `default`, holding every dataset.

Loading a table answers the metadata file the current version names. A
commit from a client (pyiceberg's `append` or `overwrite`, say) is checked,
applied with pyiceberg to the current metadata, and becomes the next dataset
version through the same compare-and-set as every other write:

- its requirements must hold against the current metadata, and the version
  it was built on must still be current when its version is written, else
  409 `CommitFailedException` (the client refreshes and retries);
- only data may change: a new snapshot on `main`, the clients' own table
  properties (no configuration key: `properties.settable_property`). A schema
  change is refused with 409 (the schema-drift rule); a new location,
  partition spec, sort order, format version or snapshot removal with 400;
- every file the new snapshot lists must be a Parquet data file inside the
  dataset's own area (delete files are refused); its manifests are read only
  from there too, so a commit cannot make the server open another path;
- its manifest list and manifests are read once each, within bounds on their
  size, inflated size and records, before pyiceberg reads those same bytes
  (`avro_bounds`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from lakehouse.catalog import iceberg
from lakehouse.catalog.avro_bounds import (
    MAX_AVRO_BYTES,
    MAX_ENTRIES,
    MAX_SNAPSHOT_AVRO_BYTES,
    check_avro,
    checked_io,
)
from lakehouse.catalog.iceberg import NAMESPACE, VERSION_PROPERTY
from lakehouse.catalog.manifest import MAX_OBJECTS, Manifest, ObjectRef, manifest_key, validate_name
from lakehouse.catalog.properties import check_size, settable_property
from lakehouse.errors import (
    CommitFailed,
    Forbidden,
    InvalidName,
    InvalidRequest,
    LakehouseError,
    NotFound,
    VersionConflict,
)
from lakehouse.runner import run_blocking
from lakehouse.storage.base import DATASETS_PREFIX

if TYPE_CHECKING:
    # pyiceberg is imported by the commit itself, after `iceberg.ready()` (see `catalog.iceberg`).
    from pyiceberg.io import FileIO
    from pyiceberg.manifest import DataFile
    from pyiceberg.table.metadata import TableMetadata
    from pyiceberg.table.snapshots import Snapshot
    from pyiceberg.table.update import TableUpdate

# Paging of table listings.
MAX_PAGE = 1000


@dataclass(frozen=True)
class LoadedTable:
    """A table as the REST protocol serves it."""

    metadata_location: str
    metadata: dict[str, Any]


class IcebergRest:
    """The REST catalog's operations over a `Catalog`."""

    def __init__(self, catalog: Any) -> None:
        from lakehouse.catalog.catalog import Catalog

        assert isinstance(catalog, Catalog)
        self.catalog = catalog

    def config(self) -> dict[str, Any]:
        """`GET /v1/config`: no prefix, and what this server implements."""
        return {"defaults": {}, "overrides": {}, "endpoints": list(ENDPOINTS)}

    @staticmethod
    def check_namespace(namespace: str) -> None:
        """Raises NotFound (NoSuchNamespaceException) for any namespace but `default`."""
        if namespace != NAMESPACE:
            raise NotFound(
                f"namespace {namespace!r} does not exist; every dataset is in {NAMESPACE!r}",
                iceberg_type="NoSuchNamespaceException",
            )

    async def tables(self, namespace: str, page_size: int | None, page_token: str | None) -> dict[str, Any]:
        """`GET /v1/namespaces/default/tables`, paged by name."""
        self.check_namespace(namespace)
        size = min(max(page_size or MAX_PAGE, 1), MAX_PAGE)
        names = sorted(await self.catalog.current_all())
        if page_token:
            names = [n for n in names if n > page_token]
        page = names[:size]
        more = len(names) > size
        return {
            "identifiers": [{"namespace": [NAMESPACE], "name": n} for n in page],
            "next-page-token": page[-1] if more else None,
        }

    async def load(self, namespace: str, name: str) -> LoadedTable:
        """`GET .../tables/{name}`: the current version's metadata.

        Raises:
            NotFound: no such namespace or table (NoSuchTableException).
        """
        current = await self._current(namespace, name)
        assert current.metadata_key is not None
        raw = await self.catalog.store.get_bytes(current.metadata_key)
        return LoadedTable(self.catalog.warehouse.uri(current.metadata_key), json.loads(raw))

    async def commit(self, namespace: str, name: str, body: dict[str, Any]) -> LoadedTable:
        """`POST .../tables/{name}`: apply a client's commit as the next dataset version.

        Raises:
            NotFound: no such table.
            CommitFailed: a requirement fails, the schema would change, or another
                version landed first.
            InvalidRequest: a malformed commit, or an update a dataset cannot take.
            Forbidden: a file outside the dataset's area.
        """
        await iceberg.ready()
        from pyiceberg.exceptions import CommitFailedException
        from pyiceberg.table import CommitTableRequest
        from pyiceberg.table.update import update_table_metadata

        try:
            request = CommitTableRequest.model_validate(
                {"identifier": {"namespace": [namespace], "name": name}, **body}
            )
        except ValidationError as exc:
            raise InvalidRequest(f"the commit is not an Iceberg table update: {_first(exc)}") from None
        current = await self._current(namespace, name)
        assert current.metadata_key is not None
        base = await run_blocking(self.catalog.tables.metadata, current.metadata_key)
        for requirement in request.requirements:
            try:
                requirement.validate(base)
            except CommitFailedException as exc:
                raise CommitFailed(str(exc), iceberg_type="CommitFailedException") from None
        _check_updates(base, request.updates)
        try:
            updated = update_table_metadata(base, request.updates)
        except ValueError as exc:
            raise InvalidRequest(f"the commit cannot be applied: {exc}") from None
        check_size(updated.properties)
        added = _check_added(request.updates, updated)
        snapshot = updated.current_snapshot()
        if snapshot is None or snapshot.snapshot_id == base.current_snapshot_id:
            return await self._commit_properties(name, current, updated)
        return await self._commit_version(name, current, updated, added)

    async def _commit_properties(self, name: str, current: Manifest, updated: TableMetadata) -> LoadedTable:
        tables = self.catalog.tables
        key = await run_blocking(tables.write, name, current.version, updated)
        try:
            # Under the dataset's lock (versions are written under it too): the version the
            # properties were applied to must still be the latest, and unchanged, when rewritten.
            async with self.catalog.locks(name):
                if await self._exists(manifest_key(name, current.version + 1)):
                    raise _lost(name)
                etag = (await self.catalog.store.head(manifest_key(name, current.version))).etag
                stored = await self.catalog._load(name, current.version, etag)
                if stored.metadata_key != current.metadata_key:  # another properties commit
                    raise _lost(name)
                if not await self.catalog._rewrite(dataclasses.replace(current, metadata_key=key), etag):
                    raise _lost(name)
        except BaseException:
            await asyncio.shield(self.catalog.store.delete(key))
            raise
        return LoadedTable(tables.warehouse.uri(key), json.loads(updated.model_dump_json()))

    async def _commit_version(
        self, name: str, current: Manifest, updated: TableMetadata, added: list[int]
    ) -> LoadedTable:
        from pyiceberg.table.snapshots import Operation, Summary

        tables = self.catalog.tables
        snapshot = updated.current_snapshot()
        assert snapshot is not None
        known = {o.key for o in current.objects}
        # Every snapshot the commit adds (an overwrite's delete snapshot too) lies inside the table.
        for snapshot_id in added:
            if snapshot_id != snapshot.snapshot_id:
                await self._snapshot_files(name, updated, snapshot_id, known)
        files = await self._snapshot_files(name, updated, snapshot.snapshot_id, known)
        objects = [ObjectRef(key, f.file_size_in_bytes, f.record_count) for key, f in files]
        # Files the dataset holds must be listed as it holds them; new ones must exist with
        # the claimed size, rows and the dataset's schema.
        _check_kept(objects, current.objects)
        fresh = [o for o in objects if o.key not in known]
        await self.catalog._check_objects(fresh, {})
        await run_blocking(tables.check_data_files, fresh, current.schema)
        version = current.version + 1
        given = snapshot.summary or Summary(Operation.APPEND)
        summary = Summary(
            Operation(given.operation), **{**given.additional_properties, VERSION_PROPERTY: str(version)}
        )
        stamped = snapshot.model_copy(update={"summary": summary})
        snapshots = [stamped if s.snapshot_id == stamped.snapshot_id else s for s in updated.snapshots]
        updated = updated.model_copy(update={"snapshots": snapshots})
        key = await run_blocking(tables.write, name, version, updated)
        try:
            await self.catalog.commit_snapshot(
                name,
                parent=current,
                objects=objects,
                snapshot_id=stamped.snapshot_id,
                metadata_key=key,
                extra={
                    "source": "iceberg",
                    "operation": str(summary.operation.value),
                    "sources": _carried_sources(current, objects),
                },
            )
        except VersionConflict:
            await self.catalog.store.delete(key)
            raise _lost(name) from None
        except BaseException:  # refused (or cancelled): the metadata file names no version
            await asyncio.shield(self.catalog.store.delete(key))
            raise
        return LoadedTable(tables.warehouse.uri(key), json.loads(updated.model_dump_json()))

    async def _exists(self, key: str) -> bool:
        try:
            await self.catalog.store.head(key)
        except NotFound:
            return False
        return True

    async def _snapshot_files(
        self, name: str, metadata: TableMetadata, snapshot_id: int, known: set[str]
    ) -> list[tuple[str, DataFile]]:
        """A snapshot's data files by key, once its manifest list, manifests and files are checked.

        Raises:
            Forbidden: a manifest list, manifest or new data file outside the table.
            InvalidRequest: a delete file, a file not Parquet; a manifest list or manifest
                missing, unreadable or past its bounds (`avro_bounds`).
        """
        from pyiceberg.manifest import DataFileContent, FileFormat

        tables = self.catalog.tables
        snapshot = metadata.snapshot_by_id(snapshot_id)
        assert snapshot is not None
        area = f"{DATASETS_PREFIX}{name}/"
        try:
            files = await run_blocking(
                tables.snapshot_files, metadata, snapshot_id, await self._checked(snapshot, area)
            )
        except LakehouseError:
            raise
        except Exception as exc:  # the client's files: whatever fails reading them is its error
            raise InvalidRequest(
                f"the commit's manifest list or manifests cannot be read: {type(exc).__name__}: {exc}"
            ) from None
        found: list[tuple[str, DataFile]] = []
        for data_file in files:
            if data_file.content != DataFileContent.DATA:
                raise InvalidRequest("a commit may add data files only: delete files are not supported")
            if data_file.file_format != FileFormat.PARQUET:
                raise InvalidRequest(f"data files must be Parquet, not {data_file.file_format}")
            key = tables.warehouse.key(data_file.file_path)
            if key not in known:
                _inside(key, area, "data file")
            assert key is not None
            found.append((key, data_file))
        return found

    async def _checked(self, snapshot: Snapshot, area: str) -> FileIO:
        """A FileIO holding the snapshot's manifest list and manifests, each read once within bounds.

        Raises:
            Forbidden: the manifest list or a manifest lies outside the table.
            InvalidRequest: one is missing, not Avro, or passes the bounds (`avro_bounds`).
        """
        checked: dict[str, bytes] = {}
        io = checked_io(checked)
        budget = MAX_SNAPSHOT_AVRO_BYTES
        await self._check(snapshot.manifest_list, area, "manifest list", MAX_OBJECTS, budget, checked)
        budget -= len(checked[snapshot.manifest_list])
        entries = 0
        for manifest in await run_blocking(snapshot.manifests, io):
            entries += await self._check(
                manifest.manifest_path, area, "manifest", MAX_ENTRIES - entries, budget, checked
            )
            budget -= len(checked[manifest.manifest_path])
        return io

    async def _check(
        self, uri: str, area: str, what: str, max_records: int, budget: int, checked: dict[str, bytes]
    ) -> int:
        """Read one Avro file of a commit into `checked` once it passes `check_avro`; its records."""
        key = self.catalog.tables.warehouse.key(uri)
        _inside(key, area, what)
        assert key is not None
        limit = min(MAX_AVRO_BYTES, budget)
        try:
            _, chunks = await self.catalog.store.get(key)
        except NotFound:
            raise InvalidRequest(f"the commit's {what} {uri!r} does not exist") from None
        parts, size = [], 0
        async with contextlib.aclosing(chunks):  # type: ignore[type-var]
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise InvalidRequest(
                        f"the commit's {what} is larger than the {limit} bytes read of it"
                        f" (at most {MAX_AVRO_BYTES} a file, {MAX_SNAPSHOT_AVRO_BYTES} a snapshot)"
                    )
                parts.append(chunk)
        data = b"".join(parts)
        records = await run_blocking(check_avro, data, what, limit, max_records)
        checked[uri] = data
        return records

    async def _current(self, namespace: str, name: str) -> Manifest:
        self.check_namespace(namespace)
        try:
            validate_name(name)
            current = await self.catalog.get(name)
        except (InvalidName, NotFound):
            raise NotFound(
                f"table {namespace}.{name} does not exist", iceberg_type="NoSuchTableException"
            ) from None
        if current.metadata_key is None:
            await self.catalog.upgrade(name)
            current = await self.catalog.get(name)
        if current.metadata_key is None:
            raise NotFound(
                f"dataset {name!r} has column types an Iceberg table cannot hold",
                iceberg_type="NoSuchTableException",
            )
        return current


ENDPOINTS = (
    "GET /v1/{prefix}/namespaces",
    "GET /v1/{prefix}/namespaces/{namespace}",
    "HEAD /v1/{prefix}/namespaces/{namespace}",
    "GET /v1/{prefix}/namespaces/{namespace}/tables",
    "GET /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "HEAD /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}",
    "POST /v1/{prefix}/namespaces/{namespace}/tables/{table}/metrics",
)


def _check_updates(base: TableMetadata, updates: tuple[TableUpdate, ...]) -> None:
    from pyiceberg.table.refs import MAIN_BRANCH, SnapshotRefType
    from pyiceberg.table.update import (
        AddSnapshotUpdate,
        AssignUUIDUpdate,
        RemovePropertiesUpdate,
        SetPropertiesUpdate,
        SetSnapshotRefUpdate,
    )

    allowed = (AddSnapshotUpdate, SetSnapshotRefUpdate, SetPropertiesUpdate, RemovePropertiesUpdate)
    for update in updates:
        if isinstance(update, AssignUUIDUpdate) and update.uuid == base.table_uuid:
            continue
        if update.action in ("add-schema", "set-current-schema"):
            raise CommitFailed(
                "a commit may not change a dataset's schema (the schema-drift rule): "
                "ingest into a new dataset instead",
                iceberg_type="CommitFailedException",
            )
        if not isinstance(update, allowed):
            raise InvalidRequest(f"a dataset's table does not take the update {update.action!r}")
        if isinstance(update, SetSnapshotRefUpdate) and update.ref_name != MAIN_BRANCH:
            raise InvalidRequest("a dataset's table has one branch, main: no other refs")
        if isinstance(update, SetSnapshotRefUpdate) and update.type != SnapshotRefType.BRANCH:
            raise InvalidRequest("main is a branch: a commit may not make it a tag")
        if isinstance(update, SetPropertiesUpdate | RemovePropertiesUpdate):
            keys = update.updates if isinstance(update, SetPropertiesUpdate) else update.removals
            _check_properties(keys)


def _check_added(updates: tuple[TableUpdate, ...], updated: TableMetadata) -> list[int]:
    """The ids of the snapshots a commit adds: each must be the one main ends on or its parent.

    (pyiceberg's overwrite adds two, a delete then an append.) A snapshot
    main does not reach would stay in the metadata without the checks a new
    version gets (its manifest list could name any file), for expiry and
    engines to open later.

    Raises:
        InvalidRequest: an added snapshot main does not end on or descend from.
    """
    from pyiceberg.table.update import AddSnapshotUpdate

    added = [u.snapshot.snapshot_id for u in updates if isinstance(u, AddSnapshotUpdate)]
    on_main: set[int] = set()
    snapshot = updated.current_snapshot()
    while snapshot is not None and snapshot.snapshot_id in added and snapshot.snapshot_id not in on_main:
        on_main.add(snapshot.snapshot_id)
        parent = snapshot.parent_snapshot_id
        snapshot = updated.snapshot_by_id(parent) if parent is not None else None
    if set(added) - on_main:
        raise InvalidRequest(
            "every snapshot a commit adds must be the one main ends on or its parent (set-snapshot-ref main)"
        )
    return added


def _check_kept(objects: list[ObjectRef], held: Iterable[ObjectRef]) -> None:
    """Refuse a file the dataset already holds listed with another size or row count.

    Raises:
        InvalidRequest: a kept file's claimed size or rows differ from the dataset's.
    """
    by_key = {o.key: o for o in held}
    for claimed in objects:
        known = by_key.get(claimed.key)
        if known is not None and (claimed.size, claimed.rows) != (known.size, known.rows):
            raise InvalidRequest(
                f"data file {claimed.key!r} is listed with {claimed.size} bytes and {claimed.rows} rows; "
                f"the dataset holds it with {known.size} bytes and {known.rows} rows",
                key=claimed.key,
            )


def _check_properties(keys: Iterable[str]) -> None:
    """Refuse configuration keys: a commit may only touch the clients' own properties.

    Which keys those are is `properties.settable_property`'s allowlist rule (the
    server never acts on any other property either: see `tables.stage`).
    """
    refused = sorted(k for k in keys if not settable_property(k))
    if refused:
        raise InvalidRequest(
            f"a commit may not set or remove the table property {refused[0]!r}: properties under "
            "write., read., commit., schema., format-, py-, s3. and the like configure the table and "
            "are the lakehouse's own",
            property=refused[0],
        )


def _carried_sources(current: Manifest, objects: list[ObjectRef]) -> list[str]:
    """The upload hash of each kept file (so re-ingesting those bytes stays idempotent); "" for new ones."""
    given = current.extra.get("sources")
    known: dict[str, str] = {}
    if isinstance(given, list) and len(given) == len(current.objects):
        known = {o.key: str(h) for o, h in zip(current.objects, given, strict=True)}
    return [known.get(o.key, "") for o in objects]


def _inside(key: str | None, area: str, what: str) -> None:
    if key is None or not key.startswith(area):
        raise Forbidden(
            f"every {what} of a commit must lie inside the table's location",
            iceberg_type="ForbiddenException",
        )


def _lost(name: str) -> CommitFailed:
    return CommitFailed(
        f"another version of {name!r} was committed first; refresh the table and retry",
        iceberg_type="CommitFailedException",
    )


def _first(exc: ValidationError) -> str:
    errors = exc.errors()
    if not errors:
        return "invalid"
    where = ".".join(str(p) for p in errors[0].get("loc", ()))
    return f"{where}: {errors[0].get('msg', 'invalid')}"
