"""One shared thread that interrupts DuckDB cursors past their deadline.

A `threading.Timer` per query starts (and waits for) a new OS thread, which
cost more than a small query itself. Here every query registers its deadline
with one long-lived daemon thread instead: arming is a heap push under a lock,
and disarming only marks the entry, so neither wakes the thread unless the
new deadline is the earliest one. DuckDB's `interrupt` is thread-safe; it is
called under the same lock that `Alarm.cancel` takes, so a cancelled alarm
never fires on a cursor its query has already closed.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("lakehouse.query")

# Past this many cancelled entries (and more than half the heap), the heap is rebuilt without them.
_COMPACT_AT = 1024


class Alarm:
    """A pending call; `cancel` stops it from firing."""

    __slots__ = ("_watchdog", "callback", "cancelled", "fired")

    def __init__(self, watchdog: Watchdog, callback: Callable[[], object]) -> None:
        self._watchdog = watchdog
        self.callback = callback
        self.cancelled = False
        self.fired = False

    def cancel(self) -> None:
        """Disarm; once this returns the callback is not running and will not run."""
        self._watchdog.cancel(self)


class Watchdog:
    """Calls each armed callback once its deadline passes, from one daemon thread."""

    def __init__(self, name: str = "lakehouse-query-watchdog") -> None:
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Alarm]] = []
        self._order = itertools.count()
        self._cancelled = 0
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, callback: Callable[[], object]) -> Alarm:
        """Call `callback` (on the watchdog thread) in `seconds` unless cancelled first."""
        alarm = Alarm(self, callback)
        due = time.monotonic() + seconds
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name=self._name, daemon=True)
                self._thread.start()
            earliest = self._heap[0][0] if self._heap else None
            heapq.heappush(self._heap, (due, next(self._order), alarm))
            if earliest is None or due < earliest:
                self._cond.notify()
        return alarm

    def cancel(self, alarm: Alarm) -> None:
        """Disarm `alarm` (see `Alarm.cancel`)."""
        with self._cond:
            if alarm.cancelled or alarm.fired:
                return
            alarm.cancelled = True
            self._cancelled += 1
            if self._cancelled > _COMPACT_AT and self._cancelled * 2 > len(self._heap):
                self._heap = [entry for entry in self._heap if not entry[2].cancelled]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def _loop(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2].cancelled:
                    heapq.heappop(self._heap)
                    self._cancelled -= 1
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                _, _, alarm = heapq.heappop(self._heap)
                alarm.fired = True
                try:
                    alarm.callback()
                except Exception:  # a failed interrupt must not stop the watchdog
                    log.exception("query watchdog callback failed")


WATCHDOG = Watchdog()
