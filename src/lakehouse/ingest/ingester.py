"""Uploaded files into new dataset versions: spool, convert to Parquet, upload, register.

Order matters for crash safety: the Parquet file is uploaded under a fresh
key and only then registered, so a crash leaves at most an unreferenced file
(swept at the next start by `sweep`), never a version pointing at nothing.
Schema drift is checked before anything is uploaded.

An append registers with `expected_parent` set to the version its object
list came from. When another writer (another process, or another ingester
over the same store) got there first, the catalog raises `VersionConflict`
and the append is rebuilt on the new current version, reusing the uploaded
file, so no writer's rows are ever dropped from the current version.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from lakehouse.catalog import NO_VERSION, Catalog, Column, Manifest, ObjectRef, schema_drift, validate_name
from lakehouse.catalog.iceberg import is_table_metadata
from lakehouse.config import Settings
from lakehouse.errors import Busy, LakehouseError, NotFound, VersionConflict
from lakehouse.ingest.convert import to_parquet
from lakehouse.ingest.spool import Spooled, clean_spool, spool
from lakehouse.named_locks import NamedLocks
from lakehouse.runner import run_blocking
from lakehouse.storage.base import DATASETS_PREFIX, ObjectStore

log = logging.getLogger("lakehouse.ingest")

Mode = Literal["append", "replace"]
# Each round some writer wins, so a writer loses at most once per rival in flight.
REGISTER_ATTEMPTS = 32


@dataclass(frozen=True)
class IngestResult:
    """The dataset version an upload produced (or already was), and this upload's rows."""

    manifest: Manifest
    rows: int
    created: bool

    @property
    def schema(self) -> tuple[Column, ...]:
        """The version's columns."""
        return self.manifest.schema


@dataclass(frozen=True)
class _Upload:
    """A converted, stored Parquet file waiting to be registered."""

    ref: ObjectRef
    schema: tuple[Column, ...]
    sha256: str
    mode: Mode


