"""The S3 backend (AWS, MinIO, R2, moto) over obstore's async S3 client.

Credentials come from the secrets file named by `[storage] secrets`
(`[s3.primary] access_key_id, secret_access_key[, session_token]`) when it
exists, else from the standard AWS environment variables. A custom `endpoint`
switches to path-style requests and allows plain http (MinIO, moto).

Large bodies are streamed as multipart uploads that S3 only publishes on
completion, so a reader never sees half an object; a body that fails or
passes its cap aborts the upload and leaves nothing behind. Conditional
writes (`if_absent`, `if_match`) are one conditional PUT that S3 itself
decides atomically (`If-None-Match: *` / `If-Match: <etag>`); S3 does not
take conditions on multipart uploads, so such a body is gathered in memory
first (at most the object cap). The bucket is
never created here: `lakehouse doctor` reports a missing one.
"""

from __future__ import annotations

import builtins
import os
import tomllib
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import obstore
from obstore.exceptions import AlreadyExistsError, BaseError, PreconditionError
from obstore.store import S3Store as _ObS3Store

from lakehouse.config import ConfigError, StorageConfig
from lakehouse.errors import AlreadyExists, NotFound, PreconditionFailed, TooLarge, Unavailable
from lakehouse.storage.base import ByteRange, ObjectInfo, PutResult

if TYPE_CHECKING:
    from obstore import ObjectMeta, PutMode
    from obstore.store import ClientConfig, RetryConfig

# Multipart part size and parts in flight: bounds the memory one upload holds
# (about PART_SIZE * PARTS_IN_FLIGHT) while keeping the link busy.
PART_SIZE = 8 * 1024 * 1024
PARTS_IN_FLIGHT = 3
READ_CHUNK = 1024 * 1024
LIST_PAGE = 1000
# Fail fast when the endpoint is down (the client's default retries for three
# minutes); a request is never cut short while its body is still flowing.
CONNECT_TIMEOUT = timedelta(seconds=5)
RETRIES: RetryConfig = {
    "max_retries": 3,
    "retry_timeout": timedelta(seconds=20),
    "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=2), "base": 2},
}


@dataclass(frozen=True)
class S3Credentials:
    """Where and as whom to reach S3; shared with DuckDB's httpfs secret."""

    access_key_id: str | None
    secret_access_key: str | None
    session_token: str | None
    region: str
    endpoint: str


def resolve_credentials(cfg: StorageConfig) -> S3Credentials:
    """Credentials from the secrets file when it exists, else the AWS environment variables.

    Raises:
        ConfigError: the secrets file exists but is unreadable or lacks `[s3.primary]` keys.
    """
    secrets = Path(cfg.secrets).expanduser() if cfg.secrets else None
    if secrets is not None and secrets.is_file():
        try:
            with open(secrets, "rb") as fh:
                data = tomllib.load(fh)
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"secrets file {secrets} cannot be read: {exc}") from None
        primary = data.get("s3", {}).get("primary", {})
        key_id, secret = primary.get("access_key_id"), primary.get("secret_access_key")
        if not isinstance(key_id, str) or not isinstance(secret, str) or not key_id or not secret:
            raise ConfigError(
                f"secrets file {secrets} needs [s3.primary] access_key_id and secret_access_key"
            )
        token = primary.get("session_token")
        return S3Credentials(
            access_key_id=key_id,
            secret_access_key=secret,
            session_token=token if isinstance(token, str) and token else None,
            region=cfg.region,
            endpoint=cfg.endpoint,
        )
    return S3Credentials(
        access_key_id=os.environ.get("AWS_ACCESS_KEY_ID") or None,
        secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY") or None,
        session_token=os.environ.get("AWS_SESSION_TOKEN") or None,
        region=cfg.region,
        endpoint=cfg.endpoint,
    )


