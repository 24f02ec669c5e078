"""The catalog: datasets as append-only histories of immutable manifests in the object store.

Version N of dataset `d` lives at `_lakehouse/catalog/d/<N, 10 digits>.json`
and is written with a conditional create, so two registers racing for the
same version (in one process or in two) can never both win: the loser reads
the new current version and tries again. The store's writes are atomic, so a
crash leaves a whole manifest or none, and the history has no gaps.

Objects outside the reserved prefix are copied into the dataset's own area
(`pinning`) just before the manifest is written, so a version never changes
when a user replaces or deletes them; the fingerprint is taken from the
sources' sizes and etags, so registering the same content again is still
idempotent. Deleting a dataset removes its manifests first (oldest first, so
the current version stays whole until the last one goes) and its files
second: a crash midway leaves only unreferenced files, and a retried delete
finishes the job.

Manifests are cached by key together with the etag they were read with; a
listing or HEAD that shows another etag (a dataset deleted and created again,
perhaps by another process) reloads it.

A writer whose object list was derived from version N (an append: N's
objects plus a new file) passes `expected_parent=N`: losing the race then
raises `VersionConflict` instead of registering on top of a version whose
objects it never saw, which would drop the other writer's rows.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from lakehouse.catalog import iceberg, lifecycle
from lakehouse.catalog.changes import FULL_RESCAN_SECS, ChangeLog
from lakehouse.catalog.iceberg import iceberg_schema
from lakehouse.catalog.manifest import (
    Column,
    Manifest,
    ObjectRef,
    ObjectSpec,
    manifest_key,
    normalize_schema,
    now_iso,
    schema_drift,
    validate_name,
    validate_parts,
)
from lakehouse.catalog.manifest import fingerprint as content_fingerprint
from lakehouse.catalog.pinning import check_registrable, discard, needs_pin, pin_all
from lakehouse.catalog.warehouse import warehouse_for
from lakehouse.errors import (
    AlreadyExists,
    Busy,
    InvalidRequest,
    MissingObject,
    NotFound,
    PreconditionFailed,
    VersionConflict,
)
from lakehouse.named_locks import NamedLocks
from lakehouse.runner import run_blocking
from lakehouse.storage.base import (
    CATALOG_PREFIX,
    DATASETS_PREFIX,
    ObjectInfo,
    ObjectStore,
    list_all,
    one_chunk,
)

if TYPE_CHECKING:
    from lakehouse.catalog.tables import IcebergTables

_EPOCH = datetime.fromtimestamp(0, UTC)
_MANIFEST_FILE = re.compile(r"(\d{10})\.json\Z")
# Enough rounds for every writer of a crowded dataset to win one; each round
# some writer always wins, so running out means something else is wrong.
MAX_ATTEMPTS = 64
# `expected_parent` value meaning "the dataset must not exist yet".
NO_VERSION = 0
HEAD_CONCURRENCY = 16
FETCH_CONCURRENCY = 16


@dataclass(frozen=True)
class DatasetHistory:
    """A dataset's current manifest and every version number it has."""

    current: Manifest
    versions: tuple[int, ...]


