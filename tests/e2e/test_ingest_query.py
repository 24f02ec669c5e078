"""CSV ingest and SQL through a real `lakehouse serve`, with the generated staffing data set."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import StartLakehouse
from tests.support.cluster import LakehouseCluster
from tests.support.procs import LAKEHOUSE, LakehouseProcess, serving, write_config
from tests.support.staffing import csv_bytes

pytestmark = pytest.mark.e2e

ARROW = "application/vnd.apache.arrow.stream"


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is the contract's error body with this status and code."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code and error["message"]
    return error


def sql(client: httpx.Client, text: str, **extra: Any) -> list[list[Any]]:
    """Rows of a query that must succeed."""
    answer = client.post("/v1/sql", json={"sql": text, **extra})
    assert answer.status_code == 200, answer.text
    rows: list[list[Any]] = answer.json()["rows"]
    return rows


def versions(client: httpx.Client, name: str) -> list[int]:
    """The dataset's version numbers, from catalogd."""
    answer = client.get(f"/v1/catalog/datasets/{name}/versions")
    return [v["version"] for v in answer.json()["versions"]] if answer.status_code == 200 else []


def dataset_files(root: Path) -> list[str]:
    """Dataset data files in a local store's folder (not the Iceberg tables' metadata)."""
    base = root / "objects" / "_lakehouse" / "datasets"
    if not base.exists():
        return []
    found = (str(p.relative_to(base)) for p in base.rglob("*") if p.is_file())
    return sorted(f for f in found if f.split("/")[1:2] != ["metadata"])


SHARED_CONFIG: dict[str, dict[str, Any]] = {"queryd": {"max_rows": 1000, "timeout_secs": 2.0}}


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LakehouseProcess, Path]]:
    """One embedded lakehouse for the tests that need no config of their own, and its data folder.

    Each test uses its own dataset names, so they do not see each other.
    """
    root = tmp_path_factory.mktemp("shared")
    config = write_config(root / "lakehouse.toml", {"storage": {"root": str(root / "data")}, **SHARED_CONFIG})
    with serving(config) as proc:
        yield proc, root / "data"


@pytest.fixture
def server(shared: tuple[LakehouseProcess, Path]) -> LakehouseProcess:
    """The shared lakehouse process."""
    return shared[0]


@pytest.fixture
def data_root(shared: tuple[LakehouseProcess, Path]) -> Path:
    """The shared lakehouse's local storage folder."""
    return shared[1]


def test_ingest_versions_and_time_travel(server: LakehouseProcess) -> None:
    candidates = csv_bytes("candidates", 3000)
    with server.client() as client:
        first = client.post("/v1/ingest/candidates", content=candidates, headers={"content-type": "text/csv"})
        assert first.status_code == 201, first.text
        body = first.json()
        assert (body["dataset"], body["version"], body["rows"], body["created"]) == (
            "candidates",
            1,
            3000,
            True,
        )
        assert {c["name"]: c["type"] for c in body["schema"]}["available_from"] == "DATE"

        again = client.post("/v1/ingest/candidates", content=candidates)
        assert again.status_code == 200 and again.json()["version"] == 1 and again.json()["created"] is False

        more = client.post(
            "/v1/ingest/candidates", files={"file": ("more.csv", csv_bytes("candidates", 500, start=3001))}
        )
        assert more.status_code == 201 and more.json()["version"] == 2 and more.json()["row_count"] == 3500

        swap = client.post(
            "/v1/ingest/candidates?mode=replace", content=csv_bytes("candidates", 10, start=9000)
        )
        assert swap.status_code == 201 and swap.json()["version"] == 3

        counts = sql(
            client,
            'SELECT (SELECT count(*) FROM candidates), (SELECT count(*) FROM "candidates@1"), '
            '(SELECT count(*) FROM "candidates@2"), (SELECT count(*) FROM "candidates@3")',
        )
        assert counts == [[10, 3000, 3500, 10]]
        # UTF-8, quoted commas, doubled quotes and nulls survive the trip.
        row = sql(client, 'SELECT full_name, notes, email FROM "candidates@1" WHERE candidate_id = 1')[0]
        assert row[0] == "Renée Hernández" and 'said "available soon"' in row[1] and ", " in row[1]
        assert sql(client, 'SELECT count(*) FROM "candidates@1" WHERE notes IS NULL')[0][0] > 0
        assert versions(client, "candidates") == [1, 2, 3]


