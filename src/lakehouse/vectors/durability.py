"""Where an index lives in the object store: its definition, write-ahead log and snapshots.

    _lakehouse/vectors/<name>/index.json                 the definition (created once)
    _lakehouse/vectors/<name>/<gen>/wal/<seq>            one record per acknowledged batch
    _lakehouse/vectors/<name>/<gen>/snap/<seq>.faiss     the engine's own save of the graph
                                                         (`.hnsw` for hnswlib, `.usearch` for usearch),
                                                         with `.npz` (vectors, keys) for faiss and hnswlib
    _lakehouse/vectors/<name>/<gen>/snap/<seq>.json      ids, metadata; written last

Every object is written whole with one atomic put, so the same layout works
on a local folder and on S3. `<gen>` is a fresh id per created index: files
left behind by a deleted index of the same name can never leak into a new one.
A snapshot at sequence S covers every record up to S; the records it covers
and older snapshots are deleted once it is complete.

Recovery replays the log without linking its vectors into the graph: they
are searchable exactly as soon as the log is read, and the service links
them in the background (`VectorIndex.link_pending`), so a long log costs a
restart only the time to read it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import logging
import tempfile
from collections import deque
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from pathlib import Path

from lakehouse.errors import NotFound
from lakehouse.runner import run_blocking
from lakehouse.storage.base import VECTORS_PREFIX, ObjectStore
from lakehouse.vectors.graph import SUFFIXES, Files
from lakehouse.vectors.index import IndexSpec, VectorIndex
from lakehouse.vectors.records import Batch, CorruptRecord, decode, encode

log = logging.getLogger("lakehouse.vectors")

SEQ_DIGITS = 20
# Log records are fetched this many at a time while replay applies the ones before.
FETCH_AHEAD = 16
# A record up to this size is read in one piece and decoded on the event loop (a thread hop
# would cost more than its checksum and header); larger ones are decoded on a worker thread.
SMALL_RECORD = 64 * 1024
# A run of records changing at most this many items is applied on the event loop, for the same reason.
SMALL_RUN = 256


def spec_key(name: str) -> str:
    """The key of an index's definition."""
    return f"{VECTORS_PREFIX}{name}/index.json"


def _seq(n: int) -> str:
    return str(n).zfill(SEQ_DIGITS)


@dataclass
class Progress:
    """How far a recovery has got: log records replayed of those to replay, and items loaded so far."""

    replayed: int = 0
    total: int = 0
    items: int = 0


@dataclass
class Recovered:
    """An index rebuilt from storage and the sequence number of its last change."""

    index: VectorIndex
    seq: int
    replayed: int


