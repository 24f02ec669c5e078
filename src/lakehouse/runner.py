"""One bounded runner for blocking engines (DuckDB, pyarrow, usearch, models).

The event loop never calls them directly; it awaits `run_blocking`, which runs
the call on a worker thread under a shared capacity limit.
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

# One limiter per event loop: a limiter's waiters belong to the loop that made them.
_LIMITERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anyio.CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)


def _limiter() -> anyio.CapacityLimiter:
    loop = asyncio.get_running_loop()
    limiter = _LIMITERS.get(loop)
    if limiter is None:
        limiter = _LIMITERS[loop] = anyio.CapacityLimiter(MAX_THREADS)
    return limiter


async def run_blocking(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run `fn(*args, **kwargs)` on a worker thread and await its result."""
    call = functools.partial(fn, *args, **kwargs)
    return await anyio.to_thread.run_sync(call, limiter=_limiter())
