"""The `lakehouse` commands as a user runs them: subprocesses, their output and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lakehouse import __version__
from tests.support.procs import LAKEHOUSE, LakehouseProcess, closed_url, serving, write_config

pytestmark = pytest.mark.e2e


def run(
    *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None, drop: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """`lakehouse ARGS` with a wide terminal, so help text is not wrapped mid-word."""
    environ = {k: v for k, v in os.environ.items() if k not in drop}
    done = subprocess.run(
        [LAKEHOUSE, *args],
        input=stdin,
        capture_output=True,
        env={**environ, "COLUMNS": "200", "NO_COLOR": "1", **(env or {})},
        timeout=60,
    )
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(), done.stderr.decode())


@pytest.fixture(scope="module")
def lakehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LakehouseProcess]:
    """One open lakehouse with a `people` dataset (two versions) and a vector index."""
    root = tmp_path_factory.mktemp("cli")
    config = write_config(root / "lakehouse.toml", {"storage": {"root": str(root / "data")}})
    with serving(config) as proc:
        with proc.client() as client:
            for body in (b"id,name\n1,Ada\n", b"id,name\n2,Bo\n"):
                answer = client.post("/v1/ingest/people", content=body, headers={"content-type": "text/csv"})
                assert answer.status_code == 201, answer.text
            created = client.post("/v1/vectors/index", json={"name": "notes", "dim": 3})
            assert created.status_code == 201, created.text
        yield proc


def test_version_and_short_help() -> None:
    version = run("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"lakehouse {__version__}"
    short = run("-h")
    assert short.returncode == 0 and "datasets" in short.stdout and "--install-completion" in short.stdout
    sub = run("sql", "-h")
    assert sub.returncode == 0 and "--max-rows" in sub.stdout


def test_help_shows_brackets_literally_and_no_bool_labels() -> None:
    done = run("sql", "--help")
    assert done.returncode == 0
    assert "http://<[gateway] bind>" in done.stdout
    assert "<bool>" not in done.stdout
    assert "[gateway] bind" in run("mcp", "--help").stdout


def test_datasets_versions_indexes_as_tables_and_json(lakehouse: LakehouseProcess) -> None:
    gw = ["--gateway", lakehouse.url]
    table = run("datasets", *gw)
    assert table.returncode == 0, table.stderr
    assert "people" in table.stdout
    listed = json.loads(run("datasets", "--json", *gw).stdout)
    assert [(d["name"], d["version"], d["row_count"]) for d in listed["datasets"]] == [("people", 2, 2)]

    versions = json.loads(run("versions", "people", "--json", *gw).stdout)
    assert [v["version"] for v in versions["versions"]] == [1, 2]
    assert "2" in run("versions", "people", *gw).stdout
    unknown = run("versions", "nobody", *gw)
    assert unknown.returncode == 1 and "not_found" in unknown.stderr

    indexes = json.loads(run("indexes", "--json", *gw).stdout)
    assert [(i["name"], i["dim"]) for i in indexes["indexes"]] == [("notes", 3)]
    assert "notes" in run("indexes", *gw).stdout


def test_ingest_from_stdin_with_json_output(lakehouse: LakehouseProcess) -> None:
    gw = ["--gateway", lakehouse.url]
    done = run("ingest", "-", "--name", "piped", "--json", *gw, stdin=b"a,b\n1,x\n2,y\n")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["dataset"] == "piped" and body["version"] == 1 and body["rows"] == 2 and body["created"]
    again = run("ingest", "-", "--name", "piped", *gw, stdin=b"a,b\n1,x\n2,y\n")
    assert again.returncode == 0 and "already ingested" in again.stdout


def test_ingest_a_file_and_errors_exit_1(lakehouse: LakehouseProcess, tmp_path: Path) -> None:
    gw = ["--gateway", lakehouse.url]
    csv = tmp_path / "pets.csv"
    csv.write_bytes(b"name,legs\ncat,4\n")
    done = run("ingest", str(csv), "--name", "pets", *gw)
    assert done.returncode == 0, done.stderr
    assert "pets new version 1" in done.stdout
    drift = tmp_path / "drift.csv"
    drift.write_bytes(b"other\n1\n")
    refused = run("ingest", str(drift), "--name", "pets", *gw)
    assert refused.returncode == 1 and "schema_drift" in refused.stderr
    missing = run("ingest", str(tmp_path / "nope.csv"), "--name", "pets", *gw)
    assert missing.returncode == 2
    bad_mode = run("ingest", str(csv), "--name", "pets", "--mode", "merge", *gw)
    assert bad_mode.returncode == 2


def test_sql_json_and_the_server_cap_is_said(lakehouse: LakehouseProcess, tmp_path: Path) -> None:
    gw = ["--gateway", lakehouse.url]
    answer = run("sql", "SELECT id, name FROM people ORDER BY id", "--json", *gw)
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout)["rows"] == [[1, "Ada"], [2, "Bo"]]
    # A lakehouse whose [queryd] max_rows is 5: asking for 50 says the server capped it.
    root = tmp_path / "capped"
    config = write_config(
        tmp_path / "capped.toml", {"storage": {"root": str(root)}, "queryd": {"max_rows": 5}}
    )
    with serving(config) as capped:
        done = run("sql", "SELECT * FROM range(100)", "--max-rows", "50", "--gateway", capped.url)
    assert done.returncode == 0, done.stderr
    assert "server caps" in done.stderr and "5" in done.stderr
    bad = run("sql", "SELEC 1", *gw)
    assert bad.returncode == 1 and "sql_error" in bad.stderr


def test_brackets_in_error_text_print_literally(lakehouse: LakehouseProcess) -> None:
    # DuckDB's message quotes the column: rich markup must not eat "[red]" as a style.
    done = run("sql", 'SELECT "[red]nope"', "--gateway", lakehouse.url)
    assert done.returncode == 1
    assert "sql_error" in done.stderr and "[red]nope" in done.stderr


def test_models_on_a_server_without_the_route_says_so(lakehouse: LakehouseProcess) -> None:
    done = run("models", "--gateway", lakehouse.url)
    if done.returncode == 0:
        assert done.stdout  # the route exists on this server
    else:
        assert done.returncode == 1 and "/v1/models" in done.stderr


def test_a_server_that_is_down_gets_the_hint_and_exit_1() -> None:
    url = closed_url()
    for args in (("datasets",), ("sql", "SELECT 1"), ("indexes", "--json"), ("ingest", "-", "--name", "x")):
        done = run(*args, "--gateway", url, stdin=b"a\n1\n")
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        said = " ".join(done.stderr.split())
        assert "is it running? start it with `lakehouse serve`" in said, said
        assert url in said


def test_the_gateway_url_comes_from_lakehouse_url(lakehouse: LakehouseProcess) -> None:
    done = run("datasets", "--json", env={"LAKEHOUSE_URL": lakehouse.url}, drop=("LAKEHOUSE_GATEWAY_URL",))
    assert done.returncode == 0, done.stderr
    assert "people" in done.stdout


def test_serve_prints_the_banner_after_the_listening_line(lakehouse: LakehouseProcess) -> None:
    log = lakehouse.log()
    listening = log.index("lakehouse all listening on http://127.0.0.1:")
    banner = log[listening:]
    assert f"{lakehouse.url}/docs" in banner
    assert "data:" in banner and "services: gateway, storaged" in banner


def test_datasets_expire_and_delete(lakehouse: LakehouseProcess, tmp_path: Path) -> None:
    gw = ["--gateway", lakehouse.url]
    for index in range(3):
        source = tmp_path / f"part{index}.csv"
        source.write_text(f"id,label\n{index},row {index}\n")
        assert run("ingest", str(source), "--name", "expiring", *gw).returncode == 0
    both = run("datasets", "expire", "expiring", "--keep-last", "1", "--older-than", "2020-01-01", *gw)
    assert both.returncode == 2 and "exactly one" in both.stderr
    expired = run("datasets", "expire", "expiring", "--keep-last", "1", "--json", *gw)
    assert expired.returncode == 0, expired.stderr
    assert json.loads(expired.stdout)["expired"] == [1, 2]
    versions = json.loads(run("versions", "expiring", "--json", *gw).stdout)
    assert [v["version"] for v in versions["versions"]] == [3]
    assert "nothing to expire" in run("datasets", "expire", "expiring", "--keep-last", "1", *gw).stderr
    refused = run("datasets", "delete", "expiring", *gw, stdin=b"n\n")
    assert refused.returncode == 1
    deleted = run("datasets", "delete", "expiring", "--yes", *gw)
    assert deleted.returncode == 0, deleted.stderr
    gone = run("versions", "expiring", *gw)
    assert gone.returncode == 1 and "not_found" in gone.stderr
