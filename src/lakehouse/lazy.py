"""Libraries imported on first need rather than at start, and off the event loop when awaited.

A start that imported every library the lakehouse can use took most of its
second in imports. The ones only some requests need are imported by the
first that needs them, or by the warm-up thread once the server listens
(`services/app.py`). `load` imports under one lock, so two threads never
import the same package through different modules at once (Python's
per-module import locks can deadlock that way); `ready` does it on a worker
thread for code running on the event loop.
"""

from __future__ import annotations

import importlib
import threading

from lakehouse.runner import run_blocking


class LazyImport:
    """Modules imported together, once, on first need."""

    def __init__(self, *modules: str) -> None:
        self.modules = modules
        self.loaded = False
        self._lock = threading.Lock()

    def load(self) -> None:
        """Import the modules (blocking; a thread that finds another importing them waits for it)."""
        if self.loaded:
            return
        with self._lock:
            for module in self.modules:
                importlib.import_module(module)
            self.loaded = True

    async def ready(self) -> None:
        """`load` on a worker thread, so the event loop keeps serving; at once when already loaded."""
        if not self.loaded:
            await run_blocking(self.load)