class IndexFiles:
    """The log and snapshots of one index generation."""

    def __init__(self, store: ObjectStore, spec: IndexSpec) -> None:
        self.store = store
        self.spec = spec
        self.base = f"{VECTORS_PREFIX}{spec.name}/{spec.generation}/"
        self.suffixes = SUFFIXES[spec.engine]

    def graph_key(self, seq: int, suffix: str) -> str:
        """The key of one of a snapshot's graph files."""
        return f"{self.base}snap/{_seq(seq)}.{suffix}"

    def wal_key(self, seq: int) -> str:
        """The key of one log record."""
        return f"{self.base}wal/{_seq(seq)}"

    async def append(self, seq: int, batch: Batch) -> None:
        """Record one batch durably; it counts as acknowledged once this returns."""
        await self.store.put_bytes(self.wal_key(seq), encode(batch), if_absent=True)

    async def put_snapshot(self, seq: int, graph: Files, state: bytes) -> None:
        """Store a snapshot as of `seq` (graph files first, state last), then drop what it covers."""
        for suffix in self.suffixes:
            await self.store.put_file(self.graph_key(seq, suffix), graph[suffix])
        await self.store.put_bytes(f"{self.base}snap/{_seq(seq)}.json", state)
        await self.prune(seq)

    async def prune(self, seq: int) -> None:
        """Delete log records up to `seq` and snapshots older than it."""
        objects, _ = await self.store.list(self.base)
        keep = {f"{self.base}snap/{_seq(seq)}.json", *(self.graph_key(seq, s) for s in self.suffixes)}
        for obj in objects:
            number = _number(obj.key)
            if obj.key in keep or number is None or number > seq:
                continue
            with contextlib.suppress(NotFound):
                await self.store.delete(obj.key)

    async def recover(self, progress: Progress | None = None) -> Recovered:
        """Load the newest complete snapshot, then replay the log records after it.

        Replayed vectors are left pending (searchable, not yet in the graph).
        A record that is torn or damaged ends the log: it and anything after
        it are set aside (deleted) with a warning, never applied. `progress`,
        when given, is kept up to date as records are replayed.
        """
        progress = progress or Progress()
        objects, _ = await self.store.list(self.base)
        sizes = {obj.key: obj.size for obj in objects}
        keys = sizes.keys()
        snaps = sorted(
            n
            for key in keys
            if key.startswith(f"{self.base}snap/") and key.endswith(".json")
            for n in [_number(key)]
            if n is not None and all(self.graph_key(n, suffix) in keys for suffix in self.suffixes)
        )
        seq = snaps[-1] if snaps else 0
        records = sorted(
            n
            for key in keys
            if key.startswith(f"{self.base}wal/")
            for n in [_number(key)]
            if n is not None and n > seq
        )
        progress.total = len(records)
        with _collector_paused():
            index = await self._load_snapshot(seq) if snaps else VectorIndex.empty(self.spec)
            progress.items = index.count
            replayed = await self._replay(index, [(n, sizes[self.wal_key(n)]) for n in records], progress)
        for later in records[replayed:]:  # a damaged record and all after it are set aside
            with contextlib.suppress(NotFound):
                await self.store.delete(self.wal_key(later))
        return Recovered(index=index, seq=records[replayed - 1] if replayed else seq, replayed=replayed)

    async def _replay(self, index: VectorIndex, records: list[tuple[int, int]], progress: Progress) -> int:
        """Apply the records (numbers and sizes) in order, up to the first damaged one; return how many."""
        replayed = 0
        async with contextlib.aclosing(self._read_log(records)) as log_records:
            async for fetched in log_records:
                intact: list[Batch] = []
                for batch in fetched:
                    if batch is None:
                        break
                    intact.append(batch)
                if sum(len(batch.ids) for batch in intact) <= SMALL_RUN:
                    _apply_all(index, intact)  # the index is not shared yet: its lock is free
                else:
                    await run_blocking(_apply_all, index, intact)
                replayed += len(intact)
                progress.replayed, progress.items = replayed, index.count
                if len(intact) < len(fetched):
                    break
        return replayed

    async def _read_log(self, records: list[tuple[int, int]]) -> AsyncGenerator[list[Batch | None], None]:
        """The records in order, in runs of those already fetched; a damaged one is None.

        Up to `FETCH_AHEAD` records are fetched and decoded (checksums and
        reads release the GIL) while the caller applies the ones before, a
        run at a time: a log of many small records costs a thread hop per
        run, not per record.
        """

        async def one(n: int, size: int) -> Batch | None:
            key = self.wal_key(n)
            try:
                if size > SMALL_RECORD:
                    return await run_blocking(decode, await self.store.get_bytes(key))
                _, chunks = await self.store.get(key)  # a small object comes whole, in one hop
                return decode(b"".join([chunk async for chunk in chunks]))
            except CorruptRecord as exc:
                log.warning("index %s: log record %d is damaged (%s); ignoring it", self.spec.name, n, exc)
                return None

        coming = iter(records)
        fetching = deque(
            asyncio.ensure_future(one(*record)) for record in itertools.islice(coming, FETCH_AHEAD)
        )
        try:
            while fetching:
                run = [await fetching.popleft()]
                while fetching and fetching[0].done():
                    run.append(fetching.popleft().result())
                fetching.extend(
                    asyncio.ensure_future(one(*record)) for record in itertools.islice(coming, len(run))
                )
                yield run
        finally:
            for task in fetching:
                task.cancel()
            await asyncio.gather(*fetching, return_exceptions=True)

    async def _load_snapshot(self, seq: int) -> VectorIndex:
        state = await self.store.get_bytes(f"{self.base}snap/{_seq(seq)}.json")
        with tempfile.TemporaryDirectory(prefix="lakehouse-vec-") as tmp:
            files = {
                suffix: await self._local_copy(self.graph_key(seq, suffix), Path(tmp) / f"graph.{suffix}")
                for suffix in self.suffixes
            }
            return await run_blocking(VectorIndex.load, self.spec, files, state)

    async def _local_copy(self, key: str, path: Path) -> Path:
        """A file holding the object: the local backend's own file (objects are never rewritten in
        place, and an open file outlives a prune), else a download to `path`."""
        stored = Path(self.store.engine_path(key))
        if stored.is_absolute() and await run_blocking(stored.is_file):
            return stored
        _, chunks = await self.store.get(key)
        with open(path, "wb") as fh:
            async for chunk in chunks:
                await run_blocking(fh.write, chunk)
        return path


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Hold off the cyclic garbage collector while a load builds objects that all live on.

    Left to run, it walks every item built so far again and again as the
    index grows: a fifth of the CPU time of a 300,000-item replay (0.2 s of
    1.0 s), more in a server's larger heap. Nothing a replay builds is
    cyclic garbage, so nothing is lost by waiting.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _apply_all(index: VectorIndex, batches: list[Batch]) -> None:
    """Apply replayed batches in order, their vectors left pending."""
    for batch in batches:
        index.apply(batch, True)


def _number(key: str) -> int | None:
    stem = key.rsplit("/", 1)[-1].split(".", 1)[0]
    return int(stem) if stem.isdigit() else None


async def read_specs(store: ObjectStore) -> list[IndexSpec]:
    """Every defined index; files of deleted indexes or generations are removed."""
    objects, _ = await store.list(VECTORS_PREFIX)
    specs: dict[str, IndexSpec] = {}
    for obj in objects:
        rest = obj.key[len(VECTORS_PREFIX) :]
        name, _, tail = rest.partition("/")
        if tail == "index.json":
            specs[name] = IndexSpec.from_json(await store.get_bytes(obj.key))
    for obj in objects:
        name, _, tail = obj.key[len(VECTORS_PREFIX) :].partition("/")
        spec = specs.get(name)
        if tail != "index.json" and (spec is None or not tail.startswith(spec.generation + "/")):
            with contextlib.suppress(NotFound):
                await store.delete(obj.key)
    return sorted(specs.values(), key=lambda s: s.name)


async def write_spec(store: ObjectStore, spec: IndexSpec) -> None:
    """Define an index durably.

    Raises:
        AlreadyExists: an index of that name exists.
    """
    await store.put_bytes(spec_key(spec.name), spec.to_json(), if_absent=True)


async def remove_index(store: ObjectStore, spec: IndexSpec) -> None:
    """Undefine an index (durable once this returns), then delete its files."""
    await store.delete(spec_key(spec.name))
    objects, _ = await store.list(f"{VECTORS_PREFIX}{spec.name}/{spec.generation}/")
    for obj in objects:
        with contextlib.suppress(NotFound):
            await store.delete(obj.key)
