"""Large uploads through a real `lakehouse serve`: dropped mid-body, or sent again in other forms."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import StartLakehouse
from tests.support.staffing import csv_bytes

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def large_csv() -> bytes:
    """About 12 MiB of candidates: a dozen of the spool's 1 MiB writes."""
    data = csv_bytes("candidates", 65_000)
    assert len(data) > 10 * MIB
    return data


def files_under(folder: Path) -> list[Path]:
    """Every file below `folder` (none when it does not exist)."""
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def dataset_files(data: Path) -> list[str]:
    """Dataset data files of a local store's folder (not the Iceberg tables' metadata)."""
    base = data / "objects" / "_lakehouse" / "datasets"
    return sorted(str(p.relative_to(base)) for p in files_under(base) if "/metadata/" not in str(p))


def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll `check()` until it is true, or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def chunks(data: bytes, size: int = 256 * 1024) -> Iterator[bytes]:
    """The body in pieces, sent chunked (no Content-Length)."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_a_large_upload_dropped_mid_body_leaves_no_version_and_no_file(
    start_lakehouse: StartLakehouse, tmp_path: Path, large_csv: bytes
) -> None:
    spool = tmp_path / "spool"
    server = start_lakehouse(config={"ingestd": {"tmp_dir": str(spool)}})
    where = urlsplit(server.url)
    sock = socket.create_connection((where.hostname, where.port), timeout=30)
    try:
        head = (
            f"POST /v1/ingest/dropped HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
            f"Content-Length: {len(large_csv)}\r\n\r\n"
        )
        sock.sendall(head.encode() + large_csv[: 6 * MIB])
        # Several megabytes spooled, the last of them written while more arrive: then the client goes.
        wait_until(lambda: sum(p.stat().st_size for p in files_under(spool)) >= 4 * MIB)
    finally:
        sock.close()
    wait_until(lambda: files_under(spool) == [])
    with server.client() as client:
        assert client.get("/v1/catalog/datasets/dropped").status_code == 404
        assert client.get("/health").status_code == 200
    assert dataset_files(tmp_path / "data") == []
    assert files_under(tmp_path / "data" / ".tmp") == []


def test_the_same_large_bytes_again_are_not_a_new_version(
    start_lakehouse: StartLakehouse, tmp_path: Path, large_csv: bytes
) -> None:
    spool = tmp_path / "spool"
    server = start_lakehouse(config={"ingestd": {"tmp_dir": str(spool)}})
    with server.client(timeout=120) as client:
        first = client.post("/v1/ingest/big", content=chunks(large_csv), headers={"content-type": "text/csv"})
        assert first.status_code == 201, first.text
        assert first.json()["rows"] == 65_000 and first.json()["created"] is True
        # The same bytes with a Content-Length, in a multipart form, and as a replace: the same version.
        again = client.post("/v1/ingest/big", content=large_csv, headers={"content-type": "text/csv"})
        form = client.post("/v1/ingest/big", files={"file": ("candidates.csv", large_csv, "text/csv")})
        replace = client.post("/v1/ingest/big?mode=replace", content=chunks(large_csv, 1000 * 1000))
        for answer in (again, form, replace):
            assert answer.status_code == 200, answer.text
            assert answer.json()["created"] is False and answer.json()["version"] == 1
            assert answer.json()["rows"] == 65_000
        count = client.post("/v1/sql", json={"sql": "SELECT count(*), count(DISTINCT candidate_id) FROM big"})
        assert count.json()["rows"] == [[65_000, 65_000]]
    # One stored file; nothing left in the spool or in the store's temp folder.
    assert len(dataset_files(tmp_path / "data")) == 1
    assert files_under(spool) == [] and files_under(tmp_path / "data" / ".tmp") == []
