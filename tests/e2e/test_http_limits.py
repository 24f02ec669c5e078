"""`[http]` limits through a real `lakehouse serve`, tried the way a hostile client would.

Oversized JSON bodies (declared and chunked), oversized and unfinished heads,
idle and trickling bodies, crowds of idle connections, malformed
Content-Length, and the storage cap under keep-alive load. Each asserts the
status and code, that nothing was kept, and that the server stayed up.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.procs import LakehouseProcess, serving, write_config
from tests.support.rawhttp import (
    Answer,
    closed_by_server,
    connect,
    exchange,
    parse,
    read_answer,
    request_bytes,
    rss_bytes,
    stream_until_answered,
    zeros,
)

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
OBJECTS = "/v1/storage/objects"
JSON_CAP = MIB
MAX_CONNECTIONS = 100
SLOTS = 4


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's folder: config, data root and ingest spool."""
    return tmp_path_factory.mktemp("http-limits")


@pytest.fixture(scope="module")
def server(root: Path) -> Iterator[LakehouseProcess]:
    """One all-in-one process with small limits, so each is quick to reach."""
    config = write_config(
        root / "lakehouse.toml",
        {
            "storage": {"root": str(root / "data"), "max_object_bytes": 8 * MIB, "max_concurrent": SLOTS},
            "ingestd": {"tmp_dir": str(root / "spool")},
            "http": {"max_json_bytes": JSON_CAP, "idle_timeout_secs": 1, "max_connections": MAX_CONNECTIONS},
        },
    )
    with serving(config) as proc:
        yield proc


def assert_error(answer: Answer | httpx.Response, status: int, code: str) -> None:
    """The contract's error body with this status and code."""
    status_got = answer.status if isinstance(answer, Answer) else answer.status_code
    assert status_got == status, (status_got, answer.headers, getattr(answer, "body", b""))
    body = answer.json()
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]


def assert_healthy(server: LakehouseProcess) -> None:
    """The process is alive and `/health` answers on a fresh connection within a second."""
    assert server.proc is not None and server.proc.poll() is None
    assert httpx.get(server.url + "/health", timeout=1.0).status_code == 200


