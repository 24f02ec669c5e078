"""Dataset views: the current version as `<name>`, every version N as `"<name>@<N>"`.

Before each query the engine asks the catalog which version each dataset is
at (one cheap listing) and rebuilds only the views whose dataset moved, so
versions registered by another process show up without a restart.

The views live in the one sandboxed connection every query cursor comes from.
That connection may read the dataset area, plus exactly the files outside it
that some manifest names (objects uploaded through storaged and registered).
When that set of files changes, a fresh locked connection is opened with the
new list, every view is created on it, and it replaces the old one; queries
already running keep the old connection until they finish.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb

from lakehouse.errors import NotFound
from lakehouse.query.sandbox import identifier, literal
from lakehouse.runner import run_blocking
from lakehouse.storage.base import DATASETS_PREFIX

if TYPE_CHECKING:
    from lakehouse.catalog import Catalog, DatasetHistory, Manifest

log = logging.getLogger("lakehouse.query")

OpenConnection = Callable[[list[str]], duckdb.DuckDBPyConnection]


@dataclass(frozen=True)
class View:
    """One view's DDL and the files it reads from outside the dataset area."""

    ddl: str
    outside: frozenset[str]


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
    """Owns the sandboxed connection and keeps its views in step with the catalog."""

    def __init__(
        self, catalog: Catalog, engine_path: Callable[[str], str], open_conn: OpenConnection
    ) -> None:
        self._catalog = catalog
        self._engine_path = engine_path
        self._open = open_conn
        self._current: dict[str, int] = {}
        self._views: dict[str, View] = {}
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._outside: frozenset[str] = frozenset()
        self._lock = asyncio.Lock()
        self._conn_lock = threading.Lock()
        # Bumped when a sync starts changing views and again when it is done: a query
        # that saw the same epoch before it started and after a sync ran on current views.
        self.epoch = 0

    def opened(self) -> duckdb.DuckDBPyConnection | None:
        """The current connection if it is open already (never opens it)."""
        return self._conn

    def connection(self) -> duckdb.DuckDBPyConnection:
        """The connection to take query cursors from (opened with every known view on first use)."""
        conn = self._conn
        if conn is not None:
            return conn
        with self._conn_lock:
            if self._conn is None:
                self._conn = self._build(self._outside)
            return self._conn

    async def sync(self) -> None:
        """Create or replace the views of every dataset whose version changed."""
        listing = await self._catalog.current_all()
        if {n: h.current.version for n, h in listing.items()} == self._current:
            return
        async with self._lock:
            self.epoch += 1
            try:
                await self._update()
            finally:
                self.epoch += 1

    async def _update(self) -> None:
        """The body of `sync` once something moved, under its lock."""
        listing = await self._catalog.current_all()
        ddl: list[str] = []
        for name, history in listing.items():
            if self._current.get(name) != history.current.version:
                ddl.extend(await self._dataset_views(name, history))
        for gone in set(self._current) - set(listing):
            views = [v for v in self._views if v == gone or v.startswith(f"{gone}@")]
            for view in views:
                del self._views[view]
            ddl.extend(f"DROP VIEW IF EXISTS {identifier(view)}" for view in views)
        outside = frozenset().union(*(view.outside for view in self._views.values()))
        if outside != self._outside:
            await run_blocking(self._swap, outside)
        elif ddl:
            await run_blocking(self._apply, ddl)
        self._current = {n: h.current.version for n, h in listing.items()}

    async def _dataset_views(self, name: str, history: DatasetHistory) -> list[str]:
        """Record the views of `name` not seen yet and its plain view; return their DDL."""
        made = [self._view(name, history.current)]
        for number in history.versions:
            if f"{name}@{number}" not in self._views:
                manifest = history.current if number == history.current.version else None
                if manifest is None:
                    try:
                        manifest = await self._catalog.get(name, number)
                    except NotFound:
                        continue
                made.append(self._view(f"{name}@{number}", manifest))
        return [view.ddl for view in made]

    def _view(self, name: str, manifest: Manifest) -> View:
        keys = [obj.key for obj in manifest.objects]
        outside = frozenset(self._engine_path(k) for k in keys if not k.startswith(DATASETS_PREFIX))
        schema = [(col.name, col.type) for col in manifest.schema]
        view = View(view_sql(name, [self._engine_path(k) for k in keys], schema), outside)
        self._views[name] = view
        return view

    def _build(self, outside: frozenset[str]) -> duckdb.DuckDBPyConnection:
        """A fresh connection allowed `outside` besides the dataset area, with every view."""
        conn = self._open(sorted(outside))
        execute_all(conn, [view.ddl for view in self._views.values()])
        return conn

    def _swap(self, outside: frozenset[str]) -> None:
        """Replace the connection by one allowed exactly `outside`; running cursors keep the old one."""
        with self._conn_lock:
            if self._conn is not None:
                # Not closed: cursors of queries still running hold it, and it goes when they do.
                self._conn = self._build(outside)
            self._outside = outside

    def _apply(self, ddl: list[str]) -> None:
        with self._conn_lock:
            if self._conn is not None:  # otherwise the views are made when it opens
                execute_all(self._conn, ddl)

    def close(self) -> None:
        """Close the current connection."""
        with self._conn_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def execute_all(conn: duckdb.DuckDBPyConnection, ddl: list[str]) -> None:
    """Run each statement; one that DuckDB refuses is logged and skipped."""
    for statement in ddl:
        try:
            conn.execute(statement)
        except duckdb.Error as exc:
            # One dataset DuckDB cannot read must not stop every query: it alone has no view.
            log.warning("dataset view not created: %s (%s)", exc, statement[:200])
