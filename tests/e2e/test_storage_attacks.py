"""Hostile clients against the storage API, over raw sockets, on the local and the S3 backend.

Paths go out exactly as written (`..`, `%2e%2e`, `%2f`, double encoding,
backslashes, NUL/CR/LF, absolute paths, overlong keys), listings get hostile
prefixes and `after`, writes aim at the reserved prefix, and on the local
backend symlinks planted in the root point outside it. Each attack asserts
its status and code, that nothing changed on disk or in the bucket, and that
`/health` stayed fast.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.support.procs import LakehouseProcess, serving, write_config
from tests.support.rawhttp import Answer, exchange, request_bytes

pytestmark = pytest.mark.e2e

OBJECTS = "/v1/storage/objects"
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
SEEDED = {"docs/readme.txt": b"hello", "_lakehouse/catalog/t.json": b"{}", "a/b/c": b"deep"}


@dataclass
class Target:
    """A running server over one backend, and a fingerprint of everything it stores."""

    backend: str
    server: LakehouseProcess
    snapshot: Callable[[], object]
    outside: Path  # a folder beside the store that no request may reach


def tree_fingerprint(*roots: Path) -> list[tuple[str, str, str]]:
    """Every entry under the roots, links unfollowed: (path, kind, content hash or link target)."""
    entries = []
    for root in roots:
        for folder, dirs, files in os.walk(root, followlinks=False):
            for name in sorted(dirs + files):
                path = Path(folder) / name
                if path.is_symlink():
                    entries.append((str(path), "link", os.readlink(path)))
                elif path.is_file():
                    entries.append((str(path), "file", hashlib.sha256(path.read_bytes()).hexdigest()))
                else:
                    entries.append((str(path), "dir", ""))
    return sorted(entries)


@pytest.fixture(scope="module", params=["local", "s3"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    """A server seeded with a few objects (and, on local, planted symlinks), once per backend."""
    base = tmp_path_factory.mktemp(f"attacks-{request.param}")
    outside = base / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"host secret")
    storage: dict[str, object] = {"max_object_bytes": 1024 * 1024}
    env: dict[str, str] = {}
    snapshot: Callable[[], object]
    if request.param == "local":
        data = base / "data"
        storage["root"] = str(data)
        objects = data / "objects"
        for key, value in SEEDED.items():
            (objects / key).parent.mkdir(parents=True, exist_ok=True)
            (objects / key).write_bytes(value)
        # Links an operator or an attacker left in the root, pointing out of it.
        (objects / "escape").symlink_to(outside, target_is_directory=True)
        (objects / "link.txt").symlink_to(outside / "secret")
        (objects / "docs" / "passwd").symlink_to("/etc/passwd")

        def snapshot() -> object:
            return tree_fingerprint(data, outside)
    else:
        import boto3

        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = f"attacks-{uuid.uuid4().hex[:12]}"
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        s3.create_bucket(Bucket=bucket)
        for key, value in SEEDED.items():
            s3.put_object(Bucket=bucket, Key=key, Body=value)
        storage.update(backend="s3", bucket=bucket, endpoint=endpoint, secrets=str(base / "no-secrets.toml"))
        storage["root"] = str(base / "unused-data")
        env = S3_ENV

        def snapshot() -> object:
            listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
            uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
            return (sorted((o["Key"], o["ETag"]) for o in listed), len(uploads), tree_fingerprint(outside))

    config = write_config(base / "lakehouse.toml", {"storage": storage})
    with serving(config, env=env) as proc:
        yield Target(request.param, proc, snapshot, outside)


def attack(target: Target, method: str, path: str, body: bytes = b"") -> Answer:
    """Send one raw request; assert nothing stored changed and `/health` stayed fast."""
    before = target.snapshot()
    headers = {"Content-Length": str(len(body))} if method == "PUT" else {}
    answer = exchange(
        target.server.url, request_bytes(method, path, headers, body), head_only=method == "HEAD"
    )
    assert target.snapshot() == before, f"{method} {path!r} changed what is stored"
    assert httpx.get(target.server.url + "/health", timeout=1.0).status_code == 200
    return answer


def assert_refused(answer: Answer, method: str, status: int, code: str) -> None:
    """The status, and on a method with a body, the contract's error code."""
    assert answer.status == status, (answer.status, answer.body)
    if method != "HEAD":
        assert answer.code() == code, answer.body