def test_drift_is_409_and_writes_nothing(server: LakehouseProcess, data_root: Path) -> None:
    with server.client() as client:
        assert client.post("/v1/ingest/jobs", content=csv_bytes("jobs", 200)).status_code == 201
        before = dataset_files(data_root)
        error = assert_error(
            client.post("/v1/ingest/jobs", content=csv_bytes("placements", 50)), 409, "schema_drift"
        )
        assert {c["name"] for c in error["added"]} >= {"placement_id", "margin"}
        assert {c["name"] for c in error["removed"]} >= {"title", "client"}
        retyped = b"job_id,title,client,city,bill_rate,opened_on,is_filled\nx1,a,b,c,1.5,2024-01-01,true\n"
        error = assert_error(client.post("/v1/ingest/jobs", content=retyped), 409, "schema_drift")
        assert error["changed"] == [{"name": "job_id", "from": "BIGINT", "to": "VARCHAR"}]
        assert dataset_files(data_root) == before
        assert versions(client, "jobs") == [1]


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b"a,b\n1,2\n3,4,5\n", 3),
        (b"a,b\n1,2\n3\n", 3),
        (b'a,b\n1,"never closed\n2,3\n', 2),
        ("a,b\n1,caf\u00e9\n".encode("latin-1"), 2),
        (b"", 1),
        (b"a,b\n", 2),
    ],
    ids=["ragged-long", "ragged-short", "unterminated-quote", "latin-1", "empty", "header-only"],
)
def test_bad_csv_is_400_with_the_line(
    server: LakehouseProcess, data_root: Path, data: bytes, line: int
) -> None:
    with server.client() as client:
        error = assert_error(client.post("/v1/ingest/broken", content=data), 400, "invalid_csv")
        assert error["line"] == line
        assert client.get("/v1/catalog/datasets/broken").status_code == 404
    assert not [f for f in dataset_files(data_root) if f.startswith("broken/")]


def test_bad_names_modes_and_forms_are_400(server: LakehouseProcess) -> None:
    with server.client() as client:
        for name in ["Upper", "9lives", "has-dash", "x" * 64]:
            assert_error(client.post(f"/v1/ingest/{name}", content=b"a\n1\n"), 400, "invalid_name")
        assert_error(client.post("/v1/ingest/ok?mode=merge", content=b"a\n1\n"), 400, "invalid_request")
        assert_error(
            client.post("/v1/ingest/ok", files={"upload": ("x.csv", b"a\n1\n")}), 400, "invalid_request"
        )
        assert client.get("/v1/ingest/ok").status_code == 405


@pytest.mark.parametrize(
    ("statement", "status", "code"),
    [
        ("SELECT * FROM read_csv('/etc/passwd')", 403, "forbidden"),
        ("SELECT * FROM '/etc/passwd'", 403, "forbidden"),
        ("SELECT * FROM 'any/file.csv'", 403, "forbidden"),
        ("SELECT * FROM glob('/etc/*')", 403, "forbidden"),
        ("SELECT * FROM read_parquet('http://127.0.0.1:1/x.parquet')", 403, "forbidden"),
        ("SELECT getenv('HOME')", 403, "forbidden"),
        ("COPY (SELECT 1) TO '/tmp/lakehouse-escape.csv'", 400, "forbidden_statement"),
        ("ATTACH '/tmp/lakehouse-escape.db' AS x", 400, "forbidden_statement"),
        ("INSTALL httpfs", 400, "forbidden_statement"),
        ("LOAD httpfs", 400, "forbidden_statement"),
        ("SET enable_external_access = true", 400, "forbidden_statement"),
        ("SELECT 1; SELECT 2", 400, "forbidden_statement"),
        ("PRAGMA version", 400, "forbidden_statement"),
        ("EXPLAIN ANALYZE DROP VIEW candidates", 400, "forbidden_statement"),
        ("CREATE TABLE t AS SELECT 1", 400, "forbidden_statement"),
        ("SELECT * FROM no_such_table", 400, "sql_error"),
    ],
)
def test_sandbox_escapes_are_refused(
    server: LakehouseProcess, statement: str, status: int, code: str
) -> None:
    with server.client() as client:
        assert_error(client.post("/v1/sql", json={"sql": statement}), status, code)
    assert not os.path.exists("/tmp/lakehouse-escape.csv")


