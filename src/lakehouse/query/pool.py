"""queryd's side of the query workers: a small pool of spawned processes, one query each at a time.

Workers start in the background when queryd starts (a first query waits
for one to be ready). A worker that dies, or that queryd kills because its
query ran past the timeout plus a grace period, is replaced at once.
Waiting on a worker's pipe happens on the "query" thread pool, never on the
event loop, and no other kind of work shares that pool.
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import os
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from lakehouse.errors import QueryTimeout, Unavailable
from lakehouse.query import protocol
from lakehouse.query.worker import main as worker_main
from lakehouse.runner import run_in_pool

log = logging.getLogger("lakehouse.query")

STARTUP_SECS = 120.0  # how long a starting worker may take to say it is ready
RESPAWN_PAUSE_SECS = 1.0  # after a worker failed to start, before the next try


class WorkerProcess:
    """One worker process, its pipe, and the views it has been sent."""

    def __init__(self, ctx: Any, init: dict[str, Any]) -> None:
        pipe: tuple[Connection, Connection] = ctx.Pipe(duplex=True)
        self.conn, child = pipe
        self.proc: BaseProcess = ctx.Process(
            target=worker_main, args=(child,), name="lakehouse-query-worker", daemon=True
        )
        self.proc.start()
        child.close()
        self._init = json.dumps(init).encode("utf-8")
        self.views: dict[str, Any] = {}
        self.generation = -1
        self.killed = False  # killed by queryd (a timeout or an abandoned stream)

    def wait_ready(self, seconds: float) -> None:
        """Send the settings and wait for the worker to open its sandbox (blocking)."""
        self.conn.send_bytes(self._init)
        if not self.conn.poll(seconds) or self.conn.recv_bytes() != protocol.READY:
            raise RuntimeError("query worker did not start")

    def exchange(self, frame: bytes) -> bytes:
        """Send a query and return the first answer frame (blocking)."""
        self.conn.send_bytes(frame)
        reply: bytes = self.conn.recv_bytes()
        return reply

    def recv(self) -> bytes:
        """The next answer frame (blocking)."""
        frame: bytes = self.conn.recv_bytes()
        return frame

    @property
    def alive(self) -> bool:
        """The process is still running."""
        return not self.killed and self.proc.exitcode is None

    def kill(self) -> None:
        """SIGKILL the process (its pipe then reads as closed)."""
        self.killed = True
        if self.proc.exitcode is None:
            self.proc.kill()

    def reap(self) -> None:
        """Collect the dead process and close the pipe."""
        self.proc.join(5)
        self.conn.close()


class WorkerPool:
    """`size` worker processes; `acquire` one, send it a query, `release` or `discard` it."""

    def __init__(self, init: dict[str, Any], size: int) -> None:
        self._init = {**init, "parent_pid": os.getpid()}
        self._size = size
        self._ctx = multiprocessing.get_context("spawn")
        self._idle: asyncio.Queue[WorkerProcess] | None = None
        self._all: set[WorkerProcess] = set()
        self._starting = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.ready_once = False

    def start(self) -> None:
        """Start every worker in the background (call on the event loop; returns at once)."""
        if self._idle is not None:
            return
        self._idle = asyncio.Queue()
        for _ in range(self._size):
            self._spawn()

    def _spawn(self, pause: float = 0.0) -> None:
        if self._closed:
            return
        self._starting += 1
        task = asyncio.ensure_future(self._start_one(pause))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start_one(self, pause: float) -> None:
        try:
            if pause:
                await asyncio.sleep(pause)
            if self._closed:
                return
            # Started on the event loop's thread: the kernel kills a worker when the thread
            # that started it ends (PR_SET_PDEATHSIG), and this thread lives as long as queryd.
            try:
                worker = WorkerProcess(self._ctx, self._init)
            except (OSError, RuntimeError) as exc:
                log.error("query worker could not be started: %s", str(exc).strip().splitlines()[0])
                self._starting -= 1
                self._spawn(RESPAWN_PAUSE_SECS)
                return
            self._all.add(worker)
            try:
                await run_in_pool("query", worker.wait_ready, STARTUP_SECS)
            except (OSError, EOFError, RuntimeError) as exc:
                log.error("query worker failed to start (exit %s): %s", worker.proc.exitcode, exc)
                self._drop(worker)
                self._starting -= 1
                self._spawn(RESPAWN_PAUSE_SECS)
                return
            self.ready_once = True
            assert self._idle is not None
            self._starting -= 1
            self._idle.put_nowait(worker)
        except BaseException:
            self._starting = max(0, self._starting - 1)
            raise

    async def acquire(self, wait: float) -> WorkerProcess:
        """A ready worker: waits up to `wait` s for a free one (longer while workers start).

        Raises:
            QueryTimeout: every worker stayed busy for `wait` s.
            Unavailable: no worker could be started.
        """
        self.start()
        assert self._idle is not None
        deadline = time.monotonic() + wait + (STARTUP_SECS if self._starting or not self.ready_once else 0)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                if not self.ready_once:
                    raise Unavailable("no query worker could be started")
                raise QueryTimeout(f"every query worker stayed busy for {wait:g} s")
            try:
                worker = await asyncio.wait_for(self._idle.get(), left)
            except TimeoutError:
                continue
            if worker.alive:
                return worker
            self.discard(worker)

    def release(self, worker: WorkerProcess) -> None:
        """Give back a worker that finished its query."""
        if self._idle is None or self._closed or not worker.alive:
            self.discard(worker)
            return
        self._idle.put_nowait(worker)

    def discard(self, worker: WorkerProcess) -> None:
        """Kill a worker (if it still runs) and start its replacement."""
        if worker not in self._all:
            return
        worker.kill()
        self._drop(worker)
        self._spawn()

    def _drop(self, worker: WorkerProcess) -> None:
        self._all.discard(worker)
        worker.kill()
        # Reaped off the loop: join waits for the kernel to finish the kill.
        task = asyncio.ensure_future(run_in_pool("query", worker.reap))
        task.add_done_callback(lambda t: t.exception())

    async def close(self) -> None:
        """Stop every worker."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        workers = list(self._all)
        self._all.clear()
        for worker in workers:
            worker.kill()
        for worker in workers:
            await run_in_pool("query", worker.reap)