def wait_healthy(server: LakehouseProcess, within: float = 10.0) -> None:
    """`/health` answers again within `within` seconds (it may be refused meanwhile)."""
    deadline = time.monotonic() + within
    while True:
        try:
            if httpx.get(server.url + "/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def spool_files(root: Path) -> list[Path]:
    """Upload spool files ingest left behind."""
    folder = root / "spool"
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def leftovers(root: Path) -> list[str]:
    """Temp files under the store."""
    return sorted(p.name for p in (root / "data" / ".tmp").iterdir())


# -- JSON bodies --------------------------------------------------------------


def test_declared_oversized_json_is_refused_before_the_body(server: LakehouseProcess) -> None:
    head = request_bytes(
        "POST", "/v1/sql", {"Content-Type": "application/json", "Content-Length": str(200 * MIB)}
    )
    answer = stream_until_answered(server.url, head, zeros(200 * MIB))
    assert_error(answer, 413, "too_large")
    assert answer.json()["error"]["limit"] == JSON_CAP
    assert answer.sent < 16 * MIB
    assert_healthy(server)


def test_chunked_oversized_json_is_refused_while_it_streams_and_never_buffered(
    server: LakehouseProcess,
) -> None:
    assert server.proc is not None
    before = rss_bytes(server.proc.pid)
    answers: list[Answer] = []

    def send() -> None:
        head = request_bytes("POST", "/v1/vectors/index/x/search", {"Transfer-Encoding": "chunked"})
        answers.append(stream_until_answered(server.url, head, zeros(200 * MIB, 256 * 1024), chunked=True))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 4
    for answer in answers:
        assert_error(answer, 413, "too_large")
        assert answer.sent < 32 * MIB  # refused early: the client never got to finish its 200 MiB
    grown = rss_bytes(server.proc.pid) - before
    assert grown < 64 * MIB, f"RSS grew {grown / MIB:.0f} MiB for 4 refused 200 MiB bodies"
    assert_healthy(server)


def test_the_json_cap_is_chosen_by_route_not_by_content_type(server: LakehouseProcess, root: Path) -> None:
    two_mib = b"a,b\n" + b"1,2\n" * (2 * MIB // 4)
    with server.client() as client:
        # Uploads have their own caps: 2 MiB passes though the JSON cap is 1 MiB, whatever the type says.
        stored = client.put(
            f"{OBJECTS}/limits/big.json", content=two_mib, headers={"Content-Type": "application/json"}
        )
        assert stored.status_code == 201, stored.text
        ingested = client.post("/v1/ingest/limits_big", content=two_mib, headers={"Content-Type": "text/csv"})
        assert ingested.status_code == 201, ingested.text
        # A JSON route stays capped when the client calls its body something else.
        lied = client.post("/v1/sql", content=b"x" * (JSON_CAP + 1), headers={"Content-Type": "text/csv"})
        assert_error(lied, 413, "too_large")
        # A body just under the cap reaches the route (which judges it on its merits).
        padded = b'{"sql": "SELECT 1"}' + b" " * (JSON_CAP - 100)
        under = client.post("/v1/sql", content=padded, headers={"Content-Type": "application/json"})
        assert under.status_code == 200, under.text
    assert_healthy(server)


# -- headers ------------------------------------------------------------------


def test_a_head_over_the_cap_gets_431_in_json(server: LakehouseProcess) -> None:
    answer = exchange(server.url, request_bytes("GET", "/health", {"X-Big": "a" * (100 * 1024)}))
    assert_error(answer, 431, "headers_too_large")
    assert answer.headers["x-request-id"]
    many = {f"X-H{n}": "v" * 1000 for n in range(80)}  # 80 KiB of headers in many small ones
    assert_error(exchange(server.url, request_bytes("GET", "/health", many)), 431, "headers_too_large")
    under = exchange(server.url, request_bytes("GET", "/health", {"X-Fine": "a" * 30000}))
    assert under.status == 200
    assert_healthy(server)


def test_unfinished_huge_heads_are_cut_off_without_holding_memory(server: LakehouseProcess) -> None:
    assert server.proc is not None
    before = rss_bytes(server.proc.pid)
    socks = []
    try:
        for _ in range(20):  # 20 clients each streaming a 30 MB header value that never ends
            sock = connect(server.url)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\nX-Huge: ")
            socks.append(sock)
        sent = [0] * len(socks)
        cut = [False] * len(socks)
        block = b"a" * (256 * 1024)
        for _ in range(30 * MIB // len(block)):
            for n, sock in enumerate(socks):
                if cut[n]:
                    continue
                try:
                    sock.sendall(block)
                    sent[n] += len(block)
                except (BrokenPipeError, ConnectionResetError):
                    cut[n] = True
            if all(cut):
                break
        grown = rss_bytes(server.proc.pid) - before
        assert grown < 64 * MIB, f"RSS grew {grown / MIB:.0f} MiB for 20 unfinished heads"
        assert max(sent) < 8 * MIB, "the server kept reading a head far past its cap"
        assert_healthy(server)
    finally:
        for sock in socks:
            sock.close()


def test_a_head_that_never_completes_is_dropped_after_the_idle_timeout(server: LakehouseProcess) -> None:
    with connect(server.url) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: te")
        answer = read_answer(sock)
    assert_error(answer, 408, "request_timeout")
    with connect(server.url) as silent:  # never sends a byte: closed, no answer needed
        assert closed_by_server(silent, within=5)
    assert_healthy(server)


# -- malformed requests -------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Length": "abc"},
        {"Content-Length": "-1"},
        {"Content-Length": "99999999999999999999999999"},
        {"Content-Length": "5, 6"},
        {"Content-Length": "5", "Transfer-Encoding": "chunked"},
    ],
)
def test_a_bad_content_length_gets_the_contracts_json_400(
    server: LakehouseProcess, headers: dict[str, str]
) -> None:
    answer = exchange(server.url, request_bytes("PUT", f"{OBJECTS}/cl/x", headers) + b"hello")
    assert_error(answer, 400, "invalid_request")
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["x-request-id"]
    assert_healthy(server)


def test_duplicate_content_length_and_garbage_request_lines_get_json_400(server: LakehouseProcess) -> None:
    dup = (
        b"PUT /v1/storage/objects/cl/y HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
    )
    assert_error(exchange(server.url, dup), 400, "invalid_request")
    assert_error(exchange(server.url, b"GARBAGE\x01 / HTTP/1.1\r\n\r\n"), 400, "invalid_request")
    assert_error(exchange(server.url, b"GET /a b c HTTP/1.1\r\nHost: t\r\n\r\n"), 400, "invalid_request")
    with server.client() as client:
        assert client.get(OBJECTS, params={"prefix": "cl/"}).json()["objects"] == []


# -- idle and trickling bodies ------------------------------------------------


def test_an_idle_storage_put_is_dropped_with_408_and_leaves_nothing(
    server: LakehouseProcess, root: Path
) -> None:
    with connect(server.url) as sock:
        sock.sendall(request_bytes("PUT", f"{OBJECTS}/idle/obj", {"Content-Length": "100000"}) + b"x" * 10)
        started = time.monotonic()
        answer = read_answer(sock)
        assert closed_by_server(sock, within=5)
    assert_error(answer, 408, "request_timeout")
    assert time.monotonic() - started < 10
    with server.client() as client:
        assert client.get(f"{OBJECTS}/idle/obj").status_code == 404
        assert client.get(OBJECTS, params={"prefix": "idle/"}).json()["objects"] == []
    assert leftovers(root) == []
    assert not (root / "data" / "objects" / "idle").exists()


def test_an_idle_ingest_is_dropped_with_408_and_leaves_nothing(server: LakehouseProcess, root: Path) -> None:
    body = b"a,b\n" + b"1,2\n" * 5000
    with connect(server.url) as sock:
        head = request_bytes(
            "POST", "/v1/ingest/idle_ds", {"Content-Type": "text/csv", "Content-Length": "900000"}
        )
        sock.sendall(head + body)
        answer = read_answer(sock)
    assert_error(answer, 408, "request_timeout")
    with server.client() as client:
        assert client.get("/v1/catalog/datasets/idle_ds").status_code == 404
    deadline = time.monotonic() + 20
    while spool_files(root) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spool_files(root) == []


def test_an_idle_json_body_is_dropped_with_408(server: LakehouseProcess) -> None:
    with connect(server.url) as sock:
        sock.sendall(request_bytes("POST", "/v1/sql", {"Content-Length": "500"}) + b'{"sql": "SELE')
        answer = read_answer(sock)
    assert_error(answer, 408, "request_timeout")
    assert_healthy(server)


def test_trickling_clients_cannot_hold_the_storage_cap(server: LakehouseProcess, root: Path) -> None:
    stop = threading.Event()
    answers: list[Answer] = []

    def trickle(n: int) -> None:
        with connect(server.url) as sock:
            sock.sendall(request_bytes("PUT", f"{OBJECTS}/trickle/{n}", {"Content-Length": "100000"}))
            sock.settimeout(0.3)
            while not stop.is_set():
                try:
                    sock.sendall(b"x")
                except OSError:
                    break
                with contextlib.suppress(TimeoutError, socket.timeout):
                    data = sock.recv(65536)
                    sock.settimeout(5)
                    answers.append(read_answer_from(data, sock))
                    return

    threads = [threading.Thread(target=trickle, args=(n,)) for n in range(2 * SLOTS)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.3)  # let them take every slot
        with server.client(timeout=5) as client:
            deadline = time.monotonic() + 20
            while client.get(OBJECTS).status_code == 503:
                assert time.monotonic() < deadline, "trickling clients held the storage cap"
                time.sleep(0.05)
            assert client.get(OBJECTS, params={"prefix": "trickle/"}).json()["objects"] == []
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert len(answers) == 2 * SLOTS
    # Those that got a slot were dropped once idle; the rest were told busy at once.
    assert sorted(a.status for a in answers) == [408] * SLOTS + [503] * SLOTS
    for answer in answers:
        assert_error(answer, answer.status, "request_timeout" if answer.status == 408 else "busy")
    assert leftovers(root) == []


def read_answer_from(first: bytes, sock: socket.socket) -> Answer:
    """An answer whose first bytes were already read."""
    data = first
    with contextlib.suppress(OSError):
        while b"\r\n\r\n" not in data or b"}" not in data.partition(b"\r\n\r\n")[2]:
            more = sock.recv(65536)
            if not more:
                break
            data += more
    return parse(data)


# -- connections --------------------------------------------------------------


def test_a_crowd_of_idle_connections_never_takes_the_server_down(server: LakehouseProcess) -> None:
    socks = []
    try:
        for _ in range(3 * MAX_CONNECTIONS):
            with contextlib.suppress(OSError):
                socks.append(connect(server.url))
        # Over the cap, new connections are refused; the held ones are dropped after the idle
        # timeout, and then /health answers on a fresh connection.
        wait_healthy(server, within=10)
        assert all(closed_by_server(sock, within=5) for sock in socks[:MAX_CONNECTIONS])
    finally:
        for sock in socks:
            sock.close()
    assert_healthy(server)


def test_connections_over_the_cap_are_closed_while_the_ones_in_use_carry_on(server: LakehouseProcess) -> None:
    with server.client() as busy_client:
        assert busy_client.get("/health").status_code == 200  # a kept-alive connection, in use
        socks = []
        try:
            for _ in range(MAX_CONNECTIONS + 20):
                with contextlib.suppress(OSError):
                    socks.append(connect(server.url))
            late = socks[-1]
            assert closed_by_server(late, within=2)
        finally:
            for sock in socks:
                sock.close()
        wait_healthy(server)
        assert busy_client.get("/health").status_code == 200


# -- the storage cap ----------------------------------------------------------


def test_the_storage_cap_never_answers_busy_below_itself(server: LakehouseProcess) -> None:
    with server.client() as client:
        assert client.put(f"{OBJECTS}/cap/blob", content=bytes(MIB)).status_code in (200, 201)
    statuses: list[int] = []
    errors: list[BaseException] = []

    def loop() -> None:
        try:
            with server.client() as client:  # one keep-alive connection, requests back to back
                for _ in range(25):
                    response = client.get(f"{OBJECTS}/cap/blob")
                    statuses.append(response.status_code)
                    assert len(response.content) == MIB or response.status_code != 200
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=loop) for _ in range(SLOTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert statuses.count(503) == 0, f"{statuses.count(503)} of {len(statuses)} answered busy"
    assert statuses == [200] * (25 * SLOTS)


def test_more_requests_than_the_cap_get_busy_with_retry_after(server: LakehouseProcess) -> None:
    holders = []
    try:
        for n in range(SLOTS):  # uploads that stall hold every slot until their idle timeout
            sock = connect(server.url)
            sock.sendall(request_bytes("PUT", f"{OBJECTS}/busy/{n}", {"Content-Length": "100000"}) + b"ab")
            holders.append(sock)
        time.sleep(0.2)
        with server.client(timeout=5) as client:
            busy = client.get(OBJECTS)
            assert_error(busy, 503, "busy")
            assert int(busy.headers["retry-after"]) >= 1
            assert client.get("/health").status_code == 200
    finally:
        for sock in holders:
            sock.close()


def wait_for_a_storage_slot(server: LakehouseProcess, timeout: float = 10.0) -> None:
    """Wait for a free storage slot: earlier tests' stalled clients hold theirs until they time out."""
    deadline = time.monotonic() + timeout
    with server.client() as client:
        while client.get(OBJECTS, params={"limit": 1}).status_code == 503:
            assert time.monotonic() < deadline, "storage slots stayed taken"
            time.sleep(0.05)


def test_a_client_leaving_mid_upload_is_logged_as_a_disconnect_not_a_crash(server: LakehouseProcess) -> None:
    # Leftover slots only ever free up, so one seen free is ours for the upload below.
    wait_for_a_storage_slot(server)
    with connect(server.url) as sock:
        sock.sendall(request_bytes("PUT", f"{OBJECTS}/gone/x", {"Content-Length": str(4 * MIB)}) + b"x" * MIB)
        time.sleep(0.2)
    deadline = time.monotonic() + 20
    while "PUT /v1/storage/objects/gone/x" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    lines = [line for line in server.log().splitlines() if "/gone/x" in line]
    assert lines and all(" 499 " in line for line in lines), lines
    assert "Traceback" not in server.log()
    assert " 500 " not in server.log()