def test_sql_request_validation_and_limits(server: LakehouseProcess) -> None:
    with server.client() as client:
        for bad in [
            {},
            {"sql": ""},
            {"sql": 1},
            {"sql": "SELECT 1", "max_rows": -1},
            {"sql": "SELECT 1", "x": 1},
        ]:
            assert_error(client.post("/v1/sql", json=bad), 400, "invalid_request")
        assert_error(
            client.post("/v1/sql", content=b"not json", headers={"content-type": "application/json"}),
            400,
            "invalid_request",
        )
        capped = client.post("/v1/sql", json={"sql": "SELECT * FROM range(5000)", "max_rows": 99999}).json()
        assert (capped["row_count"], capped["truncated"]) == (1000, True)
        answer = client.post(
            "/v1/sql", json={"sql": "SELECT 1.25::DECIMAL(5,2) AS d, 'nan'::DOUBLE AS f"}
        ).json()
        assert answer["rows"] == [["1.25", None]] and answer["columns"][0] == {
            "name": "d",
            "type": "DECIMAL(5,2)",
        }
        assert answer["elapsed_ms"] >= 0


def test_arrow_stream_over_http(server: LakehouseProcess) -> None:
    with server.client() as client:
        client.post("/v1/ingest/placements", content=csv_bytes("placements", 2000))
        with client.stream(
            "POST", "/v1/sql", json={"sql": "SELECT * FROM placements, range(60)"}, headers={"accept": ARROW}
        ) as answer:
            assert answer.status_code == 200 and answer.headers["content-type"] == ARROW
            data = answer.read()
        table = pa.ipc.open_stream(data).read_all()
        assert table.num_rows == 120000 and "margin" in table.column_names
        assert_error(
            client.post("/v1/sql", json={"sql": "DROP TABLE x"}, headers={"accept": ARROW}),
            400,
            "forbidden_statement",
        )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_timeout_stops_the_query_and_the_server_stays_responsive(server: LakehouseProcess) -> None:
    answers: list[httpx.Response] = []

    def runaway() -> None:
        with server.client() as client:
            big = "SELECT count(*) FROM range(10000000000) a, range(100000) b"
            answers.append(client.post("/v1/sql", json={"sql": big}))

    worker = threading.Thread(target=runaway)
    worker.start()
    time.sleep(0.3)
    with server.client() as client:
        assert client.get("/health").status_code == 200
        assert sql(client, "SELECT 1") == [[1]]
    # Answered while the runaway still ran (it ends at the 2 s timeout), not after it: by order, not by clock.
    assert not answers
    worker.join(10)
    assert_error(answers[0], 408, "query_timeout")
    assert server.proc is not None
    time.sleep(0.2)
    before = cpu_seconds(server.proc.pid)
    time.sleep(1.0)
    assert cpu_seconds(server.proc.pid) - before < 0.3  # the interrupted query no longer burns CPU


def test_views_follow_versions_from_another_process(shared: tuple[LakehouseProcess, Path]) -> None:
    writer, root = shared
    config = write_config(root.parent / "reader.toml", {"storage": {"root": str(root)}})
    with serving(config) as reader, writer.client() as wc, reader.client() as rc:
        wc.post("/v1/ingest/shared_jobs", content=csv_bytes("jobs", 100))
        assert sql(rc, "SELECT count(*) FROM shared_jobs") == [[100]]
        wc.post("/v1/ingest/shared_jobs", content=csv_bytes("jobs", 20, start=101))
        assert sql(rc, 'SELECT count(*), (SELECT count(*) FROM "shared_jobs@1") FROM shared_jobs') == [
            [120, 100]
        ]


def slow_upload(url: str, path: str, parts: list[bytes]) -> socket.socket:
    """Send a chunked upload's head and some chunks, leaving it open."""
    where = urlsplit(url)
    sock = socket.create_connection((where.hostname, where.port), timeout=30)
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nTransfer-Encoding: chunked\r\n\r\n"
    sock.sendall(head.encode())
    for part in parts:
        sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
    return sock


