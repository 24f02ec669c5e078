"""Long queries do not starve short ones: spare workers start, and workers run below the server's priority."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from lakehouse.catalog import Catalog
from lakehouse.config import Settings
from lakehouse.query import QueryEngine
from lakehouse.storage import open_store

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/task").is_dir(), reason="reads thread priorities in /proc"
)

# Runs far past the test (DuckDB interrupts it at timeout_secs; closing the engine kills it sooner).
ENDLESS = "SELECT count(*) FROM range(1000000000) a(x), range(1000000) b(y) WHERE (x + y) % 7 = 0"
WORKER_NICE = 5
LONG_NICE = 12


def thread_nices(pid: int) -> set[int]:
    """The nice value of every thread of process `pid` (field 19 of /proc/<pid>/task/<tid>/stat)."""
    nices = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:  # the thread ended meanwhile
            continue
        nices.add(int(stat.rsplit(")", 1)[1].split()[16]))
    return nices


def worker_pids() -> list[int]:
    """The query worker processes running now."""
    return [
        p.pid
        for p in multiprocessing.active_children()
        if p.name == "lakehouse-query-worker" and p.pid is not None and p.is_alive()
    ]


async def until(check: object, seconds: float = 30.0) -> None:
    """Poll `check()` until it is true."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


@pytest_asyncio.fixture
async def engine(tmp_path: Path) -> AsyncIterator[QueryEngine]:
    """One worker kept ready, up to three; a query is long after 0.3 s."""
    settings = Settings.model_validate(
        {
            "storage": {"root": str(tmp_path / "data")},
            "queryd": {
                "workers": 1,
                "max_workers": 3,
                "long_query_secs": 0.3,
                "timeout_secs": 60.0,
                "threads": 1,
                "memory_limit": "256MB",
                "worker_nice": WORKER_NICE,
                "long_query_nice": LONG_NICE,
            },
        }
    )
    store = open_store(settings)
    engine = QueryEngine(settings, store, Catalog(store))
    engine.start()
    try:
        yield engine
    finally:
        await engine.close()
        await store.close()


async def test_a_short_query_is_answered_while_long_queries_hold_every_worker(engine: QueryEngine) -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert (await engine.run("SELECT 1")).rows == [[1]]
    assert {n for pid in worker_pids() for n in thread_nices(pid)} == {min(19, base + WORKER_NICE)}
    long_queries = [asyncio.ensure_future(engine.run(ENDLESS)) for _ in range(2)]
    try:
        # Each worker holding a long query drops to the long-query priority.
        demoted = {min(19, base + LONG_NICE)}
        await until(lambda: sum(thread_nices(pid) == demoted for pid in worker_pids()) == 2)
        # Both long queries hold a worker, past `workers`: a short one still gets its answer.
        answer = await asyncio.wait_for(engine.run("SELECT 42"), 45)
        assert answer.rows == [[42]]
        assert not any(task.done() for task in long_queries)
    finally:
        await engine.close()  # stops the long queries' workers (they would run a minute)
        await asyncio.gather(*long_queries, return_exceptions=True)


async def test_after_a_long_query_its_worker_serves_at_the_normal_priority(engine: QueryEngine) -> None:
    base = os.getpriority(os.PRIO_PROCESS, 0)
    # Past long_query_secs (0.3 s) and then done.
    sql = "SELECT count(*) FROM range(2000) a(x), range(20000) b(y) WHERE (x + y) % 7 = 0"
    result = await engine.run(sql)
    assert result.rows[0][0] > 0
    # Raised back where the process may do that, else replaced by a fresh worker: either way
    # every worker that takes the next query runs at worker_nice, none at the long-query one.
    assert (await engine.run("SELECT 7")).rows == [[7]]
    await until(lambda: all(thread_nices(pid) == {min(19, base + WORKER_NICE)} for pid in worker_pids()))
    assert worker_pids()
