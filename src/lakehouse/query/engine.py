"""The query engine: sandboxed DuckDB over every dataset version, JSON or Arrow out."""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from lakehouse.config import Settings
from lakehouse.errors import QueryTimeout
from lakehouse.query.results import Column, IpcChunks, QueryResult, json_rows
from lakehouse.query.sandbox import S3Access, check_statement, open_connection, translate
from lakehouse.query.views import ViewSync
from lakehouse.query.watchdog import WATCHDOG, Alarm
from lakehouse.runner import run_blocking
from lakehouse.storage.base import DATASETS_PREFIX, ObjectStore

if TYPE_CHECKING:
    from lakehouse.catalog import Catalog

log = logging.getLogger("lakehouse.query")

ARROW_BATCH_ROWS = 64 * 1024


class QueryEngine:
    """Runs one read-only statement at a time per cursor over the catalog's datasets."""

    def __init__(self, settings: Settings, store: ObjectStore, catalog: Catalog) -> None:
        self._settings = settings
        self._cfg = settings.queryd
        self._store = store
        self._views = ViewSync(catalog, store.engine_path, self._open)

    async def run(self, sql: str, max_rows: int | None = None) -> QueryResult:
        """Run `sql` and return at most `max_rows` rows (capped by `[queryd] max_rows`).

        Raises:
            ForbiddenStatement: not exactly one read-only statement.
            Forbidden: the query reaches outside the datasets.
            SqlError: DuckDB rejected the query.
            QueryTimeout: it ran past `[queryd] timeout_secs`.
        """
        check_statement(sql)
        limit = min(max_rows if max_rows is not None else self._cfg.max_rows, self._cfg.max_rows)
        conn = self._views.opened()
        if conn is None:
            await self._views.sync()
            return await run_blocking(self._run_json, sql, limit)
        # Start the query on the views as they are while the catalog is checked: when
        # no view moved meanwhile (the usual case) its answer stands, saving a round trip.
        epoch = self._views.epoch
        attempt = Attempt(conn.cursor())
        running = asyncio.ensure_future(run_blocking(self._run_json, sql, limit, attempt))
        try:
            await self._views.sync()
        except BaseException:
            attempt.abandon(running)
            raise
        if self._views.epoch == epoch:
            return await running
        attempt.abandon(running)
        return await run_blocking(self._run_json, sql, limit)

    async def arrow(self, sql: str) -> ArrowStream:
        """Start `sql` and return its result as an Arrow IPC stream, produced batch by batch.

        Errors up to the first batch raise like `run`; the stream is not capped by max_rows.
        """
        check_statement(sql)
        await self._views.sync()
        stream = ArrowStream(self._connection, self._cfg.timeout_secs)
        await run_blocking(stream.start, sql)
        return stream

    def _connection(self) -> duckdb.DuckDBPyConnection:
        return self._views.connection()

    def _open(self, files: list[str]) -> duckdb.DuckDBPyConnection:
        """A sandboxed connection that may read the dataset area and exactly `files`."""
        root = self._store.engine_root().rstrip("/")
        return open_connection(
            [f"{root}/{DATASETS_PREFIX}"],
            files=files,
            threads=self._cfg.threads,
            memory_limit=self._cfg.memory_limit,
            spill_dir=str(Path(tempfile.gettempdir()) / f"lakehouse-query-{os.getpid()}"),
            s3=s3_access(self._settings) if self._settings.storage.backend == "s3" else None,
        )

    def _run_json(self, sql: str, limit: int, attempt: Attempt | None = None) -> QueryResult:
        started = time.perf_counter()
        attempt = attempt if attempt is not None else Attempt(self._connection().cursor())
        cursor = attempt.cursor
        with deadline(attempt, self._cfg.timeout_secs):
            try:
                if attempt.abandoned:
                    raise QueryTimeout("abandoned: the views changed before it ran")
                cursor.execute(sql)
                described = cursor.description or []
                columns = [Column(str(d[0]), str(d[1])) for d in described]
                types = [d[1] for d in described]
                rows: list[list[object]] = []
                truncated = False
                reader = cursor.to_arrow_reader(min(limit + 1, ARROW_BATCH_ROWS))
                for batch in reader:
                    rows.extend(json_rows(batch.slice(0, limit + 1 - len(rows)), types))
                    if len(rows) > limit:
                        truncated = True
                        del rows[limit:]
                        break
            except duckdb.InterruptException:
                raise QueryTimeout(self._timeout_message()) from None
            except duckdb.Error as exc:
                raise translate(exc) from None
        return QueryResult(columns, rows, truncated, round((time.perf_counter() - started) * 1000, 3))

    def _timeout_message(self) -> str:
        return f"the query ran past {self._cfg.timeout_secs:g} s and was stopped"

    def close(self) -> None:
        """Close the DuckDB connection."""
        self._views.close()


