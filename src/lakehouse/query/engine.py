"""The query engine: user SQL runs in sandboxed worker processes, JSON or Arrow comes back.

The server process never parses, prepares or runs a statement: it keeps the
dataset views in step with the catalog (`views.py`), picks a free worker
(`pool.py`), sends it the views it lacks and the query, and waits on the
pipe off the event loop. The worker interrupts its own query at `[queryd]
timeout_secs`; a worker that has not answered a second later is killed
(some DuckDB functions ignore interrupts) and replaced, and its query is a
408. A worker that dies on its own, in practice from its memory cap, makes
its query a 400 naming memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from lakehouse.config import ConfigError, Settings
from lakehouse.errors import (
    ERRORS_BY_CODE,
    LakehouseError,
    QueryTimeout,
    SqlError,
)
from lakehouse.query import protocol
from lakehouse.query.pool import WorkerPool, WorkerProcess
from lakehouse.query.results import Column, QueryResult
from lakehouse.query.views import ViewSync
from lakehouse.runner import run_in_pool
from lakehouse.storage.base import ObjectStore

if TYPE_CHECKING:
    from lakehouse.catalog import Catalog

log = logging.getLogger("lakehouse.query")

GRACE_SECS = 1.0  # past the timeout, before a silent worker is killed
_UNITS = {"": 1, "B": 1, "BYTES": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS |= {"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def memory_bytes(text: str) -> int:
    """A DuckDB memory size ("2GB", "512MiB") in bytes.

    Raises:
        ConfigError: not a size DuckDB and queryd both understand.
    """
    found = _SIZE.match(text)
    unit = found[2].upper() if found else ""
    if found is None or unit not in _UNITS:
        raise ConfigError(f"[queryd] memory_limit {text!r} is not a size such as '2GB' or '512MiB'")
    return int(float(found[1]) * _UNITS[unit])


def rlimit_margin(limit: int) -> int:
    """How far past DuckDB's own limit a worker's data segment may grow (allocator slack, pyarrow)."""
    return limit + max(512 * 2**20, limit // 2)


class QueryEngine:
    """Runs one read-only statement at a time per worker over the catalog's datasets."""

    def __init__(self, settings: Settings, store: ObjectStore, catalog: Catalog) -> None:
        self._settings = settings
        self._cfg = settings.queryd
        limit = memory_bytes(self._cfg.memory_limit)
        storage, hidden = _worker_storage(settings, store)
        self._pool = WorkerPool(
            {
                "threads": self._cfg.threads,
                "memory_limit": self._cfg.memory_limit,
                "rlimit_bytes": rlimit_margin(limit),
                "storage": storage,
                "hidden": hidden,
            },
            self._cfg.workers,
            max_size=self._cfg.max_workers,
            long_secs=self._cfg.long_query_secs,
            nice=self._cfg.worker_nice,
            long_nice=self._cfg.long_query_nice,
        )
        self._views = ViewSync(catalog)

    def start(self) -> None:
        """Start the workers in the background (on the running event loop)."""
        self._pool.start()

    async def run(self, sql: str, max_rows: int | None = None) -> QueryResult:
        """Run `sql` and return at most `max_rows` rows (capped by `[queryd] max_rows`).

        Raises:
            ForbiddenStatement: not exactly one read-only statement.
            Forbidden: the query reaches outside the datasets.
            SqlError: DuckDB rejected the query, or it ran out of memory.
            QueryTimeout: it ran past `[queryd] timeout_secs`.
        """
        started = time.perf_counter()
        limit = min(max_rows if max_rows is not None else self._cfg.max_rows, self._cfg.max_rows)
        worker, frame = await self._prepare(sql, "json", limit)
        timer = self._arm(worker)
        try:
            reply = await run_in_pool("query", _exchange_json, worker, frame)
        except (EOFError, OSError):
            timer.cancel()
            self._pool.discard(worker)
            raise self._died(worker) from None
        timer.cancel()
        self._pool.release(worker)
        if isinstance(reply, LakehouseError):
            raise reply
        columns = [Column(str(name), str(kind)) for name, kind in reply["columns"]]
        elapsed = round((time.perf_counter() - started) * 1000, 3)
        return QueryResult(columns, reply["rows"], bool(reply["truncated"]), elapsed)

    async def arrow(self, sql: str) -> ArrowStream:
        """Start `sql` and return its result as an Arrow IPC stream, produced batch by batch.

        Errors up to the first batch raise like `run`; the stream is not capped by max_rows.
        """
        worker, frame = await self._prepare(sql, "arrow", 0)
        timer = self._arm(worker)
        try:
            first = await run_in_pool("query", worker.exchange, frame)
        except (EOFError, OSError):
            timer.cancel()
            self._pool.discard(worker)
            raise self._died(worker) from None
        if first[:1] == protocol.ERROR:
            timer.cancel()
            self._pool.release(worker)
            raise _error(first[1:])
        return ArrowStream(self._pool, worker, first[1:], timer)

    async def _prepare(self, sql: str, fmt: str, limit: int) -> tuple[WorkerProcess, bytes]:
        """Views up to date, a free worker, and the query message for it (views it lacks included)."""
        await self._views.sync()
        worker = await self._pool.acquire(self._cfg.timeout_secs)
        header: dict[str, Any] = {"format": fmt, "limit": limit, "timeout": self._cfg.timeout_secs}
        if worker.generation != self._views.generation:
            to_set, to_drop = self._views.diff(worker.views)
            header |= {"views": to_set, "drop": to_drop}
            worker.views = dict(self._views.views)
            worker.generation = self._views.generation
        return worker, protocol.query_frame(header, sql)

    def _arm(self, worker: WorkerProcess) -> asyncio.TimerHandle:
        """Kill `worker` if it is still busy past the timeout plus the grace period."""
        loop = asyncio.get_running_loop()
        return loop.call_later(self._cfg.timeout_secs + GRACE_SECS, worker.kill)

    def _died(self, worker: WorkerProcess) -> LakehouseError:
        if worker.killed:
            return QueryTimeout(f"the query ran past {self._cfg.timeout_secs:g} s and was stopped")
        code = worker.proc.exitcode
        log.warning("query worker died (exit %s) while running a query", code)
        return SqlError(
            f"the query ran out of memory: its worker process stopped past the memory limit "
            f"({self._cfg.memory_limit} plus a margin; exit {code})"
        )

    async def close(self) -> None:
        """Stop the workers."""
        await self._pool.close()


