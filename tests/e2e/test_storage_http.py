"""The storage API through a real `lakehouse serve`: round trips, bad input, caps, crashes."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import StartLakehouse
from tests.support.procs import LakehouseProcess, serving, write_config

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
OBJECTS = "/v1/storage/objects"


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    """The contract's error body with this status and code."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def listed(client: httpx.Client, prefix: str = "") -> list[str]:
    """Keys the API lists under `prefix`."""
    response = client.get(OBJECTS, params={"prefix": prefix})
    assert response.status_code == 200
    return [o["key"] for o in response.json()["objects"]]


def files_under(root: Path) -> list[str]:
    """Every file in the store's folder, temp files included."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def raw_upload(
    url: str,
    path: str,
    headers: dict[str, str],
    chunks: Iterator[bytes],
    chunked: bool,
    method: str = "PUT",
) -> tuple[int, bytes, int]:
    """Send a request over a bare socket, streaming the body until the server answers.

    Returns the status, the response bytes, and how many body bytes were sent.
    """
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    sent = 0
    try:
        head = f"{method} {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n"
        if chunked:
            head += "Transfer-Encoding: chunked\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        sock.sendall(head.encode())
        answered = False
        for chunk in chunks:
            if select.select([sock], [], [], 0)[0]:
                answered = True
                break
            data = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
            try:
                sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
        if chunked and not answered:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(b"0\r\n\r\n")
        response = b""
        while b"\r\n\r\n" not in response or (
            method != "HEAD" and len(response) < _expected_length(response)
        ):
            data = sock.recv(65536)
            if not data:
                break
            response += data
    finally:
        sock.close()
    status = int(response.split(b" ", 2)[1])
    return status, response.partition(b"\r\n\r\n")[2], sent


def _expected_length(response: bytes) -> int:
    head, _, _ = response.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(head) + 4 + int(value.strip())
    return 0


def zeros(total: int, size: int = MIB) -> Iterator[bytes]:
    """`total` zero bytes in chunks of `size`."""
    block = b"\0" * size
    for _ in range(total // size):
        yield block


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LakehouseProcess]:
    """One all-in-one process with a 1 MiB object cap, shared by the tests that use their own keys."""
    root = tmp_path_factory.mktemp("storage-e2e")
    config = write_config(
        root / "lakehouse.toml", {"storage": {"root": str(root / "data"), "max_object_bytes": MIB}}
    )
    with serving(config) as proc:
        yield proc


def data_dir(server: LakehouseProcess) -> Path:
    """The shared server's storage folder."""
    return server.config.parent / "data"


def test_put_get_head_list_delete_round_trip(server: LakehouseProcess) -> None:
    with server.client() as client:
        created = client.put(f"{OBJECTS}/docs/readme.txt", content=b"hello lakehouse")
        assert created.status_code == 201
        assert created.json()["key"] == "docs/readme.txt"
        assert created.json()["size"] == 15
        etag = created.json()["etag"]
        got = client.get(f"{OBJECTS}/docs/readme.txt")
        assert got.status_code == 200
        assert got.content == b"hello lakehouse"
        assert got.headers["content-length"] == "15"
        assert got.headers["etag"].strip('"') == etag
        head = client.head(f"{OBJECTS}/docs/readme.txt")
        assert head.status_code == 200
        assert head.headers["content-length"] == "15"
        assert head.headers["etag"] == got.headers["etag"]
        replaced = client.put(f"{OBJECTS}/docs/readme.txt", content=b"v2")
        assert replaced.status_code == 200
        assert replaced.json()["etag"] != etag
        page = client.get(OBJECTS, params={"prefix": "docs/"}).json()
        assert page["truncated"] is False
        [item] = page["objects"]
        assert (item["key"], item["size"], item["etag"]) == ("docs/readme.txt", 2, replaced.json()["etag"])
        assert item["last_modified"].startswith(time.strftime("%Y-", time.gmtime()))
        assert client.delete(f"{OBJECTS}/docs/readme.txt").status_code == 204
        assert_error(client.get(f"{OBJECTS}/docs/readme.txt"), 404, "not_found")
        assert client.head(f"{OBJECTS}/docs/readme.txt").status_code == 404
        assert_error(client.delete(f"{OBJECTS}/docs/readme.txt"), 404, "not_found")


