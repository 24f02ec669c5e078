"""Loading an index in the background, so the process serves while a long log replays.

Every index is listed as soon as its definition is read, with `"state":
"loading"` and how far its load has got; whatever needs its items (search,
add, delete, sync) answers 503 `busy` with Retry-After until it is ready.
The index becomes ready only once its whole snapshot and log are in memory,
and nothing is written or snapshotted for it before then, so a load that is
interrupted (shutdown, kill -9) leaves storage exactly as it found it. A load
that fails (storage unreachable) is logged, shown in the info and retried.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from lakehouse.errors import Busy
from lakehouse.vectors.durability import IndexFiles, Progress, Recovered

log = logging.getLogger("lakehouse.vectors")

RETRY_AFTER_SECS = 1
# A failed load is tried again after 1 s, then twice as long each time, up to this.
RETRY_MAX_SECS = 30.0


@dataclass
class Loading:
    """An index's load while it runs: its progress and the last failure, if any."""

    progress: Progress = field(default_factory=Progress)
    error: str | None = None

    def info(self) -> dict[str, Any]:
        """The fields a loading index's info carries."""
        info: dict[str, Any] = {
            "state": "loading",
            "progress": {"replayed": self.progress.replayed, "total": self.progress.total},
        }
        if self.error is not None:
            info["load_error"] = self.error
        return info


def busy(name: str) -> Busy:
    """The error for an operation on an index that is still loading."""
    return Busy(
        f"vector index {name!r} is loading; retry shortly",
        headers={"Retry-After": str(RETRY_AFTER_SECS)},
        retry_after=RETRY_AFTER_SECS,
        index=name,
    )


async def recover(files: IndexFiles, loading: Loading) -> Recovered:
    """Recover an index from storage, trying again with a growing pause while that fails."""
    pause = 1.0
    while True:
        loading.progress = Progress()
        try:
            return await files.recover(loading.progress)
        except Exception as exc:  # a background load must report and retry, not vanish with its task
            log.exception("index %s: load failed; retrying in %.0f s", files.spec.name, pause)
            loading.error = f"load failed: {exc}"
        await asyncio.sleep(pause)
        pause = min(pause * 2, RETRY_MAX_SECS)
