"""One asyncio lock per name, kept only while something holds it or waits for it.

A dict of locks keyed by dataset name grows with every name a client ever
tries. Here the locks are held weakly: a coroutine in `async with
locks(name)` keeps its lock alive, so every writer of a name meanwhile gets
the same one, and once none is left the entry goes.
"""

from __future__ import annotations

import asyncio
import weakref


class NamedLocks:
    """`locks(name)`: the lock for `name`, shared by everyone using it at the time."""

    def __init__(self) -> None:
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def __call__(self, name: str) -> asyncio.Lock:
        """The lock for `name`, made if nothing holds one now."""
        lock = self._locks.get(name)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[name] = lock
        return lock

    def __len__(self) -> int:
        """How many names have a lock in use."""
        return len(self._locks)