def test_list_limit_and_truncation(server: LakehouseProcess) -> None:
    with server.client() as client:
        for n in range(5):
            assert client.put(f"{OBJECTS}/lim/p/{n}", content=b"x").status_code == 201
        client.put(f"{OBJECTS}/lim/q", content=b"x")
        page = client.get(OBJECTS, params={"prefix": "lim/p/", "limit": 3}).json()
        assert [o["key"] for o in page["objects"]] == ["lim/p/0", "lim/p/1", "lim/p/2"]
        assert page["truncated"] is True
        assert page["next"] == "lim/p/2"
        rest = client.get(OBJECTS, params={"prefix": "lim/p/", "limit": 3, "after": page["next"]}).json()
        assert [o["key"] for o in rest["objects"]] == ["lim/p/3", "lim/p/4"]
        assert (rest["truncated"], rest["next"]) == (False, None)
        assert_error(client.get(OBJECTS, params={"after": "../x"}), 400, "invalid_key")
        assert_error(client.get(OBJECTS, params={"prefix": "../../../../etc/pass"}), 400, "invalid_key")
        assert listed(client, "lim/") == ["lim/p/0", "lim/p/1", "lim/p/2", "lim/p/3", "lim/p/4", "lim/q"]
        for bad in ({"limit": 0}, {"limit": "many"}, {"limit": 10**6}):
            assert_error(client.get(OBJECTS, params=bad), 400, "invalid_request")
        assert_error(client.get(OBJECTS, params={"prefix": "a\\b"}), 400, "invalid_key")


@pytest.mark.parametrize(
    "raw_path",
    [
        "a/../b",
        "a/%2e%2e/b",
        "..",
        "a//b",
        "a/./b",
        "a%5Cb",
        "a\\b",
        "a%00b",
        "line%0Abreak",
        "del%7F",
        "%2Fleading",
        "",
        "trailing/",
        "k" * 1025,
    ],
)
def test_invalid_keys_are_refused_on_every_method(server: LakehouseProcess, raw_path: str) -> None:
    with server.client() as client:
        before = listed(client)
    for method in ("PUT", "GET", "HEAD", "DELETE"):
        # A bare socket sends the path exactly as written: clients would normalise '..' and '//'.
        headers = {"Content-Length": "4"} if method == "PUT" else {}
        body = iter([b"data"]) if method == "PUT" else iter([])
        status, answer, _ = raw_upload(server.url, f"{OBJECTS}/{raw_path}", headers, body, False, method)
        assert status == 400, answer
        if method != "HEAD":
            assert b'"invalid_key"' in answer
    with server.client() as client:
        assert listed(client) == before
    assert list((data_dir(server) / ".tmp").iterdir()) == []


def test_key_of_exactly_1024_bytes_is_accepted(server: LakehouseProcess) -> None:
    key = "long/" + "/".join(["é" * 100] * 5) + "/" + "x" * 14
    assert len(key.encode()) == 1024
    with server.client() as client:
        assert client.put(f"{OBJECTS}/{key}", content=b"1").status_code == 201
        assert client.get(f"{OBJECTS}/{key}").content == b"1"
        assert_error(client.put(f"{OBJECTS}/{key}x", content=b"1"), 400, "invalid_key")
        # One segment longer than a file name may be: refused by the local backend, not a crash.
        assert_error(client.put(f"{OBJECTS}/{'s' * 300}", content=b"1"), 400, "invalid_key")
        assert listed(client, "long/") == [key]