def test_kill_9_mid_ingest_leaves_no_version_and_no_orphan(
    start_lakehouse: StartLakehouse, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    server = start_lakehouse(config={"ingestd": {"tmp_dir": str(spool), "orphan_grace_secs": 0}})
    with server.client() as client:
        assert client.post("/v1/ingest/jobs", content=csv_bytes("jobs", 100)).status_code == 201
    kept = dataset_files(tmp_path / "data")
    data = csv_bytes("jobs", 20000, start=101)
    sock = slow_upload(server.url, "/v1/ingest/jobs", [data[: len(data) // 2]])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not list(spool.rglob("upload-*")):
            time.sleep(0.02)
        assert list(spool.rglob("upload-*")), "the upload never reached the spool"
        server.kill9()
    finally:
        sock.close()
    # A file a crash left between upload and register: the next start removes it.
    orphan = tmp_path / "data" / "objects" / "_lakehouse" / "datasets" / "jobs" / "crashed.parquet"
    orphan.write_bytes(b"PAR1 half")
    server.start()
    with server.client() as client:
        assert versions(client, "jobs") == [1]
        assert sql(client, "SELECT count(*) FROM jobs") == [[100]]
    assert dataset_files(tmp_path / "data") == kept
    assert not list(spool.rglob("upload-*"))


@pytest.mark.s3
def test_ingest_and_query_on_s3(
    start_lakehouse: StartLakehouse, s3_storage: dict[str, Any], s3_env: dict[str, str]
) -> None:
    server = start_lakehouse(config={"storage": s3_storage}, env=s3_env)
    with server.client() as client:
        assert client.post("/v1/ingest/placements", content=csv_bytes("placements", 1500)).status_code == 201
        assert (
            client.post("/v1/ingest/placements", content=csv_bytes("placements", 500, start=2000)).status_code
            == 201
        )
        assert sql(client, 'SELECT count(*), (SELECT count(*) FROM "placements@1") FROM placements') == [
            [2000, 1500]
        ]
        assert sql(client, "SELECT count(*) FROM placements WHERE end_date IS NULL")[0][0] > 0
        assert_error(
            client.post("/v1/sql", json={"sql": "SELECT * FROM read_parquet('s3://other-bucket/x.parquet')"}),
            403,
            "forbidden",
        )
        # A dataset registered over an uploaded object is a view; other uploads stay unreadable.
        upload_parquet(client, "uploads/unregistered.parquet")
        register_uploaded_parquet(client, "uploaded")
        assert sql(client, "SELECT count(*), max(a) FROM uploaded") == [[3, 3]]
        assert sql(client, "SELECT count(*) FROM placements") == [[2000]]
        other = f"s3://{s3_storage['bucket']}/uploads/unregistered.parquet"
        assert_error(
            client.post("/v1/sql", json={"sql": f"SELECT * FROM read_parquet('{other}')"}), 403, "forbidden"
        )


def test_cli_ingest_and_sql(server: LakehouseProcess, tmp_path: Path) -> None:
    source = tmp_path / "jobs.csv"
    source.write_bytes(csv_bytes("jobs", 250))
    base = [LAKEHOUSE]
    gateway = ["--gateway", server.url]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*base, *args, *gateway], capture_output=True, text=True, timeout=60)

    first = run("ingest", str(source), "--name", "cli_jobs")
    assert first.returncode == 0 and "new version 1" in first.stdout, first.stderr
    assert "already ingested: version 1" in run("ingest", str(source), "--name", "cli_jobs").stdout
    out = run("sql", "SELECT job_id, client FROM cli_jobs WHERE job_id = 1", "--format", "csv")
    assert out.returncode == 0 and out.stdout.splitlines() == ["job_id,client", '1,"Acme, Inc."']
    refused = run("sql", "DROP TABLE cli_jobs")
    assert refused.returncode == 1 and "forbidden_statement" in refused.stderr


def test_ingest_and_sql_in_both_serve_modes(lakehouse_cluster: LakehouseCluster) -> None:
    # Split mode: ingestd and queryd are separate processes behind the gateway.
    with lakehouse_cluster.client() as client:
        first = client.post("/v1/ingest/placements", content=csv_bytes("placements", 1200))
        assert first.status_code == 201, first.text
        assert client.post("/v1/ingest/placements", content=csv_bytes("placements", 1200)).status_code == 200
        more = client.post(
            "/v1/ingest/placements", files={"file": ("p.csv", csv_bytes("placements", 300, start=5000))}
        )
        assert more.status_code == 201 and more.json()["version"] == 2
        assert_error(client.post("/v1/ingest/placements", content=csv_bytes("jobs", 5)), 409, "schema_drift")
        assert_error(client.post("/v1/ingest/placements", content=b"a,b\n1\n"), 400, "invalid_csv")
        assert sql(client, 'SELECT count(*), (SELECT count(*) FROM "placements@1") FROM placements') == [
            [1500, 1200]
        ]
        assert_error(
            client.post("/v1/sql", json={"sql": "SELECT * FROM read_text('/etc/hosts')"}), 403, "forbidden"
        )
        with client.stream(
            "POST", "/v1/sql", json={"sql": "SELECT * FROM placements"}, headers={"accept": ARROW}
        ) as answer:
            table = pa.ipc.open_stream(answer.read()).read_all()
        assert table.num_rows == 1500


def test_cut_off_upload_leaves_no_version(server: LakehouseProcess, data_root: Path) -> None:
    data = csv_bytes("jobs", 5000)
    sock = slow_upload(server.url, "/v1/ingest/cut_jobs", [data[: len(data) // 2]])
    time.sleep(0.3)
    sock.close()  # the client goes away mid-body
    time.sleep(0.3)
    with server.client() as client:
        assert versions(client, "cut_jobs") == []
        assert client.get("/health").status_code == 200
        # The same name still ingests cleanly afterwards.
        assert client.post("/v1/ingest/cut_jobs", content=data).json()["version"] == 1
    assert len([f for f in dataset_files(data_root) if f.startswith("cut_jobs/")]) == 1


def upload_parquet(client: httpx.Client, key: str) -> int:
    """Upload a small Parquet file (column a: 1, 2, 3) through storaged; its size."""
    buffer = io.BytesIO()
    pq.write_table(pa.table({"a": [1, 2, 3]}), buffer)
    assert client.put(f"/v1/storage/objects/{key}", content=buffer.getvalue()).status_code == 201
    return len(buffer.getvalue())


def register_uploaded_parquet(client: httpx.Client, name: str) -> None:
    """Upload a small Parquet file through storaged and register it as dataset `name`."""
    key = f"uploads/{name}.parquet"
    size = upload_parquet(client, key)
    body = {
        "name": name,
        "schema": [{"name": "a", "type": "BIGINT"}],
        "objects": [{"key": key, "size": size, "rows": 3}],
        "row_count": 3,
    }
    registered = client.post("/v1/catalog/register", json=body)
    assert registered.status_code == 201, registered.text


def test_a_registered_dataset_does_not_break_other_queries(start_lakehouse: StartLakehouse) -> None:
    server = start_lakehouse()
    with server.client() as client:
        ingested = client.post("/v1/ingest/kept", content=b"x\n1\n2\n", headers={"content-type": "text/csv"})
        assert ingested.status_code == 201, ingested.text
        register_uploaded_parquet(client, "outside")
        assert sql(client, "SELECT sum(x)::BIGINT FROM kept") == [[3]]
        assert sql(client, "SELECT 1") == [[1]]


def test_a_dataset_registered_over_uploaded_objects_is_a_view(
    start_lakehouse: StartLakehouse, tmp_path: Path
) -> None:
    server = start_lakehouse()
    with server.client() as client:
        upload_parquet(client, "uploads/unregistered.parquet")
        register_uploaded_parquet(client, "outside")
        assert sql(client, "SELECT count(*), sum(a) FROM outside") == [[3, 6]]
        assert sql(client, 'SELECT count(*) FROM "outside@1"') == [[3]]
        # Only the registered file became readable, not the rest of the store.
        other = tmp_path / "data" / "objects" / "uploads" / "unregistered.parquet"
        assert other.exists()
        for text in [f"SELECT * FROM read_parquet('{other}')", f"SELECT * FROM '{other}'"]:
            assert_error(client.post("/v1/sql", json={"sql": text}), 403, "forbidden")
        # Datasets registered later, inside or outside the dataset area, join the same views.
        register_uploaded_parquet(client, "outside_too")
        assert client.post("/v1/ingest/inside", content=b"x\n5\n").status_code == 201
        assert sql(
            client,
            "SELECT (SELECT max(a) FROM outside_too), (SELECT x FROM inside), (SELECT count(*) FROM outside)",
        ) == [[3, 5, 3]]
