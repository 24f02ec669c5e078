"""A readers-writer lock for an index: many searches at once, or one change."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ReadWriteLock:
    """Many readers or one writer; a waiting writer holds back new readers."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting_writers = 0
        self._waiting_readers = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        """Hold the lock shared."""
        with self._cond:
            self._waiting_readers += 1
            while self._writer or self._waiting_writers:
                self._cond.wait()
            self._waiting_readers -= 1
            self._readers += 1
            if not self._waiting_readers:
                self._cond.notify_all()  # a writer may be letting readers in (`let_readers_in`)
        try:
            yield
        finally:
            self._leave()

    @contextmanager
    def read_at_once(self) -> Iterator[bool]:
        """Hold the lock shared if that needs no wait at all; yields whether it is held."""
        if not self._cond.acquire(blocking=False):
            yield False
            return
        try:
            free = not (self._writer or self._waiting_writers)
            if free:
                self._readers += 1
        finally:
            self._cond.release()
        if not free:
            yield False
            return
        try:
            yield True
        finally:
            self._leave()

    def _leave(self) -> None:
        """A reader is done; the last one out wakes a waiting writer."""
        with self._cond:
            self._readers -= 1
            if not self._readers:
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        """Hold the lock exclusively."""
        with self._cond:
            self._waiting_writers += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting_writers -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()

    def let_readers_in(self) -> None:
        """Wait (holding nothing) until every reader now waiting has got the lock.

        A writer working in steps calls this between them, so readers that
        queued behind one step run before the next instead of after the last.
        """
        with self._cond:
            while self._waiting_readers:
                self._cond.wait()