class Ingester:
    """Turns uploaded files into versions of catalog datasets."""

    def __init__(self, settings: Settings, store: ObjectStore, catalog: Catalog) -> None:
        self._cfg = settings.ingestd
        self._store = store
        self._catalog = catalog
        self._tmp = Path(self._cfg.tmp_dir or tempfile.gettempdir()).expanduser() / "lakehouse-ingest"
        self._locks = NamedLocks()

    async def ingest(
        self,
        name: str,
        body: AsyncIterator[bytes],
        content_type: str = "",
        mode: Mode = "append",
        sheet: str | None = None,
    ) -> IngestResult:
        """Ingest the file in `body` (raw, or the `file` field of a multipart form) into `name`.

        The format comes from `content_type` (or the multipart part's type, else its
        filename), else from the bytes (no `content_type`: the bytes alone); `sheet`
        picks an XLSX workbook's sheet (default the first).

        Raises:
            InvalidName: a bad dataset name (before the body is read).
            InvalidCsv: malformed, ragged, empty or non-UTF-8 CSV or TSV.
            InvalidFile: a Parquet, JSON, NDJSON or XLSX file that cannot be read, or an
                unknown sheet.
            InvalidRequest: `sheet` for a file that is not a workbook.
            SchemaDrift: columns or types differ from the current version's.
            TooLarge: the upload passed `[ingestd] max_upload_bytes` (or a JSON value,
                a workbook's unpacked size or the conversion's memory passed theirs).
            Busy: other writers to the dataset kept winning the race to register.
        """
        validate_name(name)
        clock = _Phases()
        spooled = await spool(body, content_type, self._tmp, self._cfg.max_upload_bytes)
        clock.mark("spool")
        try:
            # One ingest per dataset at a time in this ingester; other writers are settled by
            # the catalog's compare-and-set in `_register`.
            async with self._locks(name):
                result = await self._ingest_file(name, spooled, mode, sheet, clock)
        finally:
            spooled.path.unlink(missing_ok=True)
        log.info(
            "ingested %s v%d: %d rows from %d bytes, created=%s (%s)",
            name,
            result.manifest.version,
            result.rows,
            spooled.size,
            result.created,
            clock,
        )
        return result

    async def _ingest_file(
        self, name: str, spooled: Spooled, mode: Mode, sheet: str | None, clock: _Phases
    ) -> IngestResult:
        source = _source_id(spooled.sha256, sheet)
        current = await self._current(name)
        if current is not None:
            rows = _already_ingested(current, source, mode)
            if rows is not None:
                return IngestResult(current, rows, created=False)
        parquet = spooled.path.with_name(spooled.path.name + ".parquet")
        try:
            converted = await run_blocking(
                to_parquet,
                spooled.path,
                parquet,
                declared=spooled.declared,
                sheet=sheet,
                threads=self._cfg.threads,
                memory_limit=self._cfg.memory_limit,
                dataset=name,
                current=current.schema if current is not None else None,
            )
            clock.mark("convert")
            key = f"{DATASETS_PREFIX}{name}/{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.parquet"
            # The file is ours to give: a local store takes it by rename instead of a copy.
            stored = await self._store.put_file(key, parquet, move=True)
            clock.mark("store")
        finally:
            parquet.unlink(missing_ok=True)
        upload = _Upload(
            ObjectRef(key, stored.info.size, converted.rows), tuple(converted.schema), source, mode
        )
        # Shielded: a client gone mid-register must not cut the register short
        # after the manifest landed (the cleanup would then delete a live file).
        result = await asyncio.shield(self._commit(name, upload))
        clock.mark("register")
        return result

    async def _commit(self, name: str, upload: _Upload) -> IngestResult:
        """Register the uploaded file; delete it when no version ends up holding it."""
        try:
            result = await self._register(name, upload)
        except BaseException:
            with contextlib.suppress(LakehouseError, OSError):
                await self._store.delete(upload.ref.key)
            raise
        if all(obj.key != upload.ref.key for obj in result.manifest.objects):
            # A rival ingested the same bytes first: its file serves, ours is spare.
            with contextlib.suppress(LakehouseError, OSError):
                await self._store.delete(upload.ref.key)
        return result

    async def _register(self, name: str, upload: _Upload) -> IngestResult:
        """Add a version holding the upload on top of the newest version, retrying when beaten to it.

        Raises:
            SchemaDrift: the newest version's schema differs from the upload's.
            Busy: other writers kept winning for `REGISTER_ATTEMPTS` rounds.
        """
        for attempt in range(REGISTER_ATTEMPTS):
            current = await self._current(name)
            if current is not None:
                rows = _already_ingested(current, upload.sha256, upload.mode)
                if rows is not None:
                    return IngestResult(current, rows, created=False)
                # The version may be newer than the one the file was converted against.
                drift = schema_drift(name, current.schema, upload.schema)
                if drift is not None:
                    raise drift
            keep = current if current is not None and upload.mode == "append" else None
            objects = [*keep.objects, upload.ref] if keep else [upload.ref]
            sources = [*_sources(keep), upload.sha256] if keep else [upload.sha256]
            # Only an append is derived from its parent; a replace stands on its own.
            expected = (current.version if current else NO_VERSION) if upload.mode == "append" else None
            try:
                manifest, created = await self._catalog.register(
                    name,
                    current.schema if current is not None else upload.schema,
                    objects,
                    sum(obj.rows for obj in objects),
                    extra={"sha256": upload.sha256, "sources": sources, "mode": upload.mode},
                    expected_parent=expected,
                )
            except VersionConflict:
                await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
                continue
            return IngestResult(manifest, upload.ref.rows, created)
        raise Busy(
            f"dataset {name!r} is being written too often for this upload to settle; retry",
            headers={"Retry-After": "1"},
            dataset=name,
        )

    async def _current(self, name: str) -> Manifest | None:
        try:
            return await self._catalog.get(name)
        except NotFound:
            return None

    async def sweep(self) -> int:
        """Remove dataset files no manifest references, older than the grace period; returns how many."""
        grace = self._cfg.orphan_grace_secs
        await run_blocking(clean_spool, self._tmp, grace, time.time())
        # Manifests first, files second: a file registered in between is newer than the grace period.
        referenced: set[str] = set()
        for name, history in (await self._catalog.current_all()).items():
            for number in history.versions:
                try:
                    manifest = await self._catalog.get(name, number)
                except NotFound:
                    continue
                referenced.update(obj.key for obj in manifest.objects)
        listed, _ = await self._store.list(DATASETS_PREFIX)
        now = datetime.now(UTC)
        removed = 0
        for info in listed:
            if info.key in referenced or (now - info.last_modified).total_seconds() < grace:
                continue
            if is_table_metadata(info.key):  # Iceberg metadata: the catalog's, never an orphaned upload
                continue
            with contextlib.suppress(NotFound):
                await self._store.delete(info.key)
                removed += 1
        if removed:
            log.info("removed %d orphaned dataset file(s)", removed)
        return removed


class _Phases:
    """Seconds spent in each step of one ingest, for the log line that reports it."""

    def __init__(self) -> None:
        self._last = time.perf_counter()
        self._spent: list[tuple[str, float]] = []

    def mark(self, phase: str) -> None:
        """The step `phase` ended now."""
        now = time.perf_counter()
        self._spent.append((phase, now - self._last))
        self._last = now

    def __str__(self) -> str:
        return ", ".join(f"{phase} {secs:.2f} s" for phase, secs in self._spent)


def _source_id(sha256: str, sheet: str | None) -> str:
    """What makes an upload the same upload again: its bytes, and the sheet read from them."""
    if sheet is None:
        return sha256
    return hashlib.sha256(f"{sha256}\nsheet={sheet}".encode()).hexdigest()


def _sources(manifest: Manifest) -> list[str]:
    """The sha256 of each upload in the version, aligned with its objects."""
    sources = manifest.extra.get("sources")
    if isinstance(sources, list) and len(sources) == len(manifest.objects):
        return [str(s) for s in sources]
    return [""] * len(manifest.objects)


def _already_ingested(current: Manifest, sha256: str, mode: Mode) -> int | None:
    """The rows of this upload when the current version already holds exactly it, else None."""
    sources = _sources(current)
    if mode == "replace":
        return current.objects[0].rows if sources == [sha256] else None
    if sha256 in sources:
        return current.objects[sources.index(sha256)].rows
    return None
