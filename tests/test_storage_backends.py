"""One behaviour suite every ObjectStore backend must pass: local folder and S3 (moto)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lakehouse.config import Settings, StorageConfig
from lakehouse.errors import AlreadyExists, NotFound, TooLarge
from lakehouse.storage import ObjectStore


async def stream(*parts: bytes) -> AsyncIterator[bytes]:
    """An async body made of `parts`."""
    for part in parts:
        await asyncio.sleep(0)
        yield part


async def read_all(chunks: AsyncIterator[bytes]) -> bytes:
    """Concatenate a streamed body."""
    return b"".join([chunk async for chunk in chunks])


async def test_put_then_get_head_and_list(store: ObjectStore) -> None:
    result = await store.put("docs/a.txt", stream(b"hello ", b"world"))
    assert not result.replaced
    assert result.info.key == "docs/a.txt"
    assert result.info.size == 11
    assert result.info.etag
    info, body = await store.get("docs/a.txt")
    assert await read_all(body) == b"hello world"
    assert info.size == 11
    assert info.etag == result.info.etag
    head = await store.head("docs/a.txt")
    assert (head.size, head.etag) == (11, result.info.etag)
    assert head.last_modified.tzinfo is not None
    listed, truncated = await store.list()
    assert [o.key for o in listed] == ["docs/a.txt"]
    assert listed[0].size == 11
    assert not truncated
    assert await store.get_bytes("docs/a.txt") == b"hello world"


async def test_replace_reports_replaced_and_new_content(store: ObjectStore) -> None:
    first = await store.put_bytes("k", b"one")
    second = await store.put("k", stream(b"second"))
    assert not first.replaced
    assert second.replaced
    assert second.info.etag != first.info.etag
    assert await store.get_bytes("k") == b"second"


async def test_conditional_create_conflicts_and_keeps_the_original(store: ObjectStore) -> None:
    await store.put_bytes("manifests/00001.json", b"{}", if_absent=True)
    with pytest.raises(AlreadyExists):
        await store.put_bytes("manifests/00001.json", b'{"other": 1}', if_absent=True)
    with pytest.raises(AlreadyExists):
        await store.put("manifests/00001.json", stream(b"x"), if_absent=True)
    assert await store.get_bytes("manifests/00001.json") == b"{}"


async def test_concurrent_conditional_creates_have_one_winner(store: ObjectStore) -> None:
    async def attempt(n: int) -> bool:
        try:
            await store.put_bytes("versions/1", str(n).encode(), if_absent=True)
        except AlreadyExists:
            return False
        return True

    wins = await asyncio.gather(*(attempt(n) for n in range(8)))
    assert sum(wins) == 1
    winner = wins.index(True)
    assert await store.get_bytes("versions/1") == str(winner).encode()


async def test_cap_exceeded_mid_stream_leaves_nothing(store: ObjectStore) -> None:
    await store.put_bytes("keep", b"kept")
    with pytest.raises(TooLarge):
        await store.put("big", stream(b"a" * 600, b"b" * 600), max_bytes=1000)
    with pytest.raises(NotFound):
        await store.head("big")
    listed, _ = await store.list()
    assert [o.key for o in listed] == ["keep"]
    await store.put_bytes("big", b"x")  # a later put is unaffected


async def test_cap_exceeded_on_a_multipart_sized_body_leaves_no_upload(
    store: ObjectStore, store_settings: Settings
) -> None:
    part = b"z" * (1024 * 1024)
    with pytest.raises(TooLarge):
        await store.put("huge", stream(*([part] * 12)), max_bytes=11 * 1024 * 1024)
    with pytest.raises(NotFound):
        await store.head("huge")
    assert (await store.list())[0] == []
    if store_settings.storage.backend == "s3":
        import boto3

        s3 = boto3.client("s3", endpoint_url=store_settings.storage.endpoint, region_name="us-east-1")
        uploads = s3.list_multipart_uploads(Bucket=store_settings.storage.bucket).get("Uploads", [])
        assert uploads == []
    else:
        root = Path(store_settings.storage.root)
        assert list((root / ".tmp").iterdir()) == []


async def test_a_failing_body_stores_nothing(store: ObjectStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"partial"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.put("half", broken())
    with pytest.raises(NotFound):
        await store.head("half")


async def test_missing_objects_raise_not_found(store: ObjectStore) -> None:
    with pytest.raises(NotFound):
        await store.get("nope")
    with pytest.raises(NotFound):
        await store.get_bytes("nope/deeper")
    with pytest.raises(NotFound):
        await store.head("nope")
    with pytest.raises(NotFound):
        await store.delete("nope")


async def test_delete_removes_the_object(store: ObjectStore) -> None:
    await store.put_bytes("a/b/c", b"1")
    await store.put_bytes("a/d", b"2")
    await store.delete("a/b/c")
    with pytest.raises(NotFound):
        await store.head("a/b/c")
    with pytest.raises(NotFound):
        await store.delete("a/b/c")
    assert [o.key for o in (await store.list())[0]] == ["a/d"]
    await store.put_bytes("a/b/c", b"again")
    assert await store.get_bytes("a/b/c") == b"again"


async def test_list_by_prefix_with_limit_and_truncation(store: ObjectStore) -> None:
    keys = ["logs/2024/01", "logs/2024/02", "logs/2025/01", "logs-old", "other/x", "logsx/y"]
    for key in keys:
        await store.put_bytes(key, key.encode())
    everything, truncated = await store.list()
    assert [o.key for o in everything] == sorted(keys)
    assert not truncated
    logs, _ = await store.list(prefix="logs/")
    assert [o.key for o in logs] == ["logs/2024/01", "logs/2024/02", "logs/2025/01"]
    partial, _ = await store.list(prefix="logs/20")
    assert len(partial) == 3
    string_prefix, _ = await store.list(prefix="logs")
    assert [o.key for o in string_prefix] == [
        "logs-old",
        "logs/2024/01",
        "logs/2024/02",
        "logs/2025/01",
        "logsx/y",
    ]
    first_two, truncated = await store.list(prefix="logs/", limit=2)
    assert [o.key for o in first_two] == ["logs/2024/01", "logs/2024/02"]
    assert truncated
    exact, truncated = await store.list(prefix="logs/", limit=3)
    assert len(exact) == 3
    assert not truncated
    assert (await store.list(prefix="nothing/")) == ([], False)


async def test_streaming_get_of_a_large_object(store: ObjectStore) -> None:
    block = os.urandom(256 * 1024)
    parts = [bytes([i]) + block[1:] for i in range(12)]  # 3 MiB, several chunks
    await store.put("blob.bin", stream(*parts))
    info, body = await store.get("blob.bin")
    assert info.size == 12 * len(block)
    received = [chunk async for chunk in body]
    assert len(received) > 1
    assert b"".join(received) == b"".join(parts)


async def test_put_file_and_odd_but_valid_keys(store: ObjectStore, tmp_path: Path) -> None:
    source = tmp_path / "upload.parquet"
    source.write_bytes(b"PAR1" * 1000)
    await store.put_file("_lakehouse/datasets/t/part-0.parquet", source)
    assert await store.get_bytes("_lakehouse/datasets/t/part-0.parquet") == b"PAR1" * 1000
    odd = "odd keys/with spaces, é, %20, #hash, ?q=1, +plus &amp; ~tilde"
    await store.put_bytes(odd, b"odd")
    assert await store.get_bytes(odd) == b"odd"
    assert odd in [o.key for o in (await store.list(prefix="odd keys/"))[0]]


async def test_engine_paths_point_inside_the_root(store: ObjectStore, store_settings: Settings) -> None:
    await store.put_bytes("x/y.csv", b"a,b\n1,2\n")
    path = store.engine_path("x/y.csv")
    assert path.startswith(store.engine_root())
    if store_settings.storage.backend == "local":
        assert Path(path).read_bytes() == b"a,b\n1,2\n"
    else:
        assert path == f"s3://{store_settings.storage.bucket}/x/y.csv"


async def test_local_start_up_removes_orphan_temp_files_of_dead_writers(tmp_path: Path) -> None:
    from lakehouse.storage.local import LocalStore

    first = LocalStore(tmp_path / "data")
    await first.put_bytes("kept", b"1")
    dead = tmp_path / "data" / ".tmp" / "999999999-abc.part"
    dead.write_bytes(b"half an upload")
    live = tmp_path / "data" / ".tmp" / f"{os.getppid()}-def.part"
    live.write_bytes(b"someone else's upload in flight")
    LocalStore(tmp_path / "data")
    assert not dead.exists()
    assert live.exists()
    assert [o.key for o in (await first.list())[0]] == ["kept"]


def test_s3_credentials_come_from_the_secrets_file_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lakehouse.config import ConfigError
    from lakehouse.storage.s3 import resolve_credentials

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "env-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    secrets = tmp_path / "secrets.toml"
    cfg = StorageConfig(
        backend="s3", secrets=str(secrets), endpoint="http://127.0.0.1:9000", region="eu-west-1"
    )
    from_env = resolve_credentials(cfg)
    assert (from_env.access_key_id, from_env.secret_access_key) == ("env-id", "env-secret")
    assert (from_env.region, from_env.endpoint) == ("eu-west-1", "http://127.0.0.1:9000")
    secrets.write_text('[s3.primary]\naccess_key_id = "file-id"\nsecret_access_key = "file-secret"\n')
    from_file = resolve_credentials(cfg)
    assert (from_file.access_key_id, from_file.secret_access_key) == ("file-id", "file-secret")
    assert from_file.session_token is None
    secrets.write_text("[s3.primary]\naccess_key_id = 'only-id'\n")
    with pytest.raises(ConfigError, match="secret_access_key"):
        resolve_credentials(cfg)


async def test_local_object_and_folder_of_the_same_name_conflict_cleanly(tmp_path: Path) -> None:
    from lakehouse.errors import Conflict
    from lakehouse.storage.local import LocalStore

    store = LocalStore(tmp_path / "data")
    await store.put_bytes("a", b"file")
    with pytest.raises(Conflict):
        await store.put_bytes("a/b", b"nested")
    await store.put_bytes("c/d", b"nested")
    with pytest.raises(Conflict):
        await store.put("c", stream(b"file"))
    with pytest.raises(NotFound):
        await store.get("c")
    assert [o.key for o in (await store.list())[0]] == ["a", "c/d"]
    assert list((tmp_path / "data" / ".tmp").iterdir()) == []


async def test_s3_unreachable_endpoint_is_unavailable_not_a_crash(
    tmp_path: Path, s3_env: dict[str, str]
) -> None:
    from lakehouse.errors import Unavailable
    from lakehouse.storage.s3 import S3Store
    from tests.support.procs import closed_url

    cfg = StorageConfig(
        backend="s3",
        bucket="nowhere",
        endpoint=closed_url(),
        secrets=str(tmp_path / "absent.toml"),
    )
    store = S3Store.from_config(cfg)  # pointed at a port nothing listens on
    with pytest.raises(Unavailable):
        await store.list()


@pytest.mark.parametrize("size", [0, 1024 * 1024, 1024 * 1024 + 1])
async def test_sizes_around_the_read_chunk_round_trip(store: ObjectStore, size: int) -> None:
    data = os.urandom(size)
    result = await store.put("sized", stream(data) if size else stream())
    assert result.info.size == size
    info, body = await store.get("sized")
    assert info.size == size
    assert await read_all(body) == data


async def test_listing_pages_with_after(store: ObjectStore) -> None:
    keys = ["p/a", "p/b", "p/c/d", "p/z", "p/é", "q/x"]
    for key in keys:
        await store.put_bytes(key, b"x")
    seen: list[str] = []
    after: str | None = None
    while True:
        page, truncated = await store.list(prefix="p/", limit=2, after=after)
        seen += [o.key for o in page]
        if not truncated:
            break
        after = page[-1].key
    # Sorted as UTF-8 bytes: 'é' (0xC3 0xA9) after 'z'.
    assert seen == ["p/a", "p/b", "p/c/d", "p/z", "p/é"]
    assert [o.key for o in (await store.list(prefix="p/", after="p/b0"))[0]] == ["p/c/d", "p/z", "p/é"]
    assert (await store.list(prefix="p/", after="p/é")) == ([], False)
    assert [o.key for o in (await store.list(after="p/é"))[0]] == ["q/x"]


def _fingerprint(folder: Path) -> list[tuple[str, bytes]]:
    return sorted((str(p), p.read_bytes()) for p in folder.rglob("*") if p.is_file())


async def test_local_never_follows_symlinks_out_of_the_root(tmp_path: Path) -> None:
    from lakehouse.errors import InvalidKey
    from lakehouse.storage.local import LocalStore

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"host secret")
    store = LocalStore(tmp_path / "data")
    await store.put_bytes("real/file", b"mine")
    (store.objects / "dir").symlink_to(outside, target_is_directory=True)
    (store.objects / "file").symlink_to(outside / "secret")
    (store.objects / "real" / "inner").symlink_to(outside / "secret")
    before = _fingerprint(outside)
    for key in ("dir/secret", "file", "real/inner", "dir"):
        with pytest.raises(NotFound):
            await store.get(key)
        with pytest.raises(NotFound):
            await store.head(key)
        with pytest.raises(NotFound):
            await store.get_bytes(key)
        with pytest.raises(NotFound):
            await store.delete(key)
    for key in ("dir/secret", "dir/new", "dir/a/b", "file", "real/inner"):
        with pytest.raises(InvalidKey):
            await store.put(key, stream(b"overwritten"))
        with pytest.raises(InvalidKey):
            await store.put_bytes(key, b"overwritten")
    assert [o.key for o in (await store.list())[0]] == ["real/file"]
    assert (await store.list(prefix="dir/")) == ([], False)
    assert _fingerprint(outside) == before
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert list(store.tmp.iterdir()) == []
    assert (store.objects / "file").is_symlink()  # the planted links are left as they were


async def test_local_refuses_traversal_even_past_key_validation(tmp_path: Path) -> None:
    from lakehouse.errors import InvalidKey
    from lakehouse.storage.local import LocalStore

    store = LocalStore(tmp_path / "data")
    (tmp_path / "data" / "victim").write_bytes(b"x")
    for key in ("../victim", "a/../../victim", "a//b", "./a"):
        with pytest.raises(InvalidKey):
            await store.get(key)
        with pytest.raises(InvalidKey):
            await store.put_bytes(key, b"y")
    for prefix in ("../", "../../etc/pass", "a/../../"):
        with pytest.raises(InvalidKey):
            await store.list(prefix=prefix)
    assert (tmp_path / "data" / "victim").read_bytes() == b"x"


async def test_local_special_files_at_a_key_are_not_objects(tmp_path: Path) -> None:
    from lakehouse.storage.local import LocalStore

    store = LocalStore(tmp_path / "data")
    os.mkfifo(store.objects / "fifo")
    with pytest.raises(NotFound):  # and does not hang waiting for a writer
        await store.get("fifo")
    with pytest.raises(NotFound):
        await store.head("fifo")
    assert (await store.list()) == ([], False)
