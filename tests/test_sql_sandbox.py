"""A hostile client against `/v1/sql` of a real `lakehouse serve`, on the local and the S3 backend.

Every attack is sent as one request; each asserts its status and code, that
no file under the data root (or object in the bucket) changed, that the
dataset views still return their original rows, and that the answer shows no
server path or credential the statement did not itself contain.
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.procs import LakehouseProcess, serving, write_config

pytestmark = pytest.mark.e2e

S3_KEY_ID = "AKIALAKEHOUSETESTKEY1"
S3_SECRET = "lakehouseTestSecret/0123456789abcdefSECRET"  # moto accepts any key
MARKER = "schema-sql-marker-7f3e9c"


@dataclass
class Lake:
    """One running lakehouse with two datasets, and how to see whether anything changed."""

    server: LakehouseProcess
    client: httpx.Client
    root: Path  # the local data root (also the config folder's data dir on S3)
    data_file: str  # where one dataset file lives (a path, or an s3:// URL)
    bucket: str
    import_dir: Path
    snapshot: Callable[[], dict[str, str]]
    original: dict[str, Any]
    hidden: list[str]


def tree_hashes(root: Path) -> dict[str, str]:
    """Every file under `root` and the SHA-256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


VIEWS = {
    "people": "SELECT * FROM people ORDER BY ALL",
    "people@1": 'SELECT * FROM "people@1" ORDER BY ALL',
    "jobs": "SELECT * FROM jobs ORDER BY ALL",
}


def view_rows(client: httpx.Client) -> dict[str, Any]:
    """What every dataset view returns."""
    out = {}
    for name, text in VIEWS.items():
        answer = client.post("/v1/sql", json={"sql": text})
        assert answer.status_code == 200, answer.text
        out[name] = answer.json()["rows"]
    return out


