"""Dataset views: the current version as `<name>`, every version N as `"<name>@<N>"`.

Before each query the engine asks the catalog which version each dataset is
at (one cheap listing) and rebuilds only the views whose dataset moved, so
versions registered by another process show up without a restart.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import duckdb

from lakehouse.errors import NotFound
from lakehouse.query.sandbox import identifier, literal
from lakehouse.runner import run_blocking

if TYPE_CHECKING:
    from lakehouse.catalog import Catalog, DatasetHistory, Manifest

log = logging.getLogger("lakehouse.query")


@dataclass
class ViewState:
    """Which version each dataset's plain view points at, and which version views exist."""

    current: dict[str, int] = field(default_factory=dict)
    versions: dict[str, set[int]] = field(default_factory=dict)


def view_sql(view: str, paths: list[str], schema: list[tuple[str, str]]) -> str:
    """DDL for a view over Parquet files; with no files, an empty relation of the schema."""
    if paths:
        files = ", ".join(literal(p) for p in paths)
        body = f"SELECT * FROM read_parquet([{files}])"
    else:
        cols = ", ".join(f"CAST(NULL AS {kind}) AS {identifier(col)}" for col, kind in schema) or "NULL"
        body = f"SELECT {cols} WHERE false"
    return f"CREATE OR REPLACE VIEW {identifier(view)} AS {body}"


class ViewSync:
    """Keeps the connection's views in step with the catalog."""

    def __init__(
        self,
        catalog: Catalog,
        engine_path: Callable[[str], str],
        conn: Callable[[], duckdb.DuckDBPyConnection],
    ) -> None:
        self._catalog = catalog
        self._engine_path = engine_path
        self._conn = conn
        self._state = ViewState()
        self._lock = asyncio.Lock()
        self._ddl_lock = threading.Lock()

    async def sync(self) -> None:
        """Create or replace the views of every dataset whose version changed."""
        listing = await self._catalog.current_all()
        if {n: h.current.version for n, h in listing.items()} == self._state.current:
            return
        async with self._lock:
            listing = await self._catalog.current_all()
            ddl: list[str] = []
            for name, history in listing.items():
                if self._state.current.get(name) != history.current.version:
                    ddl.extend(await self._dataset_ddl(name, history))
            for gone in set(self._state.current) - set(listing):
                views = [gone] + [f"{gone}@{v}" for v in self._state.versions.pop(gone, set())]
                ddl.extend(f"DROP VIEW IF EXISTS {identifier(view)}" for view in views)
            if ddl:
                await run_blocking(self._apply, ddl)
            self._state.current = {n: h.current.version for n, h in listing.items()}

    async def _dataset_ddl(self, name: str, history: DatasetHistory) -> list[str]:
        """Views for the versions of `name` not seen yet, and its plain view."""
        have = self._state.versions.setdefault(name, set())
        ddl = [self._ddl(name, history.current)]
        for number in history.versions:
            if number not in have:
                manifest = history.current if number == history.current.version else None
                if manifest is None:
                    try:
                        manifest = await self._catalog.get(name, number)
                    except NotFound:
                        continue
                ddl.append(self._ddl(f"{name}@{number}", manifest))
                have.add(number)
        return ddl

    def _ddl(self, view: str, manifest: Manifest) -> str:
        paths = [self._engine_path(obj.key) for obj in manifest.objects]
        return view_sql(view, paths, [(col.name, col.type) for col in manifest.schema])

    def _apply(self, ddl: list[str]) -> None:
        with self._ddl_lock:
            conn = self._conn()
            for statement in ddl:
                try:
                    conn.execute(statement)
                except duckdb.Error as exc:
                    # One dataset DuckDB cannot read (e.g. registered files outside the
                    # dataset area) must not stop every query: it alone has no view.
                    log.warning("dataset view not created: %s (%s)", exc, statement[:200])
