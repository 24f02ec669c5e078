"""The local-folder backend: objects as files under `<root>/objects/`.

Writes go to a temp file in `<root>/.tmp/` (outside the key space), are
fsynced, then moved into place with `os.link` (create only: fails when the
key exists, atomically, also across processes) or `os.replace`. A reader
therefore sees the old object or the new one, never half of one, and a crash
leaves at most an orphan temp file, which the next start removes.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import errno
import hashlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import anyio

from lakehouse.errors import AlreadyExists, Conflict, InvalidKey, NotFound, TooLarge
from lakehouse.runner import run_blocking
from lakehouse.storage.base import ObjectInfo, PutResult

CHUNK = 1024 * 1024
TMP_SUFFIX = ".part"


class LocalStore:
    """An ObjectStore over a folder on this machine."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.objects = self.root / "objects"
        self.tmp = self.root / ".tmp"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.remove_orphans()

    def remove_orphans(self) -> int:
        """Delete temp files left by crashed processes; return how many were removed.

        Several processes may share one root (split mode), so a temp file is
        only removed when the process that wrote it (its name starts with the
        pid) is gone, or when it is this process's own.
        """
        removed = 0
        for entry in os.scandir(self.tmp):
            pid_text = entry.name.partition("-")[0]
            if pid_text.isdigit() and int(pid_text) != os.getpid() and _alive(int(pid_text)):
                continue
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
                removed += 1
        return removed

    def _path(self, key: str) -> Path:
        return self.objects / key

    def _tmp_file(self) -> tuple[Path, BinaryIO]:
        path = self.tmp / f"{os.getpid()}-{uuid.uuid4().hex}{TMP_SUFFIX}"
        return path, open(path, "xb")

    async def put(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        max_bytes: int | None = None,
        if_absent: bool = False,
    ) -> PutResult:
        """Store the streamed bytes atomically under `key` (see ObjectStore.put)."""
        tmp, fh = await run_blocking(self._tmp_file)
        # One write in flight while the next megabyte arrives: disk and network overlap.
        writing: asyncio.Future[None] | None = None
        try:
            size = 0
            pending: list[bytes] = []
            pending_size = 0
            async for chunk in chunks:
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise TooLarge(f"the body is larger than the {max_bytes}-byte limit", limit=max_bytes)
                pending.append(chunk)
                pending_size += len(chunk)
                # Batch small network chunks so each thread hop writes about 1 MiB.
                if pending_size >= CHUNK:
                    if writing is not None:
                        await writing
                    writing = asyncio.ensure_future(run_blocking(fh.writelines, pending))
                    pending, pending_size = [], 0
            if writing is not None:
                await writing
            if pending:
                await run_blocking(fh.writelines, pending)
            await run_blocking(_flush_and_close, fh)
            return await run_blocking(self._commit, tmp, key, if_absent)
        finally:
            # Shielded: a cancelled request must still remove its temp file.
            with anyio.CancelScope(shield=True):
                if writing is not None:
                    await asyncio.wait([writing])
                await run_blocking(_discard, fh, tmp)

    async def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> PutResult:
        """Store a small in-memory value atomically."""
        return await run_blocking(self._put_bytes_sync, key, data, if_absent)

    def _put_bytes_sync(self, key: str, data: bytes, if_absent: bool) -> PutResult:
        tmp, fh = self._tmp_file()
        try:
            fh.write(data)
            _flush_and_close(fh)
            return self._commit(tmp, key, if_absent)
        finally:
            _discard(fh, tmp)

    async def put_file(self, key: str, path: Path) -> PutResult:
        """Store a copy of a local file atomically."""
        return await run_blocking(self._put_file_sync, key, Path(path))

    def _put_file_sync(self, key: str, source: Path) -> PutResult:
        tmp, fh = self._tmp_file()
        try:
            with open(source, "rb") as src:
                shutil.copyfileobj(src, fh, CHUNK)
            _flush_and_close(fh)
            return self._commit(tmp, key, False)
        finally:
            _discard(fh, tmp)

    def _commit(self, tmp: Path, key: str, if_absent: bool) -> PutResult:
        """Move a finished temp file to `key`: link (create) first, replace if allowed."""
        final = self._path(key)
        # A concurrent delete may prune the parent folder between mkdir and
        # link; retrying a few times covers that race.
        for _ in range(5):
            self._make_parents(final, key)
            try:
                os.link(tmp, final)
                replaced = False
            except FileExistsError:
                if if_absent:
                    raise AlreadyExists(f"object {key!r} already exists", key=key) from None
                if final.is_dir():
                    raise _shadowed(key) from None
                try:
                    os.replace(tmp, final)
                except FileNotFoundError:
                    continue
                replaced = True
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise _os_error(exc, key) from None
            _fsync_dir(final.parent)
            return PutResult(info=_info(key, final.stat()), replaced=replaced)
        raise Conflict(f"object {key!r} could not be stored: its folder kept disappearing", key=key)

    def _make_parents(self, final: Path, key: str) -> None:
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise _shadowed(key) from None
        except OSError as exc:
            raise _os_error(exc, key) from None

    async def get(self, key: str) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
        """The object's info and a stream of its bytes, read from one open file."""
        fh, info, small = await run_blocking(self._open, key, True)
        if small is not None:  # already read whole: no further thread hops
            return info, _one_chunk(small)
        return info, _read_chunks(fh)

    def _open(self, key: str, read_small: bool = False) -> tuple[BinaryIO, ObjectInfo, bytes | None]:
        path = self._path(key)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed by _read_chunks
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(f"no object {key!r}", key=key) from None
        except OSError as exc:
            raise _os_error(exc, key) from None
        # Info from the open file, so it matches the bytes even if a replace lands now.
        info = _info(key, os.fstat(fh.fileno()))
        if read_small and info.size <= CHUNK:
            with fh:
                return fh, info, fh.read()
        return fh, info, None

    async def get_bytes(self, key: str) -> bytes:
        """The whole object in memory."""
        fh, _, _ = await run_blocking(self._open, key)
        with fh:
            return await run_blocking(fh.read)

    async def head(self, key: str) -> ObjectInfo:
        """The object's info."""
        return await run_blocking(self._head, key)

    def _head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"no object {key!r}", key=key) from None
        except OSError as exc:
            raise _os_error(exc, key) from None
        if not path.is_file():
            raise NotFound(f"no object {key!r}", key=key)
        return _info(key, st)

    async def delete(self, key: str) -> None:
        """Remove the object and any folders it leaves empty."""
        await run_blocking(self._delete, key)

    def _delete(self, key: str) -> None:
        path = self._path(key)
        try:
            os.unlink(path)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound(f"no object {key!r}", key=key) from None
        except OSError as exc:
            if exc.errno == errno.EISDIR:
                raise NotFound(f"no object {key!r}", key=key) from None
            raise _os_error(exc, key) from None
        parent = path.parent
        while parent != self.objects:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    async def list(self, prefix: str = "", limit: int | None = None) -> tuple[list[ObjectInfo], bool]:
        """Objects whose key starts with `prefix`, sorted by key, and whether more exist."""
        return await run_blocking(self._list, prefix, limit)

    def _list(self, prefix: str, limit: int | None) -> tuple[builtins.list[ObjectInfo], bool]:
        # Walk only the deepest folder the prefix names; filter the rest by string.
        folder, _, _ = prefix.rpartition("/")
        start = self.objects / folder if folder else self.objects
        found: builtins.list[tuple[str, os.stat_result]] = []
        for key, st in self._walk(start, folder):
            if key.startswith(prefix):
                found.append((key, st))
        found.sort(key=lambda item: item[0].encode("utf-8"))
        truncated = limit is not None and len(found) > limit
        if limit is not None:
            found = found[:limit]
        return [_info(key, st) for key, st in found], truncated

    def _walk(self, folder: Path, rel: str) -> Iterator[tuple[str, os.stat_result]]:
        try:
            entries = list(os.scandir(folder))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            key = f"{rel}/{entry.name}" if rel else entry.name
            try:
                if entry.is_dir(follow_symlinks=False):
                    yield from self._walk(Path(entry.path), key)
                elif entry.is_file(follow_symlinks=False):
                    yield key, entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed while we walked

    def engine_path(self, key: str) -> str:
        """The object's absolute file path, for DuckDB."""
        return str(self._path(key))

    def engine_root(self) -> str:
        """The folder under which every object lives."""
        return str(self.objects)

    async def close(self) -> None:
        """Nothing to release: files are opened per call."""