@pytest.fixture(scope="module", params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def lake(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    """A lakehouse on each backend with datasets `people` (2 versions) and `jobs`."""
    work = tmp_path_factory.mktemp(f"sandbox-{request.param}")
    import_dir = work / "import-me"
    import_dir.mkdir()
    (import_dir / "schema.sql").write_text(f"CREATE VIEW people AS SELECT '{MARKER}' AS x;\n")
    (import_dir / "load.sql").write_text(f"SELECT '{MARKER}';\n")
    storage: dict[str, Any] = {"root": str(work / "data")}
    env: dict[str, str] = {}
    bucket = ""
    if request.param == "s3":
        import boto3

        endpoint: str = request.getfixturevalue("s3_endpoint")
        bucket = f"sandbox-{uuid.uuid4().hex[:10]}"
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id=S3_KEY_ID,
            aws_secret_access_key=S3_SECRET,
        )
        s3.create_bucket(Bucket=bucket)
        storage = {
            "backend": "s3",
            "bucket": bucket,
            "endpoint": endpoint,
            "secrets": str(work / "no-secrets.toml"),
        }
        env = {"AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET}

        def snapshot() -> dict[str, str]:
            listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
            return {obj["Key"]: str(obj["ETag"]) + str(obj["Size"]) for obj in listed}
    else:

        def snapshot() -> dict[str, str]:
            return tree_hashes(work / "data")

    config = write_config(
        work / "lakehouse.toml",
        {"storage": storage, "queryd": {"timeout_secs": 4.0, "memory_limit": "1GB", "max_rows": 1000}},
    )
    with serving(config, env=env) as server, server.client(timeout=60) as client:
        for name, body in [
            ("people", b"id,name\n1,Ana\n2,Bj\xc3\xb6rn\n"),
            ("people", b"id,name\n3,Chlo\xc3\xa9\n"),
            ("jobs", b"job_id,title\n10,welder\n"),
        ]:
            answer = client.post(f"/v1/ingest/{name}", content=body, headers={"content-type": "text/csv"})
            assert answer.status_code == 201, answer.text
        manifest = client.get("/v1/catalog/datasets/people").json()
        key = manifest["objects"][0]["key"]
        data_file = f"s3://{bucket}/{key}" if bucket else str(work / "data" / "objects" / key)
        if not bucket:
            assert Path(data_file).is_file()
        hidden = [str(work), str(Path.home()), S3_KEY_ID, S3_SECRET, str(Path(tempfile.gettempdir()))]
        yield Lake(
            server,
            client,
            work / "data",
            data_file,
            bucket or "lakehouse",
            import_dir,
            snapshot,
            view_rows(client),
            hidden,
        )


FB = (400, "forbidden_statement")
F403 = (403, "forbidden")
SQLE = (400, "sql_error")
OK = (200, "")

# (statement, expected (status, code) or several allowed); {data} is a dataset file's real
# path (or s3:// URL), {root} the data root, {bucket} the bucket, {import_dir} a folder whose
# schema.sql would redefine a view.
ATTACKS: list[tuple[str, tuple[int, str] | list[tuple[int, str]]]] = [
    # files
    ("SELECT * FROM read_csv('/etc/passwd')", F403),
    ("SELECT * FROM read_csv_auto('/etc/passwd')", F403),
    ("FROM read_csv(['/etc/passwd', '/etc/hosts'])", F403),
    ("SELECT * FROM read_text('/etc/hostname')", F403),
    ("SELECT * FROM read_blob('/etc/passwd')", F403),
    ("SELECT * FROM read_json('/etc/passwd')", F403),
    ("SELECT * FROM read_parquet('{data}')", F403),
    ("SELECT * FROM '{data}'", F403),
    ("SELECT * FROM parquet_metadata('{data}')", F403),
    ("SELECT * FROM parquet_schema('{data}')", F403),
    ("SELECT * FROM read_text('{root}/**')", F403),
    ("SELECT * FROM glob('/*')", F403),
    ("SELECT * FROM glob('{root}/**')", F403),
    ("SELECT * FROM '/etc/passwd'", F403),
    ("SELECT * FROM sniff_csv('/etc/passwd')", F403),
    ("SELECT * FROM query('SELECT * FROM read_text(''/etc/passwd'')')", [F403, SQLE]),
    # URLs
    ("SELECT * FROM read_parquet('http://127.0.0.1:1/x.parquet')", F403),
    ("SELECT * FROM read_csv('https://example.com/x.csv')", F403),
    ("SELECT * FROM read_parquet('s3://{bucket}/x.parquet')", F403),
    ("SELECT * FROM read_parquet('s3://{bucket}/_lakehouse/**/*.parquet')", F403),
    ("SELECT * FROM 's3://{bucket}/anything.parquet'", F403),
    # settings, secrets, server paths (the rows are checked for leaks too)
    ("SELECT current_setting('s3_secret_access_key')", [SQLE, OK]),
    ("SELECT current_setting('s3_access_key_id')", [SQLE, OK]),
    ("SELECT * FROM duckdb_settings()", OK),
    ("SELECT current_setting('home_directory'), current_setting('temp_directory')", OK),
    ("SELECT current_setting('allowed_paths'), current_setting('allowed_directories')", OK),
    ("SELECT * FROM duckdb_secrets()", F403),
    ("SELECT * FROM which_secret('s3://{bucket}/k', 's3')", [SQLE, F403]),
    ("SELECT * FROM duckdb_extensions()", F403),
    ("SELECT * FROM duckdb_temporary_files()", OK),
    ("SELECT * FROM duckdb_databases()", OK),
    ("SELECT * FROM duckdb_views()", OK),
    ("SELECT * FROM duckdb_functions() WHERE function_type = 'macro' LIMIT 5", OK),
    ("SELECT * FROM pragma_database_list()", [OK, SQLE]),
    ("SELECT getenv('AWS_SECRET_ACCESS_KEY')", F403),
    # extensions
    ("INSTALL httpfs", FB),
    ("FORCE INSTALL httpfs", FB),
    ("LOAD httpfs", FB),
    ("LOAD '/tmp/evil.duckdb_extension'", FB),
    ("UPDATE EXTENSIONS", FB),
    # databases
    ("ATTACH '{root}/evil.db' AS evil", FB),
    ("ATTACH ':memory:' AS m", FB),
    ("DETACH memory", FB),
    ("USE memory", FB),
    # COPY, EXPORT, IMPORT
    ("COPY (SELECT 666 AS id) TO '{data}'", FB),
    ("COPY people TO '{root}/leak.csv'", FB),
    ("COPY people FROM '/etc/passwd'", FB),
    ("EXPORT DATABASE '{root}/export'", FB),
    ("IMPORT DATABASE '{import_dir}'", FB),
    ("/* quiet */ import database '{import_dir}'", FB),
    ("SELECT 1; IMPORT DATABASE '{import_dir}'", FB),
    # PRAGMA, SET, CALL
    ("PRAGMA version", FB),
    ("pragma enable_profiling", FB),
    ("/* hidden */ PRAGMA show_tables", FB),
    ("SET enable_external_access = true", FB),
    ("RESET lock_configuration", FB),
    ("SET GLOBAL threads = 1", FB),
    ("CALL duckdb_settings()", FB),
    ("CALL pragma_version()", FB),
    # DDL and DML
    ("CREATE TABLE t AS SELECT 1", FB),
    ("DROP VIEW people", FB),
    ("ALTER VIEW people RENAME TO p", FB),
    ("INSERT INTO people VALUES (1, 'x')", FB),
    ("UPDATE people SET id = 1", FB),
    ("DELETE FROM people", FB),
    ("CREATE OR REPLACE VIEW people AS SELECT 666 AS id", FB),
    ("CREATE OR REPLACE TEMP VIEW people AS SELECT 666 AS id", FB),
    ("CREATE MACRO leak() AS 1", FB),
    ("CREATE SECRET s (TYPE s3, KEY_ID 'a', SECRET 'b')", FB),
    ("CHECKPOINT", FB),
    ("BEGIN TRANSACTION", FB),
    ("COMMIT", FB),
    ("SELECT * FROM query('CREATE OR REPLACE VIEW people AS SELECT 666 AS id')", [SQLE, FB]),
    # several statements, comment tricks
    ("SELECT 1; DROP VIEW people", FB),
    ("SELECT 1; COPY (SELECT 1) TO '{root}/x.csv'", FB),
    ("SELECT 1 /* ; */ ; CREATE OR REPLACE VIEW people AS SELECT 1", FB),
    ("SELECT 1 -- ;\n; DROP VIEW people", FB),
    ("SELECT '; DROP VIEW people' AS s", OK),
    ("PIVOT people ON name USING count(*); DROP VIEW people", FB),
    ("WITH x AS (SELECT 1) COPY (SELECT * FROM x) TO '{data}'", [SQLE, FB]),
    ("SELECT * FROM (COPY (SELECT 1) TO '{data}')", [SQLE, FB]),
    # EXPLAIN wrappers with multibyte padding
    ("EXPLAIN ANALYZE /*éééééééé*/ COPY /* SELECT 1 -- */ (SELECT 666 AS id) TO '{data}'", FB),
    ("EXPLAIN ANALYZE /*éééééééé*/ CREATE OR REPLACE VIEW people AS SELECT 666 AS id", FB),
    ("EXPLAIN /*日本語のコメント*/ ANALYZE COPY people TO '{root}/x.csv'", FB),
    ("EXPLAIN (ANALYZE) /*ü*/ DROP VIEW people", FB),
    ("EXPLAIN (FORMAT json, ANALYZE) ATTACH '{root}/x.db'", [FB, SQLE]),
    ("EXPLAIN ANALYZE /*🙂🙂🙂🙂*/ INSTALL httpfs", FB),
    ("EXPLAIN EXPLAIN ANALYZE DROP VIEW people", [FB, SQLE]),
    ("EXPLAIN ANALYZE SELECT * FROM people", OK),
    # huge values, Unicode
    ("SELECT length(repeat('x', 2000000000))", SQLE),
    ("SELECT 'naïve' AS ünïcødé", OK),
]


def fill(template: str, lake: Lake) -> str:
    return template.format(
        data=lake.data_file, root=lake.root, bucket=lake.bucket, import_dir=lake.import_dir
    )


def assert_untouched(lake: Lake, before: dict[str, str]) -> None:
    """Nothing on disk or in the bucket changed, and every view answers as it did."""
    assert lake.snapshot() == before
    assert view_rows(lake.client) == lake.original


def assert_no_leak(lake: Lake, statement: str, text: str) -> None:
    """The answer shows no server path or credential that the statement itself did not contain."""
    for secret in lake.hidden:
        if secret not in statement:
            assert secret not in text, f"{secret!r} leaked"


@pytest.mark.parametrize(("template", "expected"), ATTACKS, ids=[a[0][:60] for a in ATTACKS])
def test_attack_is_refused_and_changes_nothing(
    lake: Lake, template: str, expected: tuple[int, str] | list[tuple[int, str]]
) -> None:
    statement = fill(template, lake)
    before = lake.snapshot()
    answer = lake.client.post("/v1/sql", json={"sql": statement})
    got = (answer.status_code, answer.json()["error"]["code"] if answer.status_code != 200 else "")
    allowed = expected if isinstance(expected, list) else [expected]
    assert got in allowed, answer.text
    assert MARKER not in answer.text
    assert_no_leak(lake, statement, answer.text)
    assert_untouched(lake, before)


def test_no_setting_reveals_a_path_or_credential(lake: Lake) -> None:
    names = lake.client.post("/v1/sql", json={"sql": "SELECT name FROM duckdb_settings()"}).json()["rows"]
    assert len(names) > 50
    for (name,) in names:
        quoted = name.replace("'", "''")
        answer = lake.client.post("/v1/sql", json={"sql": f"SELECT current_setting('{quoted}')"})
        assert answer.status_code in (200, 400), answer.text
        assert_no_leak(lake, "", answer.text)
    for table in ["duckdb_settings()", "duckdb_databases()", "duckdb_views()", "duckdb_temporary_files()"]:
        answer = lake.client.post("/v1/sql", json={"sql": f"SELECT * FROM {table}"})
        assert answer.status_code == 200
        assert_no_leak(lake, "", answer.text)


def test_a_huge_statement_does_not_delay_health(lake: Lake) -> None:
    before = lake.snapshot()
    huge = "SELECT count(*) FROM people WHERE id IN (" + ",".join(str(i) for i in range(1_200_000)) + ")"
    assert len(huge) > 8_000_000
    slowest: list[float] = []
    done = threading.Event()

    def probe() -> None:
        with lake.server.client(timeout=30) as probe_client:
            while not done.is_set():
                started = time.monotonic()
                assert probe_client.get("/health").status_code == 200
                slowest.append(time.monotonic() - started)
                time.sleep(0.05)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        answer = lake.client.post("/v1/sql", json={"sql": huge})
    finally:
        done.set()
        prober.join(30)
    assert answer.status_code in (200, 400, 408, 413), answer.text
    assert slowest and max(slowest) < 1.0, f"/health took up to {max(slowest):.2f} s"
    assert_untouched(lake, before)
