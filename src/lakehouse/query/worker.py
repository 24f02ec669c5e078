"""A query worker process: the only place user SQL is parsed, prepared and run.

Started by `pool.py` with multiprocessing's "spawn" context. Before it opens
DuckDB it drops every credential-looking variable from its environment,
moves to "/", asks the kernel to kill it when queryd dies, lowers its CPU
priority (`[queryd] worker_nice`) below the server's, and caps its own
data segment (`RLIMIT_DATA`) at its size so far plus `memory_limit` and a
margin, so an allocation DuckDB does not account for fails instead of
growing the process. Credentials arrive over the pipe, never in argv or env.

Datasets are views over DuckDB's own Parquet reader, whose only filesystem
is `files.DatasetFiles`: the views' objects, read-only, through pyarrow (local
folder or S3); DuckDB's local filesystem is off (`sandbox.open_connection`).
Each query runs alone, inside BEGIN ... ROLLBACK, interrupted by a watchdog at
its deadline.
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import resource
import signal
import time
from multiprocessing.connection import Connection
from typing import Any

from lakehouse.query import priority

log = logging.getLogger("lakehouse.query.worker")

ARROW_BATCH_ROWS = 64 * 1024
_SECRET_ENV = ("KEY", "SECRET", "TOKEN", "PASSWORD", "CREDENTIAL")


def main(conn: Connection) -> None:
    """The worker's life: read its settings, open the sandbox, answer queries until the pipe closes."""
    init: dict[str, Any] = json.loads(conn.recv_bytes())
    _harden(int(init["parent_pid"]))
    # Every thread, the spawn's own included; those DuckDB and pyarrow start inherit it.
    nice = int(init.get("nice", priority.current()))
    priority.renice(os.getpid(), nice)
    worker = Worker(init)
    priority.renice(os.getpid(), nice)  # threads started by threads that were there before
    conn.send_bytes(b"R")
    while True:
        try:
            frame = conn.recv_bytes()
        except (EOFError, OSError):
            return
        worker.answer(conn, frame)


def _harden(parent_pid: int) -> None:
    """No secrets in the environment, cwd "/", and death with the parent."""
    for name in list(os.environ):
        upper = name.upper()
        if upper.startswith(("AWS_", "LAKEHOUSE_")) or any(word in upper for word in _SECRET_ENV):
            del os.environ[name]
    os.chdir("/")
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the pipe's EOF ends the worker instead
        pass
    if os.getppid() != parent_pid:
        os._exit(0)