TRAVERSALS = [
    "../../etc/passwd",
    "../../../../../../etc/passwd",
    "a/../../etc/passwd",
    "%2e%2e/%2e%2e/etc/passwd",
    "%2E%2E/%2e%2E/etc/passwd",
    "docs/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "a%2f..%2f..%2fetc%2fpasswd",
    "..%2F..%2Fetc%2Fpasswd",
    "./docs/readme.txt",
    "docs/./readme.txt",
    "docs//readme.txt",
    "..%5C..%5Cetc%5Cpasswd",
    "..\\..\\etc\\passwd",
    "docs%5Creadme.txt",
    "a%00b",
    "docs/readme.txt%00.png",
    "a%0d%0aX-Injected:%201",
    "a%0Ab",
    "tab%09key",
    "del%7F",
    "%C2%85nel",
    "%2Fetc%2Fpasswd",
    "/etc/passwd",
    "//etc/passwd",
    "",
    "trailing/",
    "k" * 1025,
    "%C3%A9" * 513,
]


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE"])
@pytest.mark.parametrize("key", TRAVERSALS)
def test_keys_that_break_the_rules_are_refused(target: Target, key: str, method: str) -> None:
    answer = attack(target, method, f"{OBJECTS}/{key}", b"pwned" if method == "PUT" else b"")
    assert_refused(answer, method, 400, "invalid_key")


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE"])
@pytest.mark.parametrize(
    "key",
    ["%252e%252e/%252e%252e/etc/passwd", "%252F..%252Fetc", "..%255C..%255Cetc", "%25%32%65%25%32%65/x"],
)
def test_double_encoded_traversal_is_just_an_odd_missing_key(target: Target, key: str, method: str) -> None:
    # Decoded once, these are literal '%2e%2e' names: valid keys, absent, nothing to do with '..'.
    assert_refused(attack(target, method, f"{OBJECTS}/{key}"), method, 404, "not_found")


def test_raw_control_bytes_in_the_request_line_are_refused(target: Target) -> None:
    for raw in (b"a\x00b", b"a\rb", b"a\x7fb"):
        before = target.snapshot()
        request = (
            b"PUT " + OBJECTS.encode() + b"/" + raw + b" HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx"
        )
        answer = exchange(target.server.url, request)
        assert answer.status == 400, answer
        assert answer.code() in ("invalid_request", "invalid_key")
        assert target.snapshot() == before
    assert httpx.get(target.server.url + "/health", timeout=1.0).status_code == 200


@pytest.mark.parametrize(
    "prefix",
    [
        "../../../../etc/pass",
        "../",
        "..",
        "a/../../",
        "%2e%2e/%2e%2e/etc",
        "..%2F..%2Fetc",
        "/etc",
        "//",
        "a//",
        "./",
        "docs/./",
        "docs\\",
        "docs%5C",
        "a%00",
        "a%0A",
        "k" * 1025,
    ],
)
def test_hostile_listing_prefixes_are_refused(target: Target, prefix: str) -> None:
    if prefix == "..":  # a partial last segment only filters by string: valid, and matches nothing
        answer = attack(target, "GET", f"{OBJECTS}?prefix={prefix}")
        assert answer.status == 200 and answer.json()["objects"] == []
        return
    answer = attack(target, "GET", f"{OBJECTS}?prefix={quote(prefix, safe='%/')}")
    assert_refused(answer, "GET", 400, "invalid_key")


@pytest.mark.parametrize("after", ["../x", "/etc/passwd", "a//b", "a%00", "docs%5Cx", "a/./b", "k" * 1025])
def test_hostile_after_is_refused(target: Target, after: str) -> None:
    answer = attack(target, "GET", f"{OBJECTS}?prefix=docs/&after={quote(after, safe='%/')}")
    assert_refused(answer, "GET", 400, "invalid_key")


