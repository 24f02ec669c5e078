"""The local-folder backend: objects as files under `<root>/objects/`.

Writes go to a temp file in `<root>/.tmp/` (outside the key space), are
fsynced, then moved into place with `os.link` (create only: fails when the
key exists, atomically, also across processes) or `os.replace`. A reader
therefore sees the old object or the new one, never half of one, and a crash
leaves at most an orphan temp file, which the next start removes.

Conditional replaces (`if_match`) compare the current file's etag and move the
new one in under the store's lock, which every commit of this process takes:
within one process no write slips between the check and the replace. Another
process writing the same key in the same root (two storaged on one folder)
could land between the two; split mode runs one storaged per root.

Nothing below `objects/` is followed: every call opens a key's folders one
by one relative to the folder before (O_NOFOLLOW), so a symlink placed in the
root, by an operator or an attacker, is never a way out of the store: reads
through one answer 404, writes through one 400, and listings skip it.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import errno
import hashlib
import os
import shutil
import stat
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import anyio

from lakehouse.errors import AlreadyExists, Conflict, InvalidKey, NotFound, PreconditionFailed
from lakehouse.runner import run_blocking
from lakehouse.storage.base import ByteRange, ObjectInfo, PutResult, write_streamed
from lakehouse.storage.keys import validate_key

CHUNK = 1024 * 1024
TMP_SUFFIX = ".part"
# Below `objects/` nothing is followed: a link in place of a folder or an
# object is refused. O_NONBLOCK keeps a FIFO planted at a key from hanging the open.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class LocalStore:
    """An ObjectStore over a folder on this machine."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.objects = self.root / "objects"
        self.tmp = self.root / ".tmp"
        self.objects.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._commit_lock = threading.Lock()
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
        if_match: str | None = None,
    ) -> PutResult:
        """Store the streamed bytes atomically under `key` (see ObjectStore.put)."""
        tmp, fh = await run_blocking(self._tmp_file)
        try:
            await write_streamed(chunks, fh.writelines, max_bytes)
            await run_blocking(_flush_and_close, fh)
            return await run_blocking(self._commit, tmp, key, if_absent, if_match)
        finally:
            # Shielded: a cancelled request must still remove its temp file.
            with anyio.CancelScope(shield=True):
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

    async def put_file(self, key: str, path: Path, *, move: bool = False) -> PutResult:
        """Store a copy of a local file atomically; with `move`, the file itself when it can."""
        return await run_blocking(self._put_file_sync, key, Path(path), move)

    def _put_file_sync(self, key: str, source: Path, move: bool = False) -> PutResult:
        if move and (moved := self._take(source)) is not None:
            try:
                return self._commit(moved, key, False)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(moved)
        tmp, fh = self._tmp_file()
        try:
            with open(source, "rb") as src:
                shutil.copyfileobj(src, fh, CHUNK)
            _flush_and_close(fh)
            return self._commit(tmp, key, False)
        finally:
            _discard(fh, tmp)

    def _take(self, source: Path) -> Path | None:
        """`source` renamed into the temp folder and fsynced, or None when it is on another filesystem."""
        tmp = self.tmp / f"{os.getpid()}-{uuid.uuid4().hex}{TMP_SUFFIX}"
        try:
            os.rename(source, tmp)
        except OSError as exc:
            if exc.errno == errno.EXDEV:
                return None
            raise
        try:
            fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return tmp

    def _commit(self, tmp: Path, key: str, if_absent: bool, if_match: str | None = None) -> PutResult:
        """Move a finished temp file to `key`: link (create) first, replace if allowed."""
        folders, name = _split(key)
        # A concurrent delete may prune a parent folder between mkdir and
        # link; retrying a few times covers that race.
        for _ in range(5):
            try:
                with self._folder(folders, key, create=True) as fds, self._commit_lock:
                    if if_match is not None:
                        return self._replace_matching(fds[-1], tmp, name, key, if_match)
                    return self._link_into(fds[-1], tmp, name, key, if_absent)
            except FileNotFoundError:
                continue
        raise Conflict(f"object {key!r} could not be stored: its folder kept disappearing", key=key)

    def _link_into(self, folder: int, tmp: Path, name: str, key: str, if_absent: bool) -> PutResult:
        try:
            os.link(tmp, name, dst_dir_fd=folder)
            replaced = False
        except FileExistsError:
            if if_absent:
                raise AlreadyExists(f"object {key!r} already exists", key=key) from None
            mode = os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode
            if stat.S_ISDIR(mode):
                raise _shadowed(key) from None
            if not stat.S_ISREG(mode):
                raise _linked(key) from None
            os.replace(tmp, name, dst_dir_fd=folder)
            replaced = True
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise
            raise _os_error(exc, key) from None
        os.fsync(folder)
        return PutResult(
            info=_info(key, os.stat(name, dir_fd=folder, follow_symlinks=False)), replaced=replaced
        )

    def _replace_matching(self, folder: int, tmp: Path, name: str, key: str, etag: str) -> PutResult:
        """Replace the object only if its current etag is `etag` (the caller holds the commit lock)."""
        try:
            st = os.stat(name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            raise PreconditionFailed(f"object {key!r} does not exist (If-Match)", key=key) from None
        if not stat.S_ISREG(st.st_mode) or _info(key, st).etag != etag:
            raise PreconditionFailed(
                f"object {key!r} has changed: its etag is not the one given in If-Match", key=key
            )
        os.replace(tmp, name, dst_dir_fd=folder)
        os.fsync(folder)
        return PutResult(info=_info(key, os.stat(name, dir_fd=folder, follow_symlinks=False)), replaced=True)

    @contextlib.contextmanager
    def _folder(
        self, folders: builtins.list[str], key: str, *, create: bool = False
    ) -> Iterator[builtins.list[int]]:
        """Open the folders of a key one by one from `objects/`, never through a link.

        Yields the open descriptors, `objects/` first and the key's own folder
        last. Every step opens one name relative to the folder before it with
        O_NOFOLLOW, so a symlink anywhere under the root (placed by an operator
        or an attacker) is refused rather than followed out of the store.

        Raises:
            NotFound: (reading) a folder is missing, is a file, or is a link.
            InvalidKey: (writing) a folder is a link or its name is too long.
            Conflict: (writing) a folder of the key is an object.
            FileNotFoundError: (writing) a folder vanished meanwhile; retry.
        """
        fds = [os.open(self.objects, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)]
        try:
            for segment in folders:
                if create:
                    try:
                        os.mkdir(segment, dir_fd=fds[-1])
                    except FileExistsError:
                        pass
                    except OSError as exc:
                        raise _os_error(exc, key) from None
                try:
                    fds.append(os.open(segment, _DIR_FLAGS, dir_fd=fds[-1]))
                except OSError as exc:
                    if not create:
                        raise _read_error(exc, key) from None
                    if exc.errno == errno.ENOENT:
                        raise
                    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                        mode = os.stat(segment, dir_fd=fds[-1], follow_symlinks=False).st_mode
                        raise (_shadowed(key) if stat.S_ISREG(mode) else _linked(key)) from None
                    raise _os_error(exc, key) from None
            yield fds
        finally:
            for fd in fds:
                os.close(fd)

    async def get(self, key: str) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
        """The object's info and a stream of its bytes, read from one open file."""
        fh, info, small = await run_blocking(self._open, key, True)
        if small is not None:  # already read whole: no further thread hops
            return info, _one_chunk(small)
        return info, _read_chunks(fh)

    def _open(self, key: str, read_small: bool = False) -> tuple[BinaryIO, ObjectInfo, bytes | None]:
        folders, name = _split(key)
        with self._folder(folders, key) as fds:
            try:
                fd = os.open(name, _FILE_FLAGS, dir_fd=fds[-1])
            except OSError as exc:
                raise _read_error(exc, key) from None
        # Info from the open file, so it matches the bytes even if a replace lands now.
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # a folder, a FIFO, a device: not an object
            os.close(fd)
            raise NotFound(f"no object {key!r}", key=key)
        fh = os.fdopen(fd, "rb")
        info = _info(key, st)
        if read_small and info.size <= CHUNK:
            with fh:
                return fh, info, fh.read()
        return fh, info, None

    async def get_range(
        self, key: str, byte_range: ByteRange
    ) -> tuple[ObjectInfo, tuple[int, int], AsyncIterator[bytes]]:
        """The object's info, the span served, and its bytes: one open file, seeked to the start."""
        fh, info, _ = await run_blocking(self._open, key)
        try:
            start, end = byte_range.resolve(info.size)
            await run_blocking(fh.seek, start)
        except BaseException:
            fh.close()
            raise
        return info, (start, end), _read_chunks(fh, end - start + 1)

    async def get_bytes(self, key: str) -> bytes:
        """The whole object in memory."""
        fh, _, _ = await run_blocking(self._open, key)
        with fh:
            return await run_blocking(fh.read)

    async def head(self, key: str) -> ObjectInfo:
        """The object's info."""
        return await run_blocking(self._head, key)

    def _head(self, key: str) -> ObjectInfo:
        folders, name = _split(key)
        with self._folder(folders, key) as fds:
            try:
                st = os.stat(name, dir_fd=fds[-1], follow_symlinks=False)
            except OSError as exc:
                raise _read_error(exc, key) from None
        if not stat.S_ISREG(st.st_mode):
            raise NotFound(f"no object {key!r}", key=key)
        return _info(key, st)

    async def delete(self, key: str) -> None:
        """Remove the object and any folders it leaves empty."""
        await run_blocking(self._delete, key)

    def _delete(self, key: str) -> None:
        folders, name = _split(key)
        with self._folder(folders, key) as fds:
            try:
                mode = os.stat(name, dir_fd=fds[-1], follow_symlinks=False).st_mode
            except OSError as exc:
                raise _read_error(exc, key) from None
            if not stat.S_ISREG(mode):
                raise NotFound(f"no object {key!r}", key=key)
            try:
                os.unlink(name, dir_fd=fds[-1])
            except OSError as exc:
                raise _read_error(exc, key) from None
            # Prune the folders the delete left empty, deepest first.
            for depth in range(len(folders), 0, -1):
                try:
                    os.rmdir(folders[depth - 1], dir_fd=fds[depth - 1])
                except OSError:
                    break

    async def list(
        self, prefix: str = "", limit: int | None = None, *, after: str | None = None
    ) -> tuple[builtins.list[ObjectInfo], bool]:
        """Objects under `prefix` whose key sorts after `after`, sorted by key, and whether more exist."""
        return await run_blocking(self._list, prefix, limit, after)

    def _list(
        self, prefix: str, limit: int | None, after: str | None
    ) -> tuple[builtins.list[ObjectInfo], bool]:
        # Walk only the deepest folder the prefix names; filter the rest by string.
        folder, _, _ = prefix.rpartition("/")
        folders = folder.split("/") if folder else []
        if any(segment in ("", ".", "..") for segment in folders) or not _inside(self.objects, folder):
            raise InvalidKey("the prefix reaches outside the store", prefix=prefix)
        floor = after.encode("utf-8") if after else b""
        found: builtins.list[tuple[bytes, str, os.stat_result]] = []
        try:
            with self._folder(folders, prefix) as fds:
                for key, st in _scan(fds[-1], folder, prefix):
                    encoded = key.encode("utf-8", "surrogateescape")
                    if key.startswith(prefix) and encoded > floor:
                        found.append((encoded, key, st))
        except NotFound:
            return [], False
        found.sort(key=lambda item: item[0])
        truncated = limit is not None and len(found) > limit
        if limit is not None:
            found = found[:limit]
        return [_info(key, st) for _, key, st in found], truncated

    def engine_path(self, key: str) -> str:
        """The object's absolute file path, for DuckDB."""
        return str(self._path(key))

    def engine_root(self) -> str:
        """The folder under which every object lives."""
        return str(self.objects)

    async def close(self) -> None:
        """Nothing to release: files are opened per call."""


def _split(key: str) -> tuple[list[str], str]:
    """A key's folder names and its file name, refusing anything that could leave the store.

    Keys are validated before they reach a backend; this is the second layer.
    """
    parts = key.split("/")
    if any(part in ("", ".", "..") or "\0" in part for part in parts):
        raise InvalidKey(f"the key has an empty, '.' or '..' segment: {key!r}", key=key)
    return parts[:-1], parts[-1]


def _inside(root: Path, rel: str) -> bool:
    """Whether `root/rel`, with `..` collapsed, is `root` or lies under it."""
    joined = os.path.normpath(os.path.join(root, rel))
    return joined == str(root) or joined.startswith(str(root) + os.sep)


def _scan(folder: int, rel: str, prefix: str) -> Iterator[tuple[str, os.stat_result]]:
    """Every regular file under an open folder, as (key, stat); links and special files are skipped."""
    with os.scandir(folder) as it:
        entries = builtins.list(it)
    for entry in entries:
        key = f"{rel}/{entry.name}" if rel else entry.name
        try:
            if entry.is_dir(follow_symlinks=False):
                # Only folders that can hold keys starting with the prefix.
                if not (key.startswith(prefix) or prefix.startswith(key + "/")):
                    continue
                try:
                    sub = os.open(entry.name, _DIR_FLAGS, dir_fd=folder)
                except OSError:
                    continue  # removed, or replaced by a link, while we walked
                try:
                    yield from _scan(sub, key, prefix)
                finally:
                    os.close(sub)
            elif entry.is_file(follow_symlinks=False) and _listable(key):
                yield key, entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed while we walked


def _listable(key: str) -> bool:
    """Whether a file's name is a valid key (a file an operator named oddly is not listed)."""
    try:
        validate_key(key)
    except InvalidKey:
        return False
    return True


def _read_error(exc: OSError, key: str) -> Exception:
    """An OSError met while reading a key: missing, a file as a folder, or a link all mean 404."""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EISDIR):
        return NotFound(f"no object {key!r}", key=key)
    return _os_error(exc, key)


def _linked(key: str) -> InvalidKey:
    return InvalidKey(
        f"object {key!r} would pass through a link or special file on the local backend, which is refused",
        key=key,
    )


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


async def _read_chunks(fh: BinaryIO, length: int | None = None) -> AsyncIterator[bytes]:
    # The next megabyte is read while the current one is being sent; `length`
    # (a range) stops after that many bytes.
    left = length

    def want() -> int:
        return CHUNK if left is None else min(CHUNK, left)

    reading = asyncio.ensure_future(run_blocking(fh.read, want()))
    try:
        while True:
            chunk = await reading
            if not chunk:
                return
            if left is not None:
                left -= len(chunk)
            if left is None or left > 0:
                reading = asyncio.ensure_future(run_blocking(fh.read, want()))
            yield chunk
            if left is not None and left <= 0:
                return
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