class Attempt:
    """A speculative query's cursor, abandoned if the views change before it is answered."""

    def __init__(self, cursor: duckdb.DuckDBPyConnection) -> None:
        self.cursor = cursor
        self.abandoned = False
        self._closed = False
        self._lock = threading.Lock()

    def interrupt(self) -> None:
        """Interrupt the running statement, if the cursor is still open."""
        with self._lock:
            if not self._closed:
                self.cursor.interrupt()

    def abandon(self, running: asyncio.Future[QueryResult]) -> None:
        """Stop the query if it runs (or skip it if it has not started) and drop its outcome."""
        self.abandoned = True
        self.interrupt()
        running.add_done_callback(_drop_outcome)

    def close(self) -> None:
        """Close the cursor; later interrupts do nothing."""
        with self._lock:
            self._closed = True
            self.cursor.close()


def _drop_outcome(running: asyncio.Future[QueryResult]) -> None:
    if not running.cancelled():
        running.exception()  # retrieved, so asyncio does not log it as lost


@contextmanager
def deadline(attempt: Attempt, seconds: float) -> Iterator[Attempt]:
    """`attempt`, interrupted by DuckDB after `seconds`, its cursor closed on exit."""
    alarm = WATCHDOG.arm(seconds, attempt.interrupt)
    try:
        yield attempt
    finally:
        alarm.cancel()
        attempt.close()


class ArrowStream:
    """One query's result as Arrow IPC bytes, read from DuckDB a batch at a time."""

    def __init__(self, connect: Callable[[], duckdb.DuckDBPyConnection], timeout_secs: float) -> None:
        self._connect = connect
        self._timeout = timeout_secs
        self._cursor: duckdb.DuckDBPyConnection | None = None
        self._alarm: Alarm | None = None
        self._reader: pa.RecordBatchReader | None = None
        self._sink = IpcChunks()
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None

    def start(self, sql: str) -> None:
        """Execute `sql` and write the stream's schema message."""
        self._cursor = self._connect().cursor()
        self._alarm = WATCHDOG.arm(self._timeout, self._cursor.interrupt)
        try:
            self._cursor.execute(sql)
            self._reader = self._cursor.to_arrow_reader(ARROW_BATCH_ROWS)
            self._writer = pa.ipc.new_stream(self._sink, self._reader.schema)
        except duckdb.InterruptException:
            self.close()
            raise QueryTimeout(f"the query ran past {self._timeout:g} s and was stopped") from None
        except duckdb.Error as exc:
            self.close()
            raise translate(exc) from None

    def _next(self) -> bytes | None:
        """The next batch's bytes; the end-of-stream marker last; then None."""
        if self._reader is None or self._writer is None:
            return None
        try:
            batch = self._reader.read_next_batch()
        except StopIteration:
            self._writer.close()
            self._reader = None
            return self._sink.take()
        self._writer.write_batch(batch)
        return self._sink.take()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The IPC stream: schema, then one chunk per batch, then the end marker."""
        try:
            yield self._sink.take()
            while True:
                try:
                    data = await run_blocking(self._next)
                except duckdb.Error as exc:
                    # Headers are gone; ending without the end marker tells the client it is cut.
                    log.warning("arrow stream stopped: %s", str(exc).splitlines()[0])
                    return
                if data is None:
                    return
                yield data
        finally:
            self.close()

    def close(self) -> None:
        """Disarm the deadline and release the cursor."""
        if self._alarm is not None:
            self._alarm.cancel()
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None


def s3_access(settings: Settings) -> S3Access:
    """httpfs settings for the configured bucket, from the storage layer's credentials."""
    from urllib.parse import urlsplit

    from lakehouse.storage.s3 import resolve_credentials

    creds = resolve_credentials(settings.storage)
    endpoint = settings.storage.endpoint
    parts = urlsplit(endpoint) if endpoint else None
    return S3Access(
        key_id=creds.access_key_id or "",
        secret=creds.secret_access_key or "",
        session_token=creds.session_token or "",
        region=settings.storage.region,
        endpoint=parts.netloc if parts else "",
        use_ssl=parts.scheme != "http" if parts else True,
        url_style="path" if endpoint else "vhost",
    )