class S3Store:
    """An ObjectStore over one S3 bucket."""

    def __init__(self, bucket: str, creds: S3Credentials) -> None:
        self.bucket = bucket
        self.creds = creds
        options: dict[str, Any] = {"region": creds.region}
        if creds.access_key_id and creds.secret_access_key:
            options["access_key_id"] = creds.access_key_id
            options["secret_access_key"] = creds.secret_access_key
            if creds.session_token:
                options["session_token"] = creds.session_token
        client_options: ClientConfig = {"connect_timeout": CONNECT_TIMEOUT}
        if creds.endpoint:
            options["endpoint"] = creds.endpoint
            options["virtual_hosted_style_request"] = False
            client_options["allow_http"] = creds.endpoint.startswith("http://")
        self._store = _ObS3Store(bucket, client_options=client_options, retry_config=RETRIES, **options)

    @classmethod
    def from_config(cls, cfg: StorageConfig) -> S3Store:
        """The store named by `[storage]` (bucket, endpoint, region, secrets)."""
        return cls(cfg.bucket, resolve_credentials(cfg))

    async def _exists(self, key: str) -> bool:
        try:
            with _s3_errors(key):
                await obstore.head_async(self._store, key)
        except NotFound:
            return False
        return True

    async def put(
        self,
        key: str,
        chunks: AsyncIterator[bytes],
        *,
        max_bytes: int | None = None,
        if_absent: bool = False,
        if_match: str | None = None,
    ) -> PutResult:
        """Store the streamed bytes under `key` (see ObjectStore.put).

        With `if_absent` or `if_match` the S3 client sends one conditional
        PUT, so the body is gathered in memory first.
        """
        mode: PutMode = "overwrite"
        if if_absent:
            mode = "create"
        elif if_match is not None:
            mode = {"e_tag": f'"{if_match}"'}
        existed = if_match is not None or (False if if_absent else await self._exists(key))
        with _s3_errors(key, conditional=if_match is not None):
            await obstore.put_async(
                self._store,
                key,
                _capped(chunks, max_bytes),
                mode=mode,
                use_multipart=False if mode != "overwrite" else None,
                chunk_size=PART_SIZE,
                max_concurrency=PARTS_IN_FLIGHT,
            )
        return PutResult(info=await self.head(key), replaced=existed)

    async def put_bytes(self, key: str, data: bytes, *, if_absent: bool = False) -> PutResult:
        """Store a small in-memory value (one PUT, conditional when `if_absent`)."""
        existed = False if if_absent else await self._exists(key)
        with _s3_errors(key):
            await obstore.put_async(self._store, key, data, mode="create" if if_absent else "overwrite")
        return PutResult(info=await self.head(key), replaced=existed)

    async def put_file(self, key: str, path: Path, *, move: bool = False) -> PutResult:
        """Upload a local file, in parts when it is large (`move` changes nothing: it is uploaded)."""
        existed = await self._exists(key)
        with _s3_errors(key):
            await obstore.put_async(
                self._store, key, Path(path), chunk_size=PART_SIZE, max_concurrency=PARTS_IN_FLIGHT
            )
        return PutResult(info=await self.head(key), replaced=existed)

    async def get(self, key: str) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
        """The object's info and a stream of its bytes from one GET."""
        with _s3_errors(key):
            result = await obstore.get_async(self._store, key)
        return _info(result.meta), _stream(result.stream(min_chunk_size=READ_CHUNK), key)

    async def get_range(
        self, key: str, byte_range: ByteRange
    ) -> tuple[ObjectInfo, tuple[int, int], AsyncIterator[bytes]]:
        """The object's info, the span served, and its bytes from one ranged GET.

        The size comes from a HEAD; the GET is pinned to that version with
        `If-Match`, so a replace landing in between is retried, never mixed.
        """
        for _ in range(3):
            info = await self.head(key)
            start, end = byte_range.resolve(info.size)
            try:
                with _s3_errors(key):
                    result = await obstore.get_async(
                        self._store, key, options={"range": (start, end + 1), "if_match": f'"{info.etag}"'}
                    )
            except AlreadyExists:  # the precondition failed: replaced since the HEAD
                continue
            return info, (start, end), _stream(result.stream(min_chunk_size=READ_CHUNK), key)
        raise Unavailable(f"object {key!r} kept changing while being read; retry", key=key)

    async def get_bytes(self, key: str) -> bytes:
        """The whole object in memory."""
        with _s3_errors(key):
            result = await obstore.get_async(self._store, key)
            return bytes(await result.bytes_async())

    async def head(self, key: str) -> ObjectInfo:
        """The object's info."""
        with _s3_errors(key):
            return _info(await obstore.head_async(self._store, key))

    async def delete(self, key: str) -> None:
        """Remove the object; S3 deletes are silent, so absence is checked first."""
        if not await self._exists(key):
            raise NotFound(f"no object {key!r}", key=key)
        with _s3_errors(key):
            await obstore.delete_async(self._store, key)

    async def list(
        self, prefix: str = "", limit: int | None = None, *, after: str | None = None
    ) -> tuple[builtins.list[ObjectInfo], bool]:
        """Objects under `prefix` whose key sorts after `after`, sorted by key, and whether more exist."""
        # obstore prefixes match whole path segments; list the prefix's folder
        # and filter by string. S3 lists in key order (UTF-8 bytes, which is
        # code point order), from just after `after`, so stop once past the prefix.
        folder = prefix.rpartition("/")[0] or None
        found: builtins.list[ObjectInfo] = []
        with _s3_errors(prefix):
            async for page in obstore.list(self._store, folder, offset=after or None, chunk_size=LIST_PAGE):
                for meta in page:
                    key = meta["path"]
                    if after and key <= after:
                        continue
                    if not key.startswith(prefix):
                        if key > prefix:
                            return found, False
                        continue
                    if limit is not None and len(found) >= limit:
                        return found, True
                    found.append(_info(meta))
        return found, False

    def engine_path(self, key: str) -> str:
        """The object's `s3://bucket/key` URL, for DuckDB."""
        return f"s3://{self.bucket}/{key}"

    def engine_root(self) -> str:
        """The `s3://bucket` prefix under which every object lives."""
        return f"s3://{self.bucket}"

    async def close(self) -> None:
        """Nothing to release: the client pools its own connections."""


