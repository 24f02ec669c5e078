"""CSV uploads into new dataset versions: spool, convert, upload, register.

Order matters for crash safety: the Parquet file is uploaded under a fresh
key and only then registered, so a crash leaves at most an unreferenced file
(swept at the next start by `sweep`), never a version pointing at nothing.
Schema drift is checked before anything is uploaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from lakehouse.catalog import Catalog, Column, Manifest, ObjectRef, validate_name
from lakehouse.config import Settings
from lakehouse.errors import LakehouseError, NotFound
from lakehouse.ingest.convert import csv_to_parquet
from lakehouse.ingest.spool import Spooled, clean_spool, spool
from lakehouse.runner import run_blocking
from lakehouse.storage.base import DATASETS_PREFIX, ObjectStore

log = logging.getLogger("lakehouse.ingest")

Mode = Literal["append", "replace"]


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


class Ingester:
    """Turns CSV uploads into versions of catalog datasets."""

    def __init__(self, settings: Settings, store: ObjectStore, catalog: Catalog) -> None:
        self._cfg = settings.ingestd
        self._store = store
        self._catalog = catalog
        self._tmp = Path(self._cfg.tmp_dir or tempfile.gettempdir()).expanduser() / "lakehouse-ingest"
        self._locks: dict[str, asyncio.Lock] = {}

    async def ingest(
        self, name: str, body: AsyncIterator[bytes], content_type: str = "text/csv", mode: Mode = "append"
    ) -> IngestResult:
        """Ingest the CSV in `body` (raw, or the `file` field of a multipart form) into `name`.

        Raises:
            InvalidName: a bad dataset name (before the body is read).
            InvalidCsv: malformed, ragged, empty or non-UTF-8 CSV.
            SchemaDrift: columns or types differ from the current version's.
            TooLarge: the upload passed `[ingestd] max_upload_bytes`.
        """
        validate_name(name)
        spooled = await spool(body, content_type, self._tmp, self._cfg.max_upload_bytes)
        try:
            # One ingest per dataset at a time here, so appends never race each other.
            async with self._locks.setdefault(name, asyncio.Lock()):
                return await self._ingest_file(name, spooled, mode)
        finally:
            spooled.path.unlink(missing_ok=True)

    async def _ingest_file(self, name: str, spooled: Spooled, mode: Mode) -> IngestResult:
        current = await self._current(name)
        if current is not None:
            rows = _already_ingested(current, spooled.sha256, mode)
            if rows is not None:
                return IngestResult(current, rows, created=False)
        parquet = spooled.path.with_suffix(".parquet")
        try:
            converted = await run_blocking(
                csv_to_parquet,
                spooled.path,
                parquet,
                threads=self._cfg.threads,
                memory_limit=self._cfg.memory_limit,
                dataset=name,
                current=current.schema if current is not None else None,
            )
            key = f"{DATASETS_PREFIX}{name}/{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.parquet"
            stored = await self._store.put_file(key, parquet)
        finally:
            parquet.unlink(missing_ok=True)
        ref = ObjectRef(key, stored.info.size, converted.rows)
        # Another process may have added a version meanwhile: append onto the newest one.
        latest = await self._current(name)
        if latest is not None and (current is None or latest.version != current.version):
            current = latest
        keep = current is not None and mode == "append"
        objects = [*current.objects, ref] if keep and current else [ref]
        sources = [*_sources(current), spooled.sha256] if keep and current else [spooled.sha256]
        try:
            manifest, created = await self._catalog.register(
                name,
                converted.schema,
                objects,
                sum(obj.rows for obj in objects),
                extra={"sha256": spooled.sha256, "sources": sources, "mode": mode},
            )
        except BaseException:
            with contextlib.suppress(LakehouseError, OSError):
                await self._store.delete(key)
            raise
        return IngestResult(manifest, converted.rows, created)

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
            with contextlib.suppress(NotFound):
                await self._store.delete(info.key)
                removed += 1
        if removed:
            log.info("removed %d orphaned dataset file(s)", removed)
        return removed


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