def test_listing_pages_with_next_stay_inside_the_store(target: Target) -> None:
    seen: list[str] = []
    after = ""
    for _ in range(10):
        answer = attack(target, "GET", f"{OBJECTS}?limit=1&after={quote(after)}")
        assert answer.status == 200
        page = answer.json()
        seen += [o["key"] for o in page["objects"]]
        if page["next"] is None:
            assert page["truncated"] is False
            break
        assert page["truncated"] is True
        after = page["next"]
    assert seen == sorted(SEEDED)  # planted links are never listed


@pytest.mark.parametrize(
    "key",
    [
        "_lakehouse/x",
        "_lakehouse",
        "_lakehouse/catalog/t.json",
        "_lakehouse/datasets/people/v1/data.parquet",
        "%5Flakehouse/x",
        "_lakehouse%2Fcatalog%2Ft.json",
        "%5F%6C%61%6B%65%68%6F%75%73%65/catalog/t.json",
    ],
)
@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_writes_under_the_reserved_prefix_are_refused(target: Target, key: str, method: str) -> None:
    answer = attack(target, method, f"{OBJECTS}/{key}", b"{}hijacked" if method == "PUT" else b"")
    assert_refused(answer, method, 403, "reserved_key")


@pytest.mark.parametrize(
    "key", ["x/../_lakehouse/catalog/t.json", "./_lakehouse/x", "_lakehouse/./x", "_lakehouse//x"]
)
def test_dotted_ways_into_the_reserved_prefix_are_invalid(target: Target, key: str) -> None:
    assert_refused(attack(target, "PUT", f"{OBJECTS}/{key}", b"x"), "PUT", 400, "invalid_key")


def test_reserved_objects_stay_readable(target: Target) -> None:
    answer = attack(target, "GET", f"{OBJECTS}/_lakehouse/catalog/t.json")
    assert answer.status == 200 and answer.body == b"{}"


@pytest.mark.parametrize(
    ("method", "key", "status", "code"),
    [
        ("GET", "escape/secret", 404, "not_found"),
        ("HEAD", "escape/secret", 404, "not_found"),
        ("DELETE", "escape/secret", 404, "not_found"),
        ("PUT", "escape/secret", 400, "invalid_key"),
        ("PUT", "escape/new", 400, "invalid_key"),
        ("PUT", "escape/deeper/new", 400, "invalid_key"),
        ("GET", "link.txt", 404, "not_found"),
        ("HEAD", "link.txt", 404, "not_found"),
        ("DELETE", "link.txt", 404, "not_found"),
        ("PUT", "link.txt", 400, "invalid_key"),
        ("GET", "docs/passwd", 404, "not_found"),
        ("PUT", "docs/passwd", 400, "invalid_key"),
        ("DELETE", "docs/passwd", 404, "not_found"),
        ("GET", "escape", 404, "not_found"),
    ],
)
def test_symlinks_in_the_root_are_never_followed(
    target: Target, method: str, key: str, status: int, code: str
) -> None:
    if target.backend != "local":
        pytest.skip("symlinks are a local-backend matter")
    answer = attack(target, method, f"{OBJECTS}/{key}", b"overwritten" if method == "PUT" else b"")
    assert_refused(answer, method, status, code)
    assert (target.outside / "secret").read_bytes() == b"host secret"
    assert sorted(p.name for p in target.outside.iterdir()) == ["secret"]


@pytest.mark.parametrize("prefix", ["escape/", "escape", "link", "docs/", "docs/pa"])
def test_listings_skip_symlinks(target: Target, prefix: str) -> None:
    answer = attack(target, "GET", f"{OBJECTS}?prefix={prefix}")
    assert answer.status == 200
    keys = [o["key"] for o in answer.json()["objects"]]
    assert keys == sorted(k for k in SEEDED if k.startswith(prefix))


def test_nothing_outside_the_store_was_ever_touched(target: Target) -> None:
    assert (target.outside / "secret").read_bytes() == b"host secret"
    if target.backend == "local":
        assert (
            os.readlink(target.server.config.parent / "data" / "objects" / "docs" / "passwd") == "/etc/passwd"
        )