def data_segment_bytes() -> int:
    """This process's data segment size now (VmData), or 0 where /proc is absent."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Worker:
    """One sandboxed DuckDB connection and the dataset views registered on it."""

    def __init__(self, init: dict[str, Any]) -> None:
        import pyarrow as pa

        from lakehouse.query.files import DatasetFiles, object_store
        from lakehouse.query.sandbox import open_connection

        threads = int(init["threads"])
        pa.set_cpu_count(threads)
        pa.set_io_thread_count(max(4, threads))
        self._files = DatasetFiles(object_store(init["storage"]))
        self._hidden: list[str] = [str(h) for h in init.get("hidden", [])]
        self._conn = open_connection(
            threads=threads, memory_limit=str(init["memory_limit"]), files=self._files
        )
        self._conn.execute("SELECT 1").fetchall()
        self._specs: dict[str, dict[str, Any]] = {}
        self._built: set[str] = set()
        limit = int(init.get("rlimit_bytes") or 0)
        if limit > 0:
            cap = data_segment_bytes() + limit
            resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))

    def answer(self, conn: Connection, frame: bytes) -> None:
        """Run one query message and send its answer frames."""
        from lakehouse.errors import LakehouseError, SqlError
        from lakehouse.query import protocol

        try:
            header, sql = protocol.parse_query(frame)
            self._apply(header.get("views", {}), header.get("drop", []))
            self._run(conn, header, sql)
        except LakehouseError as exc:
            conn.send_bytes(protocol.error_frame(exc.code, self._scrub(exc.message)))
        except MemoryError as exc:
            conn.send_bytes(protocol.error_frame(SqlError.code, "out of memory: " + self._scrub(str(exc))))
        except Exception as exc:  # pyarrow IO errors and the like: the query failed, the worker lives
            conn.send_bytes(protocol.error_frame(SqlError.code, self._scrub(f"{type(exc).__name__}: {exc}")))

    def _scrub(self, text: str) -> str:
        from lakehouse.query.sandbox import scrub

        return scrub(text, self._hidden)

    def _apply(self, views: dict[str, dict[str, Any]], drop: list[str]) -> None:
        """Take the new view specs and drop `drop`; views are built when a query first names them."""
        if not views and not drop:
            return  # most queries: nothing moved since this worker's last one
        for name in (*drop, *views):
            if name in self._built:
                self._built.discard(name)
                self._drop(name)
        for name in drop:
            self._specs.pop(name, None)
        self._specs.update(views)
        # Exactly the objects of the views there are now; none other opens.
        self._files.allowed = frozenset(key for spec in self._specs.values() for key in spec["keys"])

    def _build_for(self, sql: str) -> None:
        """Build the views `sql` reads (all of them when DuckDB cannot tell, e.g. `SHOW TABLES`).

        Building a view opens its files, so with a thousand datasets building
        only what a query names keeps the first query fast.
        """
        import duckdb

        try:
            named = self._conn.get_table_names(sql, qualified=False)
        except duckdb.Error:
            named = set()
        wanted = [n for n in named if n in self._specs] if named else list(self._specs)
        for name in wanted:
            if name in self._built:
                continue
            try:
                self._relation(self._specs[name]).create_view(name, replace=True)
                self._built.add(name)
            except Exception as exc:  # one unreadable dataset must not stop every query
                log.warning("dataset view %s not created: %s", name, self._scrub(str(exc)))

    def _drop(self, name: str) -> None:
        from lakehouse.query.sandbox import identifier

        # View names are the catalog's (dataset names and "name@N"), quoted all the same.
        self._conn.execute(f"DROP VIEW IF EXISTS {identifier(name)}")

    def _relation(self, spec: dict[str, Any]) -> Any:
        """DuckDB's own Parquet reader over the view's objects, or an empty relation of its schema."""
        import duckdb

        from lakehouse.query.files import dataset_url

        keys = [str(k) for k in spec["keys"]]
        if keys:
            return self._conn.read_parquet([dataset_url(key) for key in keys])
        # No objects: the manifest's schema, the types parsed by DuckDB as types (never
        # pasted into SQL).
        columns = [
            duckdb.ConstantExpression(None).cast(duckdb.sqltype(str(kind))).alias(str(col))
            for col, kind in spec["schema"]
        ]
        if not columns:
            columns = [duckdb.ConstantExpression(None).alias("_")]
        return self._conn.sql("FROM range(0)").select(*columns)

    def _run(self, conn: Connection, header: dict[str, Any], sql: str) -> None:
        import duckdb

        from lakehouse.errors import QueryTimeout
        from lakehouse.query import protocol
        from lakehouse.query.sandbox import check_statement, translate
        from lakehouse.query.watchdog import WATCHDOG

        timeout = float(header["timeout"])
        alarm = WATCHDOG.arm(timeout, self._conn.interrupt)
        began = False
        try:
            check_statement(self._conn, sql)
            self._build_for(sql)  # only after the statement passed the check
            self._conn.execute("BEGIN TRANSACTION")
            began = True
            self._conn.execute(sql)
            if header.get("format") == "arrow":
                self._stream(conn)
            else:
                conn.send_bytes(protocol.json_frame(self._json(int(header["limit"]))))
        except duckdb.InterruptException:
            raise QueryTimeout(f"the query ran past {timeout:g} s and was stopped") from None
        except duckdb.Error as exc:
            raise translate(exc) from None
        finally:
            alarm.cancel()
            if began:
                self._rollback()

    def _rollback(self) -> None:
        import duckdb

        try:
            self._conn.execute("ROLLBACK")
        except duckdb.Error as exc:  # the statement ended the transaction itself
            log.warning("query transaction was not open at its end: %s", str(exc).splitlines()[0])

    def _json(self, limit: int) -> dict[str, Any]:
        from lakehouse.query.results import json_rows

        started = time.perf_counter()
        described = self._conn.description or []
        types = [d[1] for d in described]
        rows: list[list[object]] = []
        truncated = False
        reader = self._conn.to_arrow_reader(min(limit + 1, ARROW_BATCH_ROWS))
        for batch in reader:
            rows.extend(json_rows(batch.slice(0, limit + 1 - len(rows)), types))
            if len(rows) > limit:
                truncated = True
                del rows[limit:]
                break
        return {
            "columns": [[str(d[0]), str(d[1])] for d in described],
            "rows": rows,
            "truncated": truncated,
            "worker_ms": round((time.perf_counter() - started) * 1000, 3),
        }

    def _stream(self, conn: Connection) -> None:
        import pyarrow as pa

        from lakehouse.query import protocol
        from lakehouse.query.results import IpcChunks

        reader = self._conn.to_arrow_reader(ARROW_BATCH_ROWS)
        sink = IpcChunks()
        writer = pa.ipc.new_stream(sink, reader.schema)
        conn.send_bytes(protocol.ARROW_SCHEMA + sink.take())
        for batch in reader:
            writer.write_batch(batch)
            conn.send_bytes(protocol.ARROW_BATCH + sink.take())
        writer.close()
        conn.send_bytes(protocol.ARROW_END + sink.take())
