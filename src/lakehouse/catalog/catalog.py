"""The catalog: datasets as append-only histories of immutable manifests in the object store.

Version N of dataset `d` lives at `_lakehouse/catalog/d/<N, 10 digits>.json`
and is written with a conditional create, so two registers racing for the
same version (in one process or in two) can never both win: the loser reads
the new current version and tries again. The store's writes are atomic, so a
crash leaves a whole manifest or none, and the history has no gaps.

A writer whose object list was derived from version N (an append: N's
objects plus a new file) passes `expected_parent=N`: losing the race then
raises `VersionConflict` instead of registering on top of a version whose
objects it never saw, which would drop the other writer's rows.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lakehouse.catalog.manifest import (
    Column,
    Manifest,
    ObjectRef,
    now_iso,
    schema_drift,
    validate_name,
    validate_parts,
)
from lakehouse.catalog.manifest import fingerprint as content_fingerprint
from lakehouse.errors import AlreadyExists, Busy, InvalidRequest, MissingObject, NotFound, VersionConflict
from lakehouse.storage.base import CATALOG_PREFIX, ObjectInfo, ObjectStore

_MANIFEST_FILE = re.compile(r"^(\d{10})\.json$")
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


def manifest_key(name: str, version: int) -> str:
    """Where version `version` of dataset `name` is stored."""
    return f"{CATALOG_PREFIX}{name}/{version:010d}.json"


class Catalog:
    """Register, read and list dataset versions kept in an object store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        # Manifests never change once written, so a cache by key never goes stale.
        self._cache: dict[str, Manifest] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    async def register(
        self,
        name: str,
        schema: Sequence[Column],
        objects: Sequence[ObjectRef],
        row_count: int,
        fingerprint: str | None = None,
        extra: dict[str, Any] | None = None,
        expected_parent: int | None = None,
    ) -> tuple[Manifest, bool]:
        """Add a version to `name` unless its content equals the current one.

        Returns the new manifest and True, or the current one and False when its
        fingerprint matches (idempotent re-register, checked before anything else).
        With `expected_parent`, the new version is written only on top of that
        version (`NO_VERSION`, 0: only as the dataset's first version).

        Raises:
            InvalidName: the name breaks the naming rules.
            InvalidRequest: bad schema, sizes, counts or `expected_parent`.
            MissingObject: objects absent from the store (`missing` lists them).
            SchemaDrift: the schema differs from the current version's.
            VersionConflict: the current version is not `expected_parent`
                (`expected` and `current` name both); nothing was written.
        """
        validate_name(name)
        if expected_parent is not None and expected_parent < NO_VERSION:
            raise InvalidRequest(
                f"expected parent version must be {NO_VERSION} or more (got {expected_parent})",
                expected=expected_parent,
            )
        columns = tuple(schema)
        refs = tuple(objects)
        validate_parts(columns, refs, row_count)
        fp = fingerprint or content_fingerprint(columns, refs)
        await self._check_objects(refs)
        # One writer per dataset inside this process; the conditional create
        # settles races with other processes.
        async with self._locks.setdefault(name, asyncio.Lock()):
            for _ in range(MAX_ATTEMPTS):
                numbers = await self._version_numbers(name)
                current = await self._load(name, numbers[-1]) if numbers else None
                if current is not None and current.fingerprint == fp:
                    return current, False
                actual = current.version if current is not None else NO_VERSION
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
                manifest = Manifest(
                    name=name,
                    version=current.version + 1 if current else 1,
                    schema=columns,
                    objects=refs,
                    row_count=row_count,
                    fingerprint=fp,
                    created_at=now_iso(),
                    parent_version=current.version if current else None,
                    extra=dict(extra or {}),
                )
                key = manifest_key(name, manifest.version)
                try:
                    await self.store.put_bytes(key, manifest.to_json(), if_absent=True)
                except AlreadyExists:
                    # With expected_parent set, the next round reads the winner and
                    # raises VersionConflict (or returns it when it holds our content).
                    await asyncio.sleep(random.uniform(0, 0.005))
                    continue
                self._cache[key] = manifest
                return manifest, True
        raise Busy(f"dataset {name!r} is being registered too often to settle; retry", dataset=name)

    async def get(self, name: str, version: int | None = None) -> Manifest:
        """The current manifest of `name`, or version `version` of it.

        Raises:
            InvalidName: the name breaks the naming rules.
            NotFound: no such dataset or version.
        """
        validate_name(name)
        if version is None:
            numbers = await self._version_numbers(name)
            if not numbers:
                raise NotFound(f"dataset {name!r} does not exist", dataset=name)
            return await self._load(name, numbers[-1])
        if version < 1:
            raise NotFound(f"dataset {name!r} has no version {version}", dataset=name, version=version)
        try:
            return await self._load(name, version)
        except NotFound:
            exists = bool(await self._version_numbers(name))
            what = f"has no version {version}" if exists else "does not exist"
            raise NotFound(f"dataset {name!r} {what}", dataset=name, version=version) from None

    async def versions(self, name: str) -> list[Manifest]:
        """Every manifest of `name`, oldest first.

        Raises:
            InvalidName: the name breaks the naming rules.
            NotFound: no such dataset.
        """
        validate_name(name)
        numbers = await self._version_numbers(name)
        if not numbers:
            raise NotFound(f"dataset {name!r} does not exist", dataset=name)
        return await self._load_many([(name, n) for n in numbers])

    async def datasets(self) -> list[Manifest]:
        """The current manifest of every dataset, by name."""
        return [history.current for history in (await self.current_all()).values()]

    async def current_all(self) -> dict[str, DatasetHistory]:
        """Every dataset's current manifest and version numbers, from one LIST.

        Only manifests not seen before are fetched, so calling this on every
        query costs one listing once the cache is warm.
        """
        listed, _ = await self.store.list(CATALOG_PREFIX)
        numbers: dict[str, list[int]] = {}
        for info in listed:
            parsed = _parse_key(info.key)
            if parsed is not None:
                numbers.setdefault(parsed[0], []).append(parsed[1])
        names = sorted(numbers)
        currents = await self._load_many([(n, max(numbers[n])) for n in names])
        return {
            name: DatasetHistory(current, tuple(sorted(numbers[name])))
            for name, current in zip(names, currents, strict=True)
        }

    async def _version_numbers(self, name: str) -> list[int]:
        listed, _ = await self.store.list(f"{CATALOG_PREFIX}{name}/")
        found = (_parse_key(info.key) for info in listed)
        return sorted(p[1] for p in found if p is not None and p[0] == name)

    async def _load(self, name: str, version: int) -> Manifest:
        key = manifest_key(name, version)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        manifest = Manifest.from_json(await self.store.get_bytes(key))
        self._cache[key] = manifest
        return manifest

    async def _load_many(self, wanted: list[tuple[str, int]]) -> list[Manifest]:
        """Manifests in the given order, fetching the uncached ones a few at a time."""
        limit = asyncio.Semaphore(FETCH_CONCURRENCY)

        async def one(name: str, version: int) -> Manifest:
            async with limit:
                return await self._load(name, version)

        return list(await asyncio.gather(*(one(name, version) for name, version in wanted)))

    async def _check_objects(self, refs: Sequence[ObjectRef]) -> None:
        limit = asyncio.Semaphore(HEAD_CONCURRENCY)

        async def head(ref: ObjectRef) -> ObjectInfo | None:
            async with limit:
                try:
                    return await self.store.head(ref.key)
                except NotFound:
                    return None

        infos = await asyncio.gather(*(head(ref) for ref in refs))
        missing = [ref.key for ref, info in zip(refs, infos, strict=True) if info is None]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise MissingObject(f"{len(missing)} object(s) do not exist in storage: {shown}", missing=missing)
        for ref, info in zip(refs, infos, strict=True):
            if info is not None and info.size != ref.size:
                raise InvalidRequest(
                    f"object {ref.key!r} is {info.size} bytes in storage, not {ref.size}",
                    key=ref.key,
                    size=info.size,
                )


def _parse_key(key: str) -> tuple[str, int] | None:
    """(name, version) from a manifest key, None for anything else under the prefix."""
    rest = key[len(CATALOG_PREFIX) :] if key.startswith(CATALOG_PREFIX) else ""
    name, sep, file = rest.partition("/")
    match = _MANIFEST_FILE.fullmatch(file) if sep else None
    if match is None:
        return None
    return name, int(match.group(1))