def _info(key: str, st: os.stat_result) -> ObjectInfo:
    # Every write lands as a new inode, so inode + size + mtime names one version.
    tag = hashlib.md5(f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}".encode(), usedforsecurity=False)
    return ObjectInfo(
        key=key,
        size=st.st_size,
        etag=tag.hexdigest(),
        last_modified=datetime.fromtimestamp(st.st_mtime, tz=UTC),
    )


async def _one_chunk(data: bytes) -> AsyncIterator[bytes]:
    if data:
        yield data


async def _read_chunks(fh: BinaryIO) -> AsyncIterator[bytes]:
    # The next megabyte is read while the current one is being sent.
    reading = asyncio.ensure_future(run_blocking(fh.read, CHUNK))
    try:
        while True:
            chunk = await reading
            if not chunk:
                return
            reading = asyncio.ensure_future(run_blocking(fh.read, CHUNK))
            yield chunk
    finally:
        if reading.done():
            fh.close()
        else:  # never close a file under a read in flight
            reading.add_done_callback(lambda _: fh.close())


def _flush_and_close(fh: BinaryIO) -> None:
    fh.flush()
    os.fsync(fh.fileno())
    fh.close()


def _discard(fh: BinaryIO, tmp: Path) -> None:
    fh.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _shadowed(key: str) -> Conflict:
    return Conflict(
        f"object {key!r} clashes with another key on the local backend "
        "(one key cannot be both an object and a folder of objects)",
        key=key,
    )


def _os_error(exc: OSError, key: str) -> Exception:
    if exc.errno == errno.ENAMETOOLONG:
        return InvalidKey(f"a segment of {key!r} is too long for the local file system", key=key)
    return exc