def test_reserved_keys_are_read_only(server: LakehouseProcess) -> None:
    internal = data_dir(server) / "objects" / "_lakehouse" / "catalog" / "t.json"
    internal.parent.mkdir(parents=True)
    internal.write_bytes(b"{}")
    with server.client() as client:
        assert_error(client.put(f"{OBJECTS}/_lakehouse/catalog/t.json", content=b"x"), 403, "reserved_key")
        assert_error(client.put(f"{OBJECTS}/_lakehouse/new", content=b"x"), 403, "reserved_key")
        assert_error(client.delete(f"{OBJECTS}/_lakehouse/catalog/t.json"), 403, "reserved_key")
        assert client.get(f"{OBJECTS}/_lakehouse/catalog/t.json").content == b"{}"
        assert listed(client, "_lakehouse/") == ["_lakehouse/catalog/t.json"]
    assert internal.read_bytes() == b"{}"


def test_oversize_with_content_length_is_refused_before_the_body(server: LakehouseProcess) -> None:
    status, body, sent = raw_upload(
        server.url, f"{OBJECTS}/big", {"Content-Length": str(300 * MIB)}, zeros(300 * MIB), chunked=False
    )
    assert status == 413
    assert b'"too_large"' in body
    assert sent < 64 * MIB  # answered early, not after reading 300 MiB


def test_oversize_chunked_upload_is_refused_while_streaming_and_leaves_nothing(
    server: LakehouseProcess,
) -> None:
    with server.client() as client:
        client.put(f"{OBJECTS}/cap/kept", content=b"kept")
    chunks = zeros(300 * MIB, 256 * 1024)
    status, body, sent = raw_upload(server.url, f"{OBJECTS}/cap/huge", {}, chunks, True)
    assert status == 413
    assert b'"too_large"' in body
    assert sent < 64 * MIB
    with server.client() as client:
        assert_error(client.get(f"{OBJECTS}/cap/huge"), 404, "not_found")
        assert listed(client, "cap/") == ["cap/kept"]
        exactly = client.put(f"{OBJECTS}/cap/exact", content=b"e" * MIB)
        assert exactly.status_code == 201
    assert files_under(data_dir(server) / "objects" / "cap") == ["exact", "kept"]
    assert list((data_dir(server) / ".tmp").iterdir()) == []


def test_malformed_content_length_is_a_clear_400(server: LakehouseProcess) -> None:
    status, body, _ = raw_upload(server.url, f"{OBJECTS}/x", {"Content-Length": "abc"}, iter([]), False)
    assert status == 400
    assert b'"invalid_request"' in body  # the contract's JSON, not the parser's plain text


def test_kill_9_mid_upload_leaves_no_partial_object(start_lakehouse: StartLakehouse, tmp_path: Path) -> None:
    server = start_lakehouse(config={"storage": {"max_object_bytes": 64 * MIB}})
    with server.client() as client:
        client.put(f"{OBJECTS}/doc", content=b"version 1")
    parts = urlsplit(server.url)
    # A replace of "doc" and a create of "fresh", both cut off half way.
    uploads = []
    try:
        for key, fill in (("doc", b"a"), ("fresh", b"b")):
            sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
            head = f"PUT {OBJECTS}/{key} HTTP/1.1\r\nHost: x\r\nContent-Length: {32 * MIB}\r\n\r\n"
            sock.sendall(head.encode() + fill * MIB)
            uploads.append(sock)
        tmp_dir = tmp_path / "data" / ".tmp"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(list(tmp_dir.iterdir())) < 2:
            time.sleep(0.02)
        assert len(list(tmp_dir.iterdir())) == 2  # both uploads are being written
        server.kill9()
    finally:
        for sock in uploads:
            sock.close()
    server.start()
    with server.client() as client:
        assert client.get(f"{OBJECTS}/doc").content == b"version 1"
        assert_error(client.get(f"{OBJECTS}/fresh"), 404, "not_found")
        assert listed(client) == ["doc"]
    assert files_under(tmp_path / "data") == ["objects/doc"]


