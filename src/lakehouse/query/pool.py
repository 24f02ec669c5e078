"""queryd's side of the query workers: a small pool of spawned processes, one query each at a time.

Workers start in the background when queryd starts (a first query waits
for one to be ready). A worker that dies, or that queryd kills because its
query ran past the timeout plus a grace period, is replaced at once.
Waiting on a worker's pipe happens on the "query" thread pool, never on the
event loop, and no other kind of work shares that pool.

Long queries do not hold up short ones: a query still running after
`long_secs` stops counting as one of the `size` workers, and the pool starts
another (up to `max_size` processes) so the next query finds one free
instead of queueing behind it. Workers run at `nice` steps below queryd;
a worker running a long query drops to `long_nice` steps below, so on
shared cores short queries and queryd's own work run first. Its priority is
raised back when the query ends, or, where the process may not do that
(without CAP_SYS_NICE), the worker is stopped and replaced as needed. Idle workers past `size` retire after
`IDLE_RETIRE_SECS`; the idle queue is last-in first-out, so under a steady
load the same few workers stay warm and the rest age out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import multiprocessing
import os
import sys
import time
import types
from collections.abc import Iterator
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from lakehouse.errors import QueryTimeout, Unavailable
from lakehouse.query import priority, protocol
from lakehouse.query.worker import main as worker_main
from lakehouse.runner import run_in_pool

log = logging.getLogger("lakehouse.query")

STARTUP_SECS = 120.0  # how long a starting worker may take to say it is ready
RESPAWN_PAUSE_SECS = 1.0  # after a worker failed to start, before the next try
# An extra worker idle this long retires. Long enough that back-to-back long
# queries reuse the extras instead of starting (about a CPU-second each) new ones.
IDLE_RETIRE_SECS = 30.0


@contextlib.contextmanager
def _plain_main() -> Iterator[None]:
    """Spawn without the parent's `__main__`.

    "spawn" re-runs the parent's main script in the child first; for `lakehouse
    serve` that imports the whole CLI and every service (about a CPU-second,
    before the worker can lower its priority). The worker's target lives in
    this package, so the child needs none of it.
    """
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


class WorkerProcess:
    """One worker process, its pipe, and the views it has been sent."""

    def __init__(self, ctx: Any, init: dict[str, Any]) -> None:
        pipe: tuple[Connection, Connection] = ctx.Pipe(duplex=True)
        self.conn, child = pipe
        self.proc: BaseProcess = ctx.Process(
            target=worker_main, args=(child,), name="lakehouse-query-worker", daemon=True
        )
        with _plain_main():
            self.proc.start()
        child.close()
        self._init = json.dumps(init).encode("utf-8")
        self.views: dict[str, Any] = {}
        self.generation = -1
        self.killed = False  # killed by queryd (a timeout or an abandoned stream)
        self.idle_since = time.monotonic()
        self.long_timer: asyncio.TimerHandle | None = None
        self.demoted = False  # running at the long-query priority

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
    """`size` worker processes (more while queries run long); `acquire` one, `release` or `discard` it."""

    def __init__(
        self,
        init: dict[str, Any],
        size: int,
        *,
        max_size: int = 0,
        long_secs: float = 1.0,
        nice: int = 0,
        long_nice: int = 0,
    ) -> None:
        base = priority.current()
        self._nice = min(priority.MAX_NICE, base + nice)
        self._long_nice = min(priority.MAX_NICE, base + max(nice, long_nice))
        self._init = {**init, "parent_pid": os.getpid(), "nice": self._nice}
        self._size = size
        self._max = max(size, max_size)
        self._long_secs = long_secs
        self._ctx = multiprocessing.get_context("spawn")
        self._idle: asyncio.LifoQueue[WorkerProcess] | None = None
        self._all: set[WorkerProcess] = set()
        self._long: set[WorkerProcess] = set()  # running a query past long_secs
        self._unborn = 0  # spawned, process not started yet
        self._retire: asyncio.TimerHandle | None = None
        self._starting = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.ready_once = False

    def start(self) -> None:
        """Start every worker in the background (call on the event loop; returns at once)."""
        if self._idle is not None:
            return
        self._idle = asyncio.LifoQueue()
        for _ in range(self._size):
            self._spawn()

    @property
    def processes(self) -> int:
        """Worker processes running or starting (dead ones not yet discarded aside)."""
        return sum(1 for worker in self._all if worker.alive) + self._unborn

    @property
    def _not_long(self) -> int:
        """Live workers (and starting ones) not running a long query."""
        return self.processes - sum(1 for worker in self._long if worker.alive)

    def _short_of_free(self) -> bool:
        """Fewer than `size` workers free for the next query (those running long ones aside)."""
        return self._not_long < self._size and self.processes < self._max

    def _spawn(self, pause: float = 0.0) -> None:
        if self._closed:
            return
        self._starting += 1
        self._unborn += 1
        task = asyncio.ensure_future(self._start_one(pause))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _start_one(self, pause: float) -> None:
        born = False
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
            born = True
            self._unborn -= 1
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
            self._make_idle(worker)
        except BaseException:
            self._starting = max(0, self._starting - 1)
            raise
        finally:
            if not born:
                self._unborn -= 1

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
                loop = asyncio.get_running_loop()
                worker.long_timer = loop.call_later(self._long_secs, self._turned_long, worker)
                return worker
            self.discard(worker)
            if self._starting:  # its replacement may take a while: wait for it as at start-up
                deadline = max(deadline, time.monotonic() + wait + STARTUP_SECS)

    def _turned_long(self, worker: WorkerProcess) -> None:
        """`worker`'s query passed long_secs: start another worker if that leaves too few free."""
        worker.long_timer = None
        if worker not in self._all:
            return
        self._long.add(worker)
        if self._long_nice > self._nice and worker.proc.pid:
            try:
                priority.renice(worker.proc.pid, self._long_nice)
                worker.demoted = True
            except OSError as exc:  # lowering one's own priority is always allowed; logged all the same
                log.warning("query worker priority not lowered: %s", exc)
        if self._short_of_free():
            self._spawn()

    def _done(self, worker: WorkerProcess) -> None:
        """`worker` is no longer running a query."""
        if worker.long_timer is not None:
            worker.long_timer.cancel()
            worker.long_timer = None
        self._long.discard(worker)

    def release(self, worker: WorkerProcess) -> None:
        """Give back a worker that finished its query."""
        if self._idle is None or self._closed or not worker.alive:
            self.discard(worker)
            return
        self._done(worker)
        if worker.demoted and worker.proc.pid:
            try:
                priority.renice(worker.proc.pid, self._nice)
                worker.demoted = False
            except PermissionError:
                # Only CAP_SYS_NICE may raise a priority back: the next query gets a fresh worker.
                self.discard(worker)
                return
        self._make_idle(worker)

    def _make_idle(self, worker: WorkerProcess) -> None:
        assert self._idle is not None
        worker.idle_since = time.monotonic()
        self._idle.put_nowait(worker)
        if self._not_long > self._size and self._retire is None:
            loop = asyncio.get_running_loop()
            self._retire = loop.call_later(IDLE_RETIRE_SECS, self._retire_idle)

    def _retire_idle(self) -> None:
        """Stop extra workers idle for IDLE_RETIRE_SECS, keeping `size` free ones."""
        self._retire = None
        if self._idle is None or self._closed:
            return
        excess = self._not_long - self._size
        now = time.monotonic()
        drained: list[WorkerProcess] = []
        while not self._idle.empty():
            drained.append(self._idle.get_nowait())  # most recently idle first
        kept: list[WorkerProcess] = []
        for worker in reversed(drained):  # longest idle first
            if excess > 0 and now - worker.idle_since >= IDLE_RETIRE_SECS:
                excess -= 1
                self._drop(worker)
            else:
                kept.append(worker)
        for worker in kept:  # back in their order: the most recently idle on top
            self._idle.put_nowait(worker)
        if excess > 0:
            loop = asyncio.get_running_loop()
            self._retire = loop.call_later(IDLE_RETIRE_SECS, self._retire_idle)

    def discard(self, worker: WorkerProcess) -> None:
        """Kill a worker (if it still runs) and start its replacement if too few are left free."""
        if worker not in self._all:
            return
        self._done(worker)
        worker.kill()
        self._drop(worker)
        if self._not_long < self._size:
            self._spawn()

    def _drop(self, worker: WorkerProcess) -> None:
        self._done(worker)
        self._all.discard(worker)
        worker.kill()
        # Reaped off the loop: join waits for the kernel to finish the kill.
        task = asyncio.ensure_future(run_in_pool("query", worker.reap))
        task.add_done_callback(lambda t: t.exception())

    async def close(self) -> None:
        """Stop every worker."""
        self._closed = True
        if self._retire is not None:
            self._retire.cancel()
        for task in list(self._tasks):
            task.cancel()
        workers = list(self._all)
        self._all.clear()
        for worker in workers:
            worker.kill()
        for worker in workers:
            await run_in_pool("query", worker.reap)
