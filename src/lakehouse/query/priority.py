"""CPU priority of query worker processes: nice values set on every thread.

On Linux a nice value belongs to a thread, not to a process: `setpriority`
on a process id changes only its first thread, and a thread inherits the
value of the thread that starts it. So a worker's priority is set on each
thread listed in `/proc/<pid>/task`. Any process may lower its own threads'
priority (raise the nice value); raising it back needs CAP_SYS_NICE (or
RLIMIT_NICE), which `renice` reports as PermissionError.
"""

from __future__ import annotations

import os

MAX_NICE = 19


def threads(pid: int) -> list[int]:
    """The thread ids of process `pid` (just `pid` where /proc is absent)."""
    try:
        return [int(tid) for tid in os.listdir(f"/proc/{pid}/task")]
    except OSError:
        return [pid]


def renice(pid: int, nice: int) -> None:
    """Set every thread of process `pid` to nice value `nice` (clamped to 19).

    Raises:
        PermissionError: `nice` is below a thread's value and this process may not raise priority.
    """
    nice = min(MAX_NICE, nice)
    for tid in threads(pid):
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) != nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
        except PermissionError:
            raise
        except ProcessLookupError:  # the thread (or process) ended meanwhile
            pass


def current() -> int:
    """This thread's nice value."""
    return os.getpriority(os.PRIO_PROCESS, 0)