class Catalog:
    """Register, read, list and delete dataset versions kept in an object store."""

    def __init__(self, store: ObjectStore, tables: IcebergTables | None = None) -> None:
        self.store = store
        # Where the tables' files live, as URIs; needs no pyiceberg (unlike `tables`).
        self.warehouse = tables.warehouse if tables is not None else warehouse_for(store)
        self._tables = tables
        self.changes = ChangeLog(store)
        # What the last look at the catalog found, and the change log as it was then.
        self._known: dict[str, DatasetHistory] | None = None
        self._known_tag: str | None = None
        self._known_seq = 0
        self._scanned_at = 0.0
        self._scan_lock = asyncio.Lock()
        # Bumped whenever `current_all` looked again (views compare it before anything else).
        self.generation = 0
        # key -> (etag it was read with, manifest); checked against listings and HEADs.
        self._cache: dict[str, tuple[str, Manifest]] = {}
        # One writer per dataset name at a time in this process.
        self.locks = NamedLocks()

    @property
    def tables(self) -> IcebergTables:
        """The datasets' Iceberg tables (pyiceberg is imported on first use, see `iceberg.load`)."""
        if self._tables is None:
            iceberg.load()
            from lakehouse.catalog.tables import IcebergTables

            self._tables = IcebergTables(self.warehouse)
        return self._tables

    async def register(
        self,
        name: str,
        schema: Sequence[Column],
        objects: Sequence[ObjectRef | ObjectSpec],
        row_count: int,
        fingerprint: str | None = None,
        extra: dict[str, Any] | None = None,
        expected_parent: int | None = None,
    ) -> tuple[Manifest, bool]:
        """Add a version to `name` unless its content equals the current one.

        Returns the new manifest and True, or the current one and False when its
        fingerprint matches (idempotent re-register, checked before anything is
        copied). With `expected_parent`, the new version is written only on top
        of that version (`NO_VERSION`, 0: only as the dataset's first version).
        An object's size may be None: the store's is used. Column types are
        stored in DuckDB's canonical spelling; objects outside the reserved
        prefix are stored as copies in the dataset's area.

        Raises:
            InvalidName: the name breaks the naming rules.
            InvalidRequest: bad schema or type, sizes that disagree with the
                store's, counts, or `expected_parent`.
            ReservedKey: an object under `_lakehouse/` that is not a dataset's file.
            MissingObject: objects absent from the store (`missing` lists them).
            SchemaDrift: the schema differs from the current version's.
            VersionConflict: the current version is not `expected_parent`
                (`expected` and `current` name both); nothing was written.
            Conflict: a user object was replaced while it was being copied.
        """
        validate_name(name)
        if expected_parent is not None and expected_parent < NO_VERSION:
            raise InvalidRequest(
                f"expected parent version must be {NO_VERSION} or more (got {expected_parent})",
                expected=expected_parent,
            )
        columns = normalize_schema(schema)
        await iceberg.ready()  # pyiceberg imported off the event loop, the first time
        iceberg_schema(columns)  # a type no Iceberg table can hold is refused before anything is copied
        specs = [ObjectRef(o.key, o.size if o.size is not None else 0, o.rows) for o in objects]
        validate_parts(columns, specs, row_count)
        for spec in specs:
            check_registrable(spec.key)
        # Files of the current version are already known to the catalog: only new ones are checked.
        cached = (await self.current_all()).get(name)
        known = {o.key: o for o in cached.current.objects} if cached is not None else {}
        infos = await self._check_objects(objects, known)
        refs = tuple(ObjectRef(o.key, infos[o.key].size, o.rows) for o in objects)
        etags = {ref.key: infos[ref.key].etag for ref in refs if needs_pin(name, ref.key)}
        fp = fingerprint or content_fingerprint(columns, refs, etags)
        # One writer per dataset inside this process; the conditional create
        # settles races with other processes.
        async with self.locks(name):
            pinned: tuple[ObjectRef, ...] | None = None
            copies: list[str] = []
            written = False
            try:
                # The first round trusts the cached current version (fresh after one HEAD of the
                # change log); the conditional create catches it being stale, and anything the
                # round would refuse or answer from it is checked again against a listing.
                listed = False
                for _ in range(MAX_ATTEMPTS):
                    if listed:
                        numbers = await self._version_etags(name)
                        latest = max(numbers) if numbers else None
                        current = await self._load(name, latest, numbers[latest]) if latest else None
                    else:
                        history = (await self.current_all()).get(name)
                        current = history.current if history is not None else None
                    actual = current.version if current is not None else NO_VERSION
                    unsure = (current is not None and current.fingerprint == fp) or (
                        expected_parent is not None and actual != expected_parent
                    )
                    if unsure and not listed:
                        listed = True
                        continue
                    if current is not None and current.fingerprint == fp:
                        return current, False
                    if expected_parent is not None and actual != expected_parent:
                        raise VersionConflict(
                            f"dataset {name!r} is at version {actual}, not {expected_parent}; "
                            "rebuild from the current version and retry",
                            dataset=name,
                            expected=expected_parent,
                            current=actual,
                        )
                    if current is not None:
                        drift = schema_drift(name, current.schema, columns)
                        if drift is not None:
                            raise drift
                        # The same columns in the dataset's own order: its table's field ids follow it.
                        columns = current.schema
                    if current is not None and current.metadata_key is None:
                        await self.upgrade(name)
                        listed = True
                        continue
                    if pinned is None:
                        pinned_list, copies = await pin_all(self.store, name, refs, infos)
                        pinned = tuple(pinned_list)
                    version = current.version + 1 if current else 1
                    staged = await run_blocking(
                        self.tables.stage,
                        name,
                        version=version,
                        columns=columns,
                        parent=current.metadata_key if current else None,
                        before=current.objects if current else (),
                        after=pinned,
                    )
                    manifest = Manifest(
                        name=name,
                        version=version,
                        schema=columns,
                        objects=pinned,
                        row_count=row_count,
                        fingerprint=fp,
                        created_at=now_iso(),
                        parent_version=current.version if current else None,
                        extra=dict(extra or {}),
                        snapshot_id=staged.snapshot_id,
                        metadata_key=staged.metadata_key,
                    )
                    key = manifest_key(name, manifest.version)
                    try:
                        stored = await self.store.put_bytes(key, manifest.to_json(), if_absent=True)
                    except AlreadyExists:
                        # With expected_parent set, the next round reads the winner and
                        # raises VersionConflict (or returns it when it holds our content).
                        listed = True
                        await run_blocking(self.tables.discard, staged)
                        await asyncio.sleep(random.uniform(0, 0.005))
                        continue
                    written = True
                    self._cache[key] = (stored.info.etag, manifest)
                    await self.changes.announce(name)
                    return manifest, True
            finally:
                if not written and copies:
                    await discard(self.store, copies)
        raise Busy(f"dataset {name!r} is being registered too often to settle; retry", dataset=name)

    async def commit_snapshot(
        self,
        name: str,
        *,
        parent: Manifest,
        objects: Sequence[ObjectRef],
        snapshot_id: int,
        metadata_key: str,
        extra: dict[str, Any],
    ) -> Manifest:
        """Make an already written Iceberg snapshot (an Iceberg REST commit) version `parent + 1`.

        Raises:
            VersionConflict: `parent` is no longer the current version, or its
                metadata file was replaced (a properties commit); nothing was written.
        """
        refs = tuple(objects)
        validate_parts(parent.schema, refs, sum(o.rows for o in refs))
        manifest = Manifest(
            name=name,
            version=parent.version + 1,
            schema=parent.schema,
            objects=refs,
            row_count=sum(o.rows for o in refs),
            fingerprint=content_fingerprint(parent.schema, refs),
            created_at=now_iso(),
            parent_version=parent.version,
            extra=extra,
            snapshot_id=snapshot_id,
            metadata_key=metadata_key,
        )
        key = manifest_key(name, manifest.version)
        moved = VersionConflict(
            f"dataset {name!r} moved past version {parent.version}", dataset=name, expected=parent.version
        )
        async with self.locks(name):
            # A properties commit may have rewritten `parent` since it was read: its
            # metadata file is then not the one this snapshot was applied to.
            if (await self._load(name, parent.version)).metadata_key != parent.metadata_key:
                raise moved
            try:
                stored = await self.store.put_bytes(key, manifest.to_json(), if_absent=True)
            except AlreadyExists:
                raise moved from None
        self._cache[key] = (stored.info.etag, manifest)
        await self.changes.announce(name)
        return manifest

    async def upgrade(self, name: str) -> int:
        """Give each version of `name` written by release 0.1 its Iceberg snapshot (see `lifecycle`)."""
        return await lifecycle.upgrade(self, name)

    async def upgrade_all(self) -> int:
        """Upgrade every dataset; idempotent, and a crash midway is finished by the next call."""
        return await lifecycle.upgrade_all(self)

    async def expire(
        self, name: str, *, keep_last: int | None = None, older_than: datetime | None = None
    ) -> lifecycle.Expired:
        """Remove old versions (never the current one) and the files only they used.

        Raises:
            InvalidName: the name breaks the naming rules.
            InvalidRequest: not exactly one of `keep_last` (1 or more) and `older_than`.
            NotFound: no such dataset.
        """
        validate_name(name)
        async with self.locks(name):
            return await lifecycle.expire(self, name, keep_last=keep_last, older_than=older_than)

    async def _rewrite(self, manifest: Manifest, etag: str) -> bool:
        """Replace a stored manifest only if it still has `etag`; False when it changed meanwhile."""
        key = manifest_key(manifest.name, manifest.version)
        try:
            stored = await self.store.put(key, one_chunk(manifest.to_json()), if_match=etag)
        except PreconditionFailed:
            return False
        self._cache[key] = (stored.info.etag, manifest)
        await self.changes.announce(manifest.name)
        return True

    def _forget(self, name: str, version: int) -> None:
        self._cache.pop(manifest_key(name, version), None)

    async def delete(self, name: str) -> int:
        """Remove every version and every file of `name`; returns how many versions were removed.

        Manifests go first, oldest first (the current version stays readable and
        whole until the very end), then the files under the dataset's area. A
        crash midway leaves unreferenced files only, and deleting again finishes.

        Raises:
            InvalidName: the name breaks the naming rules.
            NotFound: neither a version nor a file of `name` exists.
        """
        validate_name(name)
        async with self.locks(name):
            numbers = sorted(await self._version_etags(name))
            files, _ = await self.store.list(f"{DATASETS_PREFIX}{name}/")
            if not numbers and not files:
                raise NotFound(f"dataset {name!r} does not exist", dataset=name)
            for number in numbers:
                key = manifest_key(name, number)
                self._cache.pop(key, None)
                await discard(self.store, [key])
            await self.changes.announce(name)  # readers drop its views before its files go
            # Files listed again: a version registered just before the manifests went may have added some.
            files, _ = await self.store.list(f"{DATASETS_PREFIX}{name}/")
            await discard(self.store, [info.key for info in files])
            await self.changes.announce(name)
            return len(numbers)

    async def get(self, name: str, version: int | None = None) -> Manifest:
        """The current manifest of `name`, or version `version` of it.

        Raises:
            InvalidName: the name breaks the naming rules.
            NotFound: no such dataset or version.
        """
        validate_name(name)
        if version is None:
            history = (await self.current_all()).get(name)
            if history is None:
                raise NotFound(f"dataset {name!r} does not exist", dataset=name)
            return history.current
        if version < 1:
            raise NotFound(f"dataset {name!r} has no version {version}", dataset=name, version=version)
        try:
            return await self._load(name, version)
        except NotFound:
            exists = bool(await self._version_etags(name))
            what = f"has no version {version}" if exists else "does not exist"
            raise NotFound(f"dataset {name!r} {what}", dataset=name, version=version) from None

    async def versions(self, name: str) -> list[Manifest]:
        """Every manifest of `name`, oldest first.

        Raises:
            InvalidName: the name breaks the naming rules.
            NotFound: no such dataset.
        """
        validate_name(name)
        numbers = await self._version_etags(name)
        if not numbers:
            raise NotFound(f"dataset {name!r} does not exist", dataset=name)
        return await self._load_many([(name, n, numbers[n]) for n in sorted(numbers)])

    async def datasets(self) -> list[Manifest]:
        """The current manifest of every dataset, by name."""
        return [history.current for history in (await self.current_all()).values()]

    async def current_all(self) -> dict[str, DatasetHistory]:
        """Every dataset's current manifest and version numbers (treat the answer as read-only).

        Steady state costs one HEAD of the change log: the datasets known from
        the last look are answered as long as the log's etag has not moved.
        When it moved, only the datasets it names are looked at again; a log
        that no longer reaches back far enough, or `FULL_RESCAN_SECS` since
        the last full listing, lists everything.
        """
        tag = await self.changes.tag()
        if self._fresh(tag):
            assert self._known is not None
            return self._known
        async with self._scan_lock:
            tag = await self.changes.tag()
            if self._fresh(tag):
                assert self._known is not None
                return self._known
            changes = await self.changes.read()
            moved = changes.since(self._known_seq) if self._known is not None and not self._stale() else None
            if moved is None:
                known = await self._scan_all()
                self._scanned_at = time.monotonic()
            else:
                assert self._known is not None
                known = dict(self._known)
                for name in sorted(moved):
                    history = await self._history(name)
                    if history is None:
                        known.pop(name, None)
                    else:
                        known[name] = history
                known = dict(sorted(known.items()))
            self._known, self._known_tag, self._known_seq = known, changes.etag, changes.seq
            self.generation += 1
            return known

    def _fresh(self, tag: str | None) -> bool:
        return self._known is not None and tag == self._known_tag and not self._stale()

    def _stale(self) -> bool:
        return time.monotonic() - self._scanned_at > FULL_RESCAN_SECS

    async def _scan_all(self) -> dict[str, DatasetHistory]:
        """Every dataset from one LIST of the manifests (only unseen or changed ones are fetched)."""
        listed = await list_all(self.store, CATALOG_PREFIX)
        numbers: dict[str, dict[int, str]] = {}
        for info in listed:
            parsed = _parse_key(info.key)
            if parsed is not None:
                numbers.setdefault(parsed[0], {})[parsed[1]] = info.etag
        names = sorted(numbers)
        latest = {n: max(numbers[n]) for n in names}
        currents = await self._load_many([(n, latest[n], numbers[n][latest[n]]) for n in names])
        return {
            name: DatasetHistory(current, tuple(sorted(numbers[name])))
            for name, current in zip(names, currents, strict=True)
        }

    async def _history(self, name: str) -> DatasetHistory | None:
        """One dataset's current manifest and version numbers, from a LIST of its own manifests."""
        numbers = await self._version_etags(name)
        if not numbers:
            return None
        latest = max(numbers)
        return DatasetHistory(await self._load(name, latest, numbers[latest]), tuple(sorted(numbers)))

    async def _version_etags(self, name: str) -> dict[int, str]:
        """Every version number of `name` with its manifest's etag, from one LIST."""
        listed, _ = await self.store.list(f"{CATALOG_PREFIX}{name}/")
        found: dict[int, str] = {}
        for info in listed:
            parsed = _parse_key(info.key)
            if parsed is not None and parsed[0] == name:
                found[parsed[1]] = info.etag
        return found

    async def _load(self, name: str, version: int, etag: str | None = None) -> Manifest:
        """The manifest, from the cache when its etag is still `etag` (checked by HEAD when unknown)."""
        key = manifest_key(name, version)
        cached = self._cache.get(key)
        if cached is not None:
            current = etag if etag is not None else (await self.store.head(key)).etag
            if current == cached[0]:
                return cached[1]
        info, chunks = await self.store.get(key)
        data = b"".join([chunk async for chunk in chunks])
        manifest = Manifest.from_json(data)
        self._cache[key] = (info.etag, manifest)
        return manifest

    async def _load_many(self, wanted: list[tuple[str, int, str | None]]) -> list[Manifest]:
        """Manifests in the given order, fetching the uncached ones a few at a time."""
        limit = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def one(name: str, version: int, etag: str | None) -> Manifest:
            async with limit:
                return await self._load(name, version, etag)

        return list(await asyncio.gather(*(one(*item) for item in wanted)))

    async def _check_objects(
        self, objects: Sequence[ObjectRef | ObjectSpec], known: dict[str, ObjectRef]
    ) -> dict[str, ObjectInfo]:
        """Every object's info from the store, by key.

        Raises:
            MissingObject: some do not exist (`missing` lists them).
            InvalidRequest: a given size differs from the stored one.
        """
        limit = asyncio.Semaphore(HEAD_CONCURRENCY)

        async def head(key: str) -> ObjectInfo | None:
            async with limit:
                try:
                    return await self.store.head(key)
                except NotFound:
                    return None

        async def stat(obj: ObjectRef | ObjectSpec) -> ObjectInfo | None:
            ref = known.get(obj.key)
            if ref is not None:  # a file of the current version: immutable, its size known
                return ObjectInfo(ref.key, ref.size, "", _EPOCH)
            return await head(obj.key)

        found = await asyncio.gather(*(stat(obj) for obj in objects))
        missing = [obj.key for obj, info in zip(objects, found, strict=True) if info is None]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise MissingObject(f"{len(missing)} object(s) do not exist in storage: {shown}", missing=missing)
        infos: dict[str, ObjectInfo] = {}
        for obj, info in zip(objects, found, strict=True):
            assert info is not None
            if obj.size is not None and info.size != obj.size:
                raise InvalidRequest(
                    f"object {obj.key!r} is {info.size} bytes in storage, not {obj.size}",
                    key=obj.key,
                    size=info.size,
                )
            infos[obj.key] = info
        return infos


def _parse_key(key: str) -> tuple[str, int] | None:
    """(name, version) from a manifest key, None for anything else under the prefix."""
    rest = key[len(CATALOG_PREFIX) :] if key.startswith(CATALOG_PREFIX) else ""
    name, sep, file = rest.partition("/")
    match = _MANIFEST_FILE.fullmatch(file) if sep else None
    if match is None:
        return None
    return name, int(match.group(1))
