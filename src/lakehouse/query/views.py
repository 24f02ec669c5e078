"""Dataset views: the current version as `<name>`, every version N as `"<name>@<N>"`.

Before each query the engine asks the catalog which version each dataset is
at (one HEAD of the catalog's change log while nothing moved) and updates
only the views whose dataset moved (or drops those whose dataset is gone),
so versions registered by another process show up without a restart.

Here a view is only data: the object keys it reads and its manifest schema.
The views are kept as one versioned spec; each query worker is sent the
difference between what it has and the current spec before the query it
runs (`diff`), and registers them as Arrow datasets itself. Nothing from a
manifest is ever pasted into SQL.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from lakehouse.errors import NotFound

if TYPE_CHECKING:
    from lakehouse.catalog import Catalog, DatasetHistory, Manifest

ViewSpec = dict[str, Any]  # {"keys": [object keys], "schema": [[column, DuckDB type], ...]}


def view_spec(manifest: Manifest) -> ViewSpec:
    """What a worker needs to build the view of one version."""
    return {
        "keys": [obj.key for obj in manifest.objects],
        "schema": [[col.name, col.type] for col in manifest.schema],
    }


class ViewSync:
    """The spec of every dataset view, kept in step with the catalog."""

    def __init__(self, catalog: Catalog) -> None:
        self._catalog = catalog
        # Per dataset: its current version and when that was made, so a dataset deleted and
        # made again up to the same version number is still seen to have moved.
        self._current: dict[str, tuple[int, str]] = {}
        self.views: dict[str, ViewSpec] = {}
        self.generation = 0
        # The catalog's generation last synced from: the same one means nothing to compare.
        self._seen = -1
        self._lock = asyncio.Lock()

    async def sync(self) -> None:
        """Bring the spec up to date with the catalog (bumps `generation` when it changed)."""
        listing = await self._catalog.current_all()
        if self._catalog.generation == self._seen or _stamps(listing) == self._current:
            self._seen = self._catalog.generation
            return
        async with self._lock:
            listing = await self._catalog.current_all()
            self._seen = self._catalog.generation
            changed = False
            for name, history in listing.items():
                stamp = _stamp(history)
                if self._current.get(name) != stamp:
                    if not await self._same_history(name, history):
                        self._forget(name)  # deleted and made again: none of its old views stands
                    await self._dataset_views(name, history)
                    changed = True
            for gone in set(self._current) - set(listing):
                self._forget(gone)
                changed = True
            self._current = _stamps(listing)
            if changed:
                self.generation += 1

    async def _same_history(self, name: str, history: DatasetHistory) -> bool:
        """Whether `history` continues the one the views were made from (not a re-created dataset)."""
        known = self._current.get(name)
        if known is None:
            return True  # nothing of it is kept yet
        version, created_at = known
        if history.current.version == version:
            return history.current.created_at == created_at
        if history.current.version < version or version not in history.versions:
            return False
        try:
            return (await self._catalog.get(name, version)).created_at == created_at
        except NotFound:
            return False

    def _forget(self, name: str) -> None:
        for view in [v for v in self.views if v == name or v.startswith(f"{name}@")]:
            del self.views[view]

    async def _dataset_views(self, name: str, history: DatasetHistory) -> None:
        self.views[name] = view_spec(history.current)
        for number in history.versions:
            key = f"{name}@{number}"
            if key in self.views:
                continue
            manifest = history.current if number == history.current.version else None
            if manifest is None:
                try:
                    manifest = await self._catalog.get(name, number)
                except NotFound:
                    continue
            self.views[key] = view_spec(manifest)

    def diff(self, have: dict[str, ViewSpec]) -> tuple[dict[str, ViewSpec], list[str]]:
        """The views to set and to drop on a worker that has `have`."""
        to_set = {name: spec for name, spec in self.views.items() if have.get(name) != spec}
        to_drop = [name for name in have if name not in self.views]
        return to_set, to_drop


def _stamp(history: DatasetHistory) -> tuple[int, str]:
    return history.current.version, history.current.created_at


def _stamps(listing: dict[str, DatasetHistory]) -> dict[str, tuple[int, str]]:
    return {name: _stamp(history) for name, history in listing.items()}
