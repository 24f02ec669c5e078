"""A dataset's life beyond register: the upgrade to Iceberg, and expiring old versions.

Upgrade. Release 0.1 kept only JSON manifests. Each one without a snapshot
is given one, oldest version first, each on top of the previous version's
metadata, and its manifest is rewritten in place with `If-Match`: two
processes upgrading at once cannot both rewrite one version (the loser reads
the winner's), a crash leaves every version either upgraded or not, and
running it again only finishes what is left. Version numbers never change.

Expire. The versions to drop (never the current one) lose their manifests,
their snapshots leave the table's current metadata (the current manifest is
rewritten with `If-Match` to name the new metadata file), and then the files
that only they used are deleted: data files, manifest lists, manifests and
metadata files. Only files known to belong to an expired version are ever
deleted, so a file an ingest has just written for its next version is safe.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from lakehouse.catalog import iceberg
from lakehouse.catalog.manifest import Manifest, manifest_key
from lakehouse.errors import Busy, InvalidRequest, NotFound
from lakehouse.runner import run_blocking
from lakehouse.storage.base import DATASETS_PREFIX, list_all

if TYPE_CHECKING:
    from lakehouse.catalog.catalog import Catalog

log = logging.getLogger("lakehouse.catalog")
MAX_ROUNDS = 16


@dataclass(frozen=True)
class Expired:
    """What an expire removed."""

    versions: tuple[int, ...]
    bytes_freed: int


async def upgrade(catalog: Catalog, name: str) -> int:
    """Give every version of `name` its Iceberg snapshot; returns how many were upgraded.

    A dataset whose stored columns Iceberg cannot hold (or that no longer
    validate) is left as it is and logged: it stays readable by SQL.
    """
    await iceberg.ready()
    done = 0
    parent: Manifest | None = None
    for number, etag in sorted((await catalog._version_etags(name)).items()):
        manifest = await catalog._load(name, number, etag)
        for _ in range(MAX_ROUNDS):
            if manifest.metadata_key is not None:
                break
            try:
                staged = await run_blocking(
                    catalog.tables.stage,
                    name,
                    version=number,
                    columns=manifest.schema,
                    parent=parent.metadata_key if parent else None,
                    before=parent.objects if parent else (),
                    after=manifest.objects,
                )
            except InvalidRequest as exc:
                log.warning("dataset %s version %d stays without an Iceberg snapshot: %s", name, number, exc)
                return done
            upgraded = dataclasses.replace(
                manifest, snapshot_id=staged.snapshot_id, metadata_key=staged.metadata_key
            )
            if await catalog._rewrite(upgraded, etag):
                manifest = upgraded
                done += 1
                break
            await run_blocking(catalog.tables.discard, staged)
            etag = (await catalog.store.head(manifest_key(name, number))).etag
            manifest = await catalog._load(name, number, etag)
        parent = manifest
    return done


async def upgrade_all(catalog: Catalog) -> int:
    """Upgrade every dataset; returns how many versions were upgraded."""
    total = 0
    for name, history in sorted((await catalog.current_all()).items()):
        # Versions are upgraded oldest first, so a current version with a snapshot means all have one.
        if history.current.metadata_key is None:
            total += await upgrade(catalog, name)
    if total:
        log.info("gave %d dataset version(s) written by an earlier release their Iceberg snapshots", total)
    return total


async def expire(
    catalog: Catalog, name: str, *, keep_last: int | None = None, older_than: datetime | None = None
) -> Expired:
    """Remove the versions before the last `keep_last`, or those created before `older_than`.

    Raises:
        InvalidRequest: neither or both given, or `keep_last` below 1.
        NotFound: no such dataset.
        Busy: the dataset kept changing while it was being expired.
    """
    if (keep_last is None) == (older_than is None):
        raise InvalidRequest("give exactly one of keep_last or older_than")
    if keep_last is not None and keep_last < 1:
        raise InvalidRequest(f"keep_last must be 1 or more (got {keep_last}): the current version stays")
    for _ in range(MAX_ROUNDS):
        history = await catalog.versions(name)
        current = history[-1]
        if current.metadata_key is None:
            await upgrade(catalog, name)
            continue
        if keep_last is not None:
            doomed = history[:-keep_last] if len(history) > keep_last else []
        else:
            assert older_than is not None
            doomed = [m for m in history[:-1] if _created(m) < older_than]
        if not doomed:
            return Expired((), 0)
        result = await _expire(catalog, name, current, doomed, [m for m in history if m not in doomed])
        if result is not None:
            return result
    raise Busy(f"dataset {name!r} changed too often while being expired; retry", dataset=name)


async def _expire(
    catalog: Catalog, name: str, current: Manifest, doomed: list[Manifest], remaining: list[Manifest]
) -> Expired | None:
    await iceberg.ready()
    from pyiceberg.table.update import RemoveSnapshotsUpdate, update_table_metadata

    tables = catalog.tables
    assert current.metadata_key is not None
    base = await run_blocking(tables.metadata, current.metadata_key)
    present = {s.snapshot_id for s in base.snapshots}
    gone = [m.snapshot_id for m in doomed if m.snapshot_id in present]
    doomed_files: set[str] = set()
    for snapshot_id in gone:
        assert snapshot_id is not None
        doomed_files.update(await run_blocking(tables.manifest_files, base, snapshot_id))
    removal = RemoveSnapshotsUpdate.model_validate({"snapshot-ids": gone})
    pruned = update_table_metadata(base, (removal,)) if gone else base
    metadata_key = await run_blocking(tables.write, name, current.version, pruned)
    etag = (await catalog.store.head(manifest_key(name, current.version))).etag
    if not await catalog._rewrite(dataclasses.replace(current, metadata_key=metadata_key), etag):
        await catalog.store.delete(metadata_key)
        return None
    for manifest in doomed:
        catalog._forget(name, manifest.version)
        with contextlib.suppress(NotFound):
            await catalog.store.delete(manifest_key(name, manifest.version))
    keep: set[str] = {metadata_key}
    for manifest in remaining:
        keep.update(o.key for o in manifest.objects)
        if manifest.metadata_key and manifest.version != current.version:
            keep.add(manifest.metadata_key)
    for snapshot in pruned.snapshots:
        keep.update(await run_blocking(tables.manifest_files, pruned, snapshot.snapshot_id))
    # A version registered meanwhile may list a file again: keep whatever it uses too.
    for number in await catalog._version_etags(name):
        if number > current.version:
            newer = await catalog._load(name, number)
            keep.update(o.key for o in newer.objects)
    for manifest in doomed:
        doomed_files.update(o.key for o in manifest.objects)
        if manifest.metadata_key:
            doomed_files.add(manifest.metadata_key)
    doomed_files.add(current.metadata_key)
    area = f"{DATASETS_PREFIX}{name}/"
    sizes = {info.key: info.size for info in await list_all(catalog.store, area)}
    freed = 0
    for key in sorted(doomed_files - keep):
        if key in sizes and key.startswith(area):
            try:
                await catalog.store.delete(key)
                freed += sizes[key]
            except NotFound:
                pass
    await catalog.changes.announce(name)
    return Expired(tuple(m.version for m in doomed), freed)


def _created(manifest: Manifest) -> datetime:
    return datetime.fromisoformat(manifest.created_at.replace("Z", "+00:00"))
