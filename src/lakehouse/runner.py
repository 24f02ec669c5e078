"""Bounded runners for blocking engines (DuckDB, pyarrow, usearch, models), one pool per kind of work.

The event loop never calls them directly; it awaits `run_blocking` (the
default pool) or `run_in_pool(name, ...)`, which run the call on a worker
thread under that pool's capacity limit. Each pool has its own limit, so
slow SQL (the "query" pool) cannot take the threads storage, vectors or
chat need.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import anyio
import anyio.to_thread

P = ParamSpec("P")
T = TypeVar("T")

# Threads mostly wait on I/O or release the GIL inside the engines, so a bound
# above the core count keeps both cores busy without unbounded thread growth.
MAX_THREADS = 16

# Capacity of each named pool; a name not listed gets MAX_THREADS.
POOL_SIZES: dict[str, int] = {
    "default": MAX_THREADS,
    "query": 32,  # one per busy query worker ([queryd] max_workers) plus starting ones
    "storage": MAX_THREADS,
    "vectors": 8,
    "models": 4,
}

# One limiter per event loop and pool: a limiter's waiters belong to the loop that made them.
_LIMITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, anyio.CapacityLimiter]] = (
    weakref.WeakKeyDictionary()
)


def _limiter(pool: str) -> anyio.CapacityLimiter:
    loop = asyncio.get_running_loop()
    limiters = _LIMITERS.get(loop)
    if limiters is None:
        limiters = _LIMITERS[loop] = {}
    limiter = limiters.get(pool)
    if limiter is None:
        limiter = limiters[pool] = anyio.CapacityLimiter(POOL_SIZES.get(pool, MAX_THREADS))
    return limiter


async def run_in_pool(pool: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run `fn(*args, **kwargs)` on a worker thread of the named pool and await its result."""
    call = functools.partial(fn, *args, **kwargs)
    return await anyio.to_thread.run_sync(call, limiter=_limiter(pool))


async def run_blocking(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run `fn(*args, **kwargs)` on a worker thread of the default pool and await its result."""
    call = functools.partial(fn, *args, **kwargs)
    return await anyio.to_thread.run_sync(call, limiter=_limiter("default"))