def _exchange_json(worker: WorkerProcess, frame: bytes) -> dict[str, Any] | LakehouseError:
    """Send the query and read its JSON answer (on a query-pool thread)."""
    reply = worker.exchange(frame)
    if reply[:1] == protocol.JSON:
        data: dict[str, Any] = json.loads(reply[1:])
        return data
    if reply[:1] == protocol.ERROR:
        return _error(reply[1:])
    return SqlError("the query worker answered out of turn")


def _error(payload: bytes) -> LakehouseError:
    """The typed error a worker sent."""
    data = json.loads(payload)
    cls = ERRORS_BY_CODE.get(str(data.get("code")), SqlError)
    return cls(str(data.get("message", "")))


class ArrowStream:
    """One query's result as Arrow IPC bytes, received from its worker a batch at a time."""

    def __init__(
        self, pool: WorkerPool, worker: WorkerProcess, schema: bytes, timer: asyncio.TimerHandle
    ) -> None:
        self._pool = pool
        self._worker: WorkerProcess | None = worker
        self._schema = schema
        self._timer = timer

    async def chunks(self) -> AsyncIterator[bytes]:
        """The IPC stream: schema, then one chunk per batch, then the end marker."""
        finished = False
        try:
            yield self._schema
            while self._worker is not None:
                try:
                    frame = await run_in_pool("query", self._worker.recv)
                except (EOFError, OSError):
                    log.warning("arrow stream stopped: its worker ended (past the time or memory limit)")
                    return
                tag, data = frame[:1], frame[1:]
                if tag == protocol.ERROR:
                    # Headers are gone; ending without the end marker tells the client it is cut.
                    finished = True
                    log.warning("arrow stream stopped: %s", _error(data).message.splitlines()[0])
                    return
                if tag == protocol.ARROW_END:
                    finished = True
                    yield data
                    return
                yield data
        finally:
            self._finish(finished)

    def _finish(self, finished: bool) -> None:
        self._timer.cancel()
        worker, self._worker = self._worker, None
        if worker is None:
            return
        if finished:
            self._pool.release(worker)
        else:  # abandoned mid-stream: the worker would keep sending, so it goes
            self._pool.discard(worker)

    def close(self) -> None:
        """Give the worker back (or stop it, if its stream was not read to the end)."""
        self._finish(False)


def _worker_storage(settings: Settings, store: ObjectStore) -> tuple[dict[str, Any], list[str]]:
    """How a worker reaches the objects (credentials included), and the strings to scrub from errors."""
    import os
    from pathlib import Path

    hidden = [store.engine_root(), str(Path(settings.storage.root).resolve()), os.getcwd()]
    if settings.storage.backend != "s3":
        return {"backend": "local", "root": store.engine_root()}, hidden
    from urllib.parse import urlsplit

    from lakehouse.storage.s3 import resolve_credentials

    creds = resolve_credentials(settings.storage)
    endpoint = settings.storage.endpoint
    parts = urlsplit(endpoint) if endpoint else None
    storage = {
        "backend": "s3",
        "bucket": settings.storage.bucket,
        "region": settings.storage.region,
        "access_key": creds.access_key_id or "",
        "secret_key": creds.secret_access_key or "",
        "session_token": creds.session_token or "",
        "endpoint": parts.netloc if parts else "",
        "scheme": parts.scheme if parts else "https",
    }
    hidden += [creds.secret_access_key or "", creds.access_key_id or "", creds.session_token or ""]
    return storage, [h for h in hidden if h and h != "/"]