def test_concurrency_cap_answers_busy_never_hangs(start_lakehouse: StartLakehouse) -> None:
    server = start_lakehouse(config={"storage": {"max_concurrent": 2}})
    parts = urlsplit(server.url)
    holders = []
    try:
        for n in range(2):  # two uploads that stay open hold both slots
            sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
            sock.sendall(
                f"PUT {OBJECTS}/slow{n} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab".encode()
            )
            holders.append(sock)
        time.sleep(0.3)
        with server.client(timeout=5) as client:
            busy = client.get(OBJECTS)
            assert_error(busy, 503, "busy")
            assert int(busy.headers["retry-after"]) >= 1
            assert client.get("/health").status_code == 200
    finally:
        for sock in holders:
            sock.close()
    with server.client(timeout=5) as client:
        deadline = time.monotonic() + 20
        while client.get(OBJECTS).status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get(OBJECTS).status_code == 200
        assert listed(client) == []


def test_unread_downloads_hold_their_slots(start_lakehouse: StartLakehouse) -> None:
    server = start_lakehouse(config={"storage": {"max_concurrent": 2}})
    with server.client() as client:
        assert client.put(f"{OBJECTS}/big", content=bytes(16 * MIB)).status_code == 201
    parts = urlsplit(server.url)
    readers = []
    try:
        for _ in range(2):  # downloads whose client stops reading: the server waits on send
            sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(f"GET {OBJECTS}/big HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            readers.append(sock)
        time.sleep(0.5)
        with server.client(timeout=5) as client:
            assert_error(client.get(OBJECTS), 503, "busy")
    finally:
        for sock in readers:
            sock.close()
    with server.client(timeout=5) as client:
        deadline = time.monotonic() + 20
        while client.get(OBJECTS).status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert client.get(OBJECTS).status_code == 200


def test_large_download_is_streamed_intact(server: LakehouseProcess) -> None:
    blob = os.urandom(MIB)
    with server.client() as client:
        assert client.put(f"{OBJECTS}/blob", content=blob).status_code == 201
        with client.stream("GET", f"{OBJECTS}/blob") as response:
            assert response.headers["content-length"] == str(MIB)
            received = b"".join(response.iter_bytes())
    assert received == blob


def test_concurrent_writers_of_one_key_leave_one_whole_version(server: LakehouseProcess) -> None:
    bodies = [bytes([n]) * (512 * 1024) for n in range(6)]
    errors: list[BaseException] = []

    def write(body: bytes) -> None:
        try:
            with server.client() as client:
                assert client.put(f"{OBJECTS}/contended", content=body).status_code in (200, 201)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(b,)) for b in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with server.client() as client:
        final = client.get(f"{OBJECTS}/contended").content
    assert final in bodies


def test_storage_works_on_s3_through_the_process(
    start_lakehouse: StartLakehouse, s3_storage: dict[str, Any], s3_env: dict[str, str]
) -> None:
    server = start_lakehouse(config={"storage": {**s3_storage, "max_object_bytes": MIB}}, env=s3_env)
    with server.client() as client:
        assert client.put(f"{OBJECTS}/s3/x.txt", content=b"on s3").status_code == 201
        assert client.get(f"{OBJECTS}/s3/x.txt").content == b"on s3"
        assert listed(client, "s3/") == ["s3/x.txt"]
    status, _, _ = raw_upload(server.url, f"{OBJECTS}/s3/big", {}, zeros(8 * MIB, 256 * 1024), True)
    assert status == 413
    with server.client() as client:
        assert listed(client) == ["s3/x.txt"]
        assert client.delete(f"{OBJECTS}/s3/x.txt").status_code == 204