def _info(meta: ObjectMeta) -> ObjectInfo:
    return ObjectInfo(
        key=meta["path"],
        size=meta["size"],
        etag=(meta["e_tag"] or "").strip('"'),
        last_modified=meta["last_modified"],
    )


async def _capped(chunks: AsyncIterator[bytes], max_bytes: int | None) -> AsyncIterator[bytes]:
    """Pass `chunks` through, raising TooLarge (which aborts the upload) past the cap."""
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise TooLarge(f"the body is larger than the {max_bytes}-byte limit", limit=max_bytes)
        yield chunk


async def _stream(chunks: Any, key: str) -> AsyncIterator[bytes]:
    with _s3_errors(key):
        async for chunk in chunks:
            yield bytes(chunk)


@contextmanager
def _s3_errors(key: str, *, conditional: bool = False) -> Iterator[None]:
    """Turn the S3 client's errors into the lakehouse's typed ones.

    `conditional`: an `If-Match` write, whose failed or absent target is PreconditionFailed.
    """
    try:
        yield
    except (FileNotFoundError, PreconditionError) as exc:
        if conditional:
            raise PreconditionFailed(
                f"object {key!r} is absent or has changed: its etag is not the one given in If-Match", key=key
            ) from None
        if isinstance(exc, FileNotFoundError):
            raise NotFound(f"no object {key!r}", key=key) from None
        raise AlreadyExists(f"object {key!r} already exists", key=key) from None
    except AlreadyExistsError:
        raise AlreadyExists(f"object {key!r} already exists", key=key) from None
    except BaseError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise Unavailable(f"the S3 store could not complete the request: {reason}", key=key) from None
