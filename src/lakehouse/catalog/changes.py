"""The catalog's change log: one small object that tells readers what moved, without listing.

Every write to the catalog (a version, an upgrade, an expire, a delete) is
followed by `announce(name)`, which bumps a counter in
`_lakehouse/catalog/_changes` and remembers the last few dataset names
changed, with a compare-and-set (`If-Match`) so writers in other processes
never lose each other's entries:

    {"seq": 1042, "recent": [[1041, "trips"], [1042, "people"]]}

A reader keeps the `seq` it last saw. Before it trusts its cached view of the
catalog it only HEADs the object: the same etag means nothing changed. When
it did change, the entries after its `seq` name the datasets to look at
again; when they no longer reach back that far, it lists everything. A
writer that crashed between its version and its announcement is caught by
the readers' periodic full listing (`FULL_RESCAN_SECS`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from dataclasses import dataclass

from lakehouse.errors import AlreadyExists, NotFound, PreconditionFailed
from lakehouse.storage.base import CATALOG_PREFIX, ObjectStore, one_chunk

log = logging.getLogger("lakehouse.catalog")

CHANGES_KEY = f"{CATALOG_PREFIX}_changes"
# How many recent changes the log keeps: a reader further behind lists everything.
KEEP = 256
# A reader lists everything at least this often, whatever the log says.
FULL_RESCAN_SECS = 30.0
MAX_ATTEMPTS = 64


@dataclass(frozen=True)
class Changes:
    """What the change log said when it was read."""

    etag: str | None
    seq: int
    recent: tuple[tuple[int, str], ...]

    def since(self, seq: int) -> set[str] | None:
        """The datasets changed after `seq`, or None when the log no longer reaches back that far."""
        if seq > self.seq:
            return None  # the log was reset: trust nothing
        if seq == self.seq:
            return set()
        oldest = self.recent[0][0] if self.recent else self.seq + 1
        if oldest > seq + 1:
            return None
        return {name for number, name in self.recent if number > seq}


class ChangeLog:
    """Announce and read catalog changes through one object of the store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    async def tag(self) -> str | None:
        """The log's etag (None when nothing was ever announced): cheap, one HEAD."""
        try:
            return (await self.store.head(CHANGES_KEY)).etag
        except NotFound:
            return None

    async def read(self) -> Changes:
        """The log as it is now."""
        try:
            info, chunks = await self.store.get(CHANGES_KEY)
        except NotFound:
            return Changes(None, 0, ())
        data = b"".join([chunk async for chunk in chunks])
        return Changes(info.etag, *_parse(data))

    async def announce(self, name: str) -> None:
        """Record that dataset `name` changed (best effort: readers rescan now and then anyway)."""
        for attempt in range(MAX_ATTEMPTS):
            if attempt:
                # Writers that lost the compare-and-set spread out instead of colliding again.
                await asyncio.sleep(random.uniform(0, 0.001 * min(attempt, 20)))
            current = await self.read()
            seq = current.seq + 1
            recent = [*current.recent, (seq, name)][-KEEP:]
            body = json.dumps({"seq": seq, "recent": recent}, separators=(",", ":")).encode()
            try:
                if current.etag is None:
                    await self.store.put_bytes(CHANGES_KEY, body, if_absent=True)
                else:
                    await self.store.put(CHANGES_KEY, one_chunk(body), if_match=current.etag)
                return
            except (AlreadyExists, PreconditionFailed):
                continue
        log.warning(
            "could not announce a change to dataset %s; readers will see it at their next rescan", name
        )


def _parse(data: bytes) -> tuple[int, tuple[tuple[int, str], ...]]:
    try:
        raw = json.loads(data)
        seq = int(raw["seq"])
        recent = tuple((int(number), str(name)) for number, name in raw["recent"])
    except (ValueError, KeyError, TypeError):
        return 0, ()
    return seq, recent