def test_split_mode_through_the_gateway_behaves_the_same(start_lakehouse: StartLakehouse) -> None:
    storaged = start_lakehouse(config={"storage": {"max_object_bytes": MIB}}, service="storaged")
    gateway = start_lakehouse(
        config={"storage": {"max_object_bytes": MIB}, "gateway": {"storaged_url": storaged.url}},
        service="gateway",
        name="gateway.toml",
    )
    with gateway.client() as client:
        assert client.put(f"{OBJECTS}/split/a", content=b"via gateway").status_code == 201
        got = client.get(f"{OBJECTS}/split/a")
        assert got.content == b"via gateway"
        assert got.headers["content-length"] == "11"
        assert_error(client.put(f"{OBJECTS}/_lakehouse/x", content=b"x"), 403, "reserved_key")
    status, body, sent = raw_upload(
        gateway.url, f"{OBJECTS}/split/big", {}, zeros(300 * MIB, 256 * 1024), True
    )
    assert status == 413
    assert b'"too_large"' in body
    assert sent < 64 * MIB
    with storaged.client() as client:
        assert listed(client) == ["split/a"]


def test_client_dropping_mid_upload_leaves_nothing(server: LakehouseProcess) -> None:
    with server.client() as client:
        client.put(f"{OBJECTS}/drop/doc", content=b"original")
    parts = urlsplit(server.url)
    for key in ("doc", "new"):
        sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
        head = f"PUT {OBJECTS}/drop/{key} HTTP/1.1\r\nHost: x\r\nContent-Length: {MIB}\r\n\r\n"
        sock.sendall(head.encode() + b"x" * (MIB // 2))
        time.sleep(0.2)
        sock.close()
    tmp_dir = data_dir(server) / ".tmp"
    deadline = time.monotonic() + 5
    while list(tmp_dir.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list(tmp_dir.iterdir()) == []
    with server.client() as client:
        assert client.get(f"{OBJECTS}/drop/doc").content == b"original"
        assert listed(client, "drop/") == ["drop/doc"]


@pytest.fixture(params=["local", "s3"])
def backend_server(request: pytest.FixtureRequest, start_lakehouse: StartLakehouse) -> LakehouseProcess:
    """An all-in-one process over each backend: a local folder, or a fresh moto bucket."""
    if request.param == "local":
        return start_lakehouse()
    s3_storage: dict[str, Any] = request.getfixturevalue("s3_storage")
    return start_lakehouse(config={"storage": s3_storage}, env=request.getfixturevalue("s3_env"))


def test_ranges_first_last_suffix_open_and_past_the_end(backend_server: LakehouseProcess) -> None:
    data = bytes(range(256)) * 40  # 10240 bytes, every offset distinguishable
    size = len(data)
    with backend_server.client() as client:
        assert client.put(f"{OBJECTS}/r/obj", content=data).status_code == 201
        url = f"{OBJECTS}/r/obj"
        for header, start, end in [
            ("bytes=0-0", 0, 0),
            (f"bytes={size - 1}-{size - 1}", size - 1, size - 1),
            ("bytes=100-199", 100, 199),
            ("bytes=10000-", 10000, size - 1),
            ("bytes=-7", size - 7, size - 1),
            ("bytes=-999999", 0, size - 1),
            ("bytes=10200-999999", 10200, size - 1),
        ]:
            got = client.get(url, headers={"Range": header})
            assert got.status_code == 206, (header, got.text)
            assert got.content == data[start : end + 1], header
            assert got.headers["content-range"] == f"bytes {start}-{end}/{size}"
            assert got.headers["content-length"] == str(end - start + 1)
            assert got.headers["accept-ranges"] == "bytes"
        for header in (f"bytes={size}-", f"bytes={size + 5}-{size + 10}", "bytes=-0"):
            past = client.get(url, headers={"Range": header})
            assert_error(past, 416, "range_not_satisfiable")
            assert past.headers["content-range"] == f"bytes */{size}"
        # Malformed, reversed, another unit or several ranges: ignored, the whole object (RFC 9110).
        for header in ("bytes=abc", "bytes=5-2", "items=0-1", "bytes=0-1,5-6", "bytes=-"):
            whole = client.get(url, headers={"Range": header})
            assert whole.status_code == 200, header
            assert whole.content == data
        assert client.head(url).headers["accept-ranges"] == "bytes"
        assert client.get(url).headers["accept-ranges"] == "bytes"
        # If-Range with the current etag honours the range; with another, the whole object.
        etag = client.head(url).headers["etag"]
        assert client.get(url, headers={"Range": "bytes=0-3", "If-Range": etag}).status_code == 206
        stale = client.get(url, headers={"Range": "bytes=0-3", "If-Range": '"other"'})
        assert stale.status_code == 200 and stale.content == data


def test_if_none_match_gives_304_on_get_and_head(backend_server: LakehouseProcess) -> None:
    with backend_server.client() as client:
        client.put(f"{OBJECTS}/c/a", content=b"cached")
        etag = client.head(f"{OBJECTS}/c/a").headers["etag"]
        assert etag.startswith('"') and etag.endswith('"')
        bare = etag.strip('"')
        for value in (etag, bare, f"W/{etag}", f'"nope", {etag}', "*"):
            for method in ("GET", "HEAD"):
                got = client.request(method, f"{OBJECTS}/c/a", headers={"If-None-Match": value})
                assert got.status_code == 304, (method, value)
                assert got.headers["etag"] == etag
                assert got.content == b""
        fresh = client.get(f"{OBJECTS}/c/a", headers={"If-None-Match": '"stale"'})
        assert fresh.status_code == 200 and fresh.content == b"cached"


def test_conditional_puts_fail_with_412_and_write_nothing(backend_server: LakehouseProcess) -> None:
    with backend_server.client() as client:
        url = f"{OBJECTS}/p/obj"
        created = client.put(url, content=b"v1", headers={"If-None-Match": "*"})
        assert created.status_code == 201
        etag = created.json()["etag"]
        assert_error(
            client.put(url, content=b"v2", headers={"If-None-Match": "*"}), 412, "precondition_failed"
        )
        assert client.get(url).content == b"v1"
        assert_error(
            client.put(url, content=b"v2", headers={"If-Match": '"wrong"'}), 412, "precondition_failed"
        )
        assert client.get(url).content == b"v1"
        assert_error(
            client.put(f"{OBJECTS}/p/absent", content=b"x", headers={"If-Match": f'"{etag}"'}),
            412,
            "precondition_failed",
        )
        assert_error(
            client.put(f"{OBJECTS}/p/absent", content=b"x", headers={"If-Match": "*"}),
            412,
            "precondition_failed",
        )
        assert client.get(f"{OBJECTS}/p/absent").status_code == 404
        # The right etag, quoted, bare or weak, replaces; the old etag then fails.
        replaced = client.put(url, content=b"v2", headers={"If-Match": f'W/"{etag}"'})
        assert replaced.status_code == 200, replaced.text
        assert client.get(url).content == b"v2"
        assert_error(client.put(url, content=b"v3", headers={"If-Match": etag}), 412, "precondition_failed")
        newer = replaced.json()["etag"]
        assert client.put(url, content=b"v3", headers={"If-Match": newer}).status_code == 200
        assert client.put(url, content=b"v4", headers={"If-Match": "*"}).status_code == 200
        assert client.get(url).content == b"v4"
        assert listed(client, "p/") == ["p/obj"]


def test_listing_pages_with_after_and_next_like_an_s3_client(backend_server: LakehouseProcess) -> None:
    keys = [f"page/{i:03d}" for i in range(7)]
    with backend_server.client() as client:
        for key in keys:
            client.put(f"{OBJECTS}/{key}", content=b"x")
        seen: list[str] = []
        after: str | None = None
        pages = 0
        while True:
            params: dict[str, Any] = {"prefix": "page/", "limit": 3}
            if after:
                params["after"] = after
            page = client.get(OBJECTS, params=params).json()
            seen += [o["key"] for o in page["objects"]]
            pages += 1
            after = page["next"]
            assert page["truncated"] == (after is not None)
            if after is None:
                break
        assert seen == keys
        assert pages == 3
