"""The README's examples, run as written, top to bottom, against a real `lakehouse serve`.

The server is started by the test (port 0) over a fresh data folder, in a working
folder that stands for a fresh clone: its `.venv/bin/lakehouse` is the installed
script and `lakehouse` alone is not on the PATH. The only rewrites are the ones a
reader on another port would make: `127.0.0.1:3110` becomes the test server's
address in every block, and `$LAKEHOUSE_GATEWAY_URL` points the CLI at it. Chat and
ask go to `[chatd] ollama_url`, a scripted tool-calling fake (tests/fakes/scripted.py)
that answers from the tool results it is sent; embeddings use the real
`local/all-minilm-l6-v2`.

Run, in README order: the `sh` blocks of "A first session", "From data to answers",
"Authentication" and "Command line" (one bash per block, `set -e -o pipefail`, each
command's output checked against what the README says of it; every `curl` answer
must be JSON without an error); the `python` blocks of "Iceberg: the same data
from other engines" and "Python client" (statement by statement, as pasted into
`python`); the Iceberg `sql` block through DuckDB's Python package with the
httpfs, avro and iceberg extensions loaded from their PyPI packages, as its
comment asks.

Left out, and why:
- "Quick start" and "Development" (`sh`): `make run`, `make test`, `make check` and
  `make bench` install, serve on the fixed port 3110 or run the whole suite; the
  server this test starts stands in for `make run`.
- "MCP" (`json`): a configuration file for Claude Desktop or Claude Code, not a
  command; `lakehouse mcp` itself is covered by tests/e2e/test_mcp.py.
"""

from __future__ import annotations

import importlib.resources
import io
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa
import pytest

from tests.fakes.scripted import Results, ScriptedModel, Turn, run_scripted_model
from tests.support.procs import LAKEHOUSE, LakehouseProcess, closed_url, serving, write_config
from tests.support.readme import Block, Ran, blocks, run_python, run_shell, shell_commands

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"
README_ADDRESS = "127.0.0.1:3110"
RUN = (
    "A first session",
    "From data to answers",
    "Iceberg: the same data from other engines",
    "Authentication",
    "Command line",
    "Python client",
)
LEFT_OUT = {"Quick start": "make", "Development": "make", "MCP": "an assistant's config file"}
NO_KEY_FILES = {f"{p}_key_file": "" for p in ("ollama_cloud", "openrouter", "opencode", "kimi")}
FOREIGN_ENV = ("OPENROUTER_API_KEY", "OLLAMA_API_KEY", "OPENCODE_API_KEY", "KIMI_API_KEY", "OPENAI_API_KEY")
AD = "Forklift operator wanted in Leeds: days or nights, counterbalance licence, start Monday."


@dataclass
class Session:
    """The server, its scripted model and the working folder the README's commands run in."""

    proc: LakehouseProcess
    model: ScriptedModel
    cwd: Path
    env: dict[str, str]

    def address(self, text: str) -> str:
        """`text` with the README's address replaced by the test server's."""
        return text.replace(README_ADDRESS, f"127.0.0.1:{self.proc.port}")

    def versions(self, name: str) -> list[dict[str, Any]]:
        """The dataset's versions, oldest first, from the catalog."""
        with self.proc.client() as client:
            answer = client.get(f"/v1/catalog/datasets/{name}/versions")
            assert answer.status_code == 200, answer.text
            found: list[dict[str, Any]] = answer.json()["versions"]
            return found

    def rows(self, name: str) -> int:
        """Rows in the dataset's current version."""
        return int(self.versions(name)[-1]["row_count"])

    def csv_rows(self, file: str) -> int:
        """Data rows of a CSV file the README wrote (header left out)."""
        return len((self.cwd / file).read_text().strip().splitlines()) - 1


@pytest.fixture
def session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Session]:
    """A lakehouse with a fresh data folder, served from a folder laid out like a fresh clone."""
    for name in [*FOREIGN_ENV, *(k for k in os.environ if k.startswith("LAKEHOUSE_"))]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "lakehouse").symlink_to(LAKEHOUSE)
    with run_scripted_model() as model:
        config = write_config(
            tmp_path / "lakehouse.toml",
            {
                "storage": {"root": str(tmp_path / "data")},
                "chatd": {**NO_KEY_FILES, "ollama_url": model.url},
                # One torch thread loads and embeds faster on cores shared with other work.
                "embedd": {"ollama_url": closed_url(), "openai_key_file": "", "local_threads": 1},
                "ingestd": {"tmp_dir": str(tmp_path / "spool")},
            },
        )
        with serving(config, timeout=60.0, cwd=tmp_path) as proc:
            # `lakehouse` alone is not on a fresh clone's PATH: only .venv/bin/lakehouse runs it.
            here = str(Path(sys.executable).parent)
            path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if p != here)
            env = {**os.environ, "PATH": path, "LAKEHOUSE_GATEWAY_URL": proc.url}
            yield Session(proc, model, tmp_path, env)


# -- what the README says each command does -----------------------------------------------------

Check = Callable[[Session, Ran], None]


def _said(ran: Ran) -> str:
    """Everything a command printed, with wrapped lines joined (rich wraps at the console's width)."""
    return " ".join((ran.stdout + "\n" + ran.stderr).split())


def _json(ran: Ran) -> Any:
    try:
        return json.loads(ran.stdout)
    except ValueError:
        raise AssertionError(f"not JSON:\n{ran.command.describe()}\n{ran.stdout}\n{ran.stderr}") from None


def _first_ingest(s: Session, ran: Ran) -> None:
    assert "placements new version 1 " in _said(ran), _said(ran)


def _append_week2(s: Session, ran: Ran) -> None:
    answer = _json(ran)
    assert (answer["version"], answer["created"]) == (2, True), answer
    # "the same bytes again would answer 200 with "created": false"
    again = httpx.post(
        f"{s.proc.url}/v1/ingest/placements",
        params={"mode": "append"},
        content=(s.cwd / "placements-week2.csv").read_bytes(),
        headers={"Content-Type": "text/csv"},
        timeout=60.0,
    )
    assert (again.status_code, again.json()["created"], again.json()["version"]) == (200, False, 2)


def _count(s: Session, ran: Ran) -> None:
    expected = s.csv_rows("placements.csv") + s.csv_rows("placements-week2.csv")
    assert re.search(rf"\b{expected}\b", ran.stdout), ran.stdout


def _version_1(s: Session, ran: Ran) -> None:
    rows = _json(ran)["rows"]
    assert len(rows) == min(5, s.csv_rows("placements.csv")), rows


def _profiles_created(s: Session, ran: Ran) -> None:
    answer = _json(ran)
    assert (answer["name"], answer["dim"], answer["model"]) == ("profiles", 384, "local/all-minilm-l6-v2")


def _profiles_search(s: Session, ran: Ran) -> None:
    hits = _json(ran)["hits"]
    assert [h["id"] for h in hits] == ["c1"], hits
    assert hits[0]["metadata"]["city"] == "Leeds"


def _chat(s: Session, ran: Ran) -> None:
    assert AD in ran.stdout, ran.stdout


def _ask_placements(s: Session, ran: Ran) -> None:
    said = _said(ran)
    assert "2 placements last week" in ran.stdout, said
    assert "→ sql" in said and "cites SQL over placements@2" in said, said


def _candidates_ingest(s: Session, ran: Ran) -> None:
    assert f"candidates new version 1 ({s.csv_rows('candidates.csv')} rows" in _said(ran), _said(ran)


def _notes_created(s: Session, ran: Ran) -> None:
    answer = _json(ran)
    assert answer["name"] == "candidate_notes" and answer["source"]["dataset"] == "candidates", answer


def _hybrid(s: Session, ran: Ran) -> None:
    # Leeds and under 25 an hour: Ana (CDL-A) and Chloé (forklift); CDL-A counts as an exact term.
    assert {h["id"] for h in _json(ran)["hits"]} == {"1", "3"}, ran.stdout


def _ask_candidates(s: Session, ran: Ran) -> None:
    said = _said(ran)
    assert "Chloé Dubois" in ran.stdout, said
    assert "→ sql" in said and "→ search" in said, said
    assert "cites SQL over candidates@1" in said and "cites index candidate_notes" in said, said


def _token_list(s: Session, ran: Ran) -> None:
    assert "etl" in ran.stdout and "write" in ran.stdout, ran.stdout
    assert "lh_" not in ran.stdout, "token list printed a token"


def _sql_with_token(s: Session, ran: Ran) -> None:
    assert re.search(r"\b1\b", ran.stdout), ran.stdout


def _revoke(s: Session, ran: Ran) -> None:
    assert "revoked token 'etl'" in ran.stdout, ran.stdout


def _datasets(s: Session, ran: Ran) -> None:
    assert "placements" in ran.stdout and "candidates" in ran.stdout, ran.stdout


def _versions_json(s: Session, ran: Ran) -> None:
    # Two ingests, then the Iceberg append: at least three versions, oldest first, none missing.
    numbers = [v["version"] for v in _json(ran)["versions"]]
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 3, numbers


def _stdin_ingest(s: Session, ran: Ran) -> None:
    # The same bytes as the first ingest, still in the current version (an Iceberg append
    # since kept their file): nothing new.
    answer = _json(ran)
    assert (answer["dataset"], answer["created"]) == ("placements", False), ran.stdout


# A fragment of each command's text -> what to check; every fragment must match exactly one command.
CHECKS: dict[str, Check] = {
    "ingest placements.csv --name placements": _first_ingest,
    "@placements-week2.csv": _append_week2,
    "sql 'SELECT count(*) FROM placements'": _count,
    '\\"placements@1\\" LIMIT 5': _version_1,
    '"name": "profiles"': _profiles_created,
    "profiles/search": _profiles_search,
    "lakehouse chat qwen3:4b": _chat,
    "Summarise last week's placements": _ask_placements,
    "ingest candidates.csv": _candidates_ingest,
    '"name": "candidate_notes"': _notes_created,
    "candidate_notes/search": _hybrid,
    "Who in Leeds can drive a forklift": _ask_candidates,
    "token list": _token_list,
    'sql "SELECT 1" --token': _sql_with_token,
    "token revoke etl": _revoke,
    "lakehouse datasets": _datasets,
    "versions placements --json": _versions_json,
    "ingest - --name placements --json": _stdin_ingest,
}


def _no_error(s: Session, ran: Ran) -> None:
    """A `curl` must get a JSON answer that is not the contract's error body."""
    if ran.command.text.startswith("curl"):
        answer = _json(ran)
        assert not (isinstance(answer, dict) and "error" in answer), (
            ran.command.describe() + "\n" + ran.stdout
        )


# -- the scripted model's turns for each block's chat and ask commands -------------------------


def _has_rows(results: Results) -> None:
    assert results and all("rows" in r or "hits" in r for r in results), results


def _placements_answer(results: Results) -> str:
    count, rate = results[0]["rows"][0]
    return f"{count} placements last week, at {rate} an hour on average."


def _candidates_answer(results: Results) -> str:
    sql, search = results
    names = {str(row[0]): row[1] for row in sql["rows"]}
    best = [names[h["id"]] for h in search["hits"] if h["id"] in names]
    return f"{best[0]} drives a forklift in Leeds for under 25 an hour."


LAST_WEEK = "SELECT count(*), round(avg(hourly_rate), 2) FROM placements WHERE start_date >= '2026-11-23'"
LEEDS_UNDER_25 = "SELECT candidate_id, full_name FROM candidates WHERE city = 'Leeds' AND hourly_rate < 25"
FORKLIFT: dict[str, Any] = {"index": "candidate_notes", "query": "forklift", "mode": "hybrid", "k": 3}
FORKLIFT["filter"] = {"city": "Leeds", "hourly_rate": {"$lt": 25}}
SCRIPTS: dict[str, list[Turn]] = {
    "A first session": [
        Turn(answer=AD),
        Turn(calls=[("sql", {"query": LAST_WEEK})]),
        Turn(answer=_placements_answer, check=_has_rows),
    ],
    "From data to answers": [
        Turn(calls=[("sql", {"query": LEEDS_UNDER_25}), ("search", FORKLIFT)]),
        Turn(answer=_candidates_answer, check=_has_rows),
    ],
}


# -- running each kind of block ---------------------------------------------------------------


def _run_shell_block(s: Session, block: Block, unused: set[str]) -> None:
    s.model.play(*SCRIPTS.get(block.section, []))
    commands = shell_commands(s.address(block.text))
    try:
        ran = run_shell(commands, s.cwd, s.env)
    except AssertionError as exc:
        where = f"README line {block.line} ({block.section})"
        raise AssertionError(f"{where}: {exc}\n--- server log\n{s.proc.log()[-3000:]}") from None
    for one in ran:
        matched = [fragment for fragment in CHECKS if fragment in one.command.text]
        assert len(matched) <= 1, f"{matched} all match {one.command.text!r}"
        _no_error(s, one)
        for fragment in matched:
            CHECKS[fragment](s, one)
            unused.discard(fragment)
    assert s.model.failures == [], s.model.failures
    assert len(s.model.requests) == len(s.model.script), "the model was not asked what the README asks"


def _run_iceberg_python(s: Session, block: Block) -> None:
    before = s.versions("placements")
    values = dict(run_python(s.address(block.text), {}))
    current, first = values["the current version"], values["version 1"]
    assert current.num_rows == before[-1]["row_count"] and first.num_rows == before[0]["row_count"]
    after = s.versions("placements")
    assert after[-1]["version"] == before[-1]["version"] + 1, "the append is not the next version"
    assert after[-1]["row_count"] == before[-1]["row_count"] + 2  # more_rows: scan(limit=2)


def _run_iceberg_sql(s: Session, block: Block) -> None:
    con = duckdb.connect()
    try:
        for name in ("httpfs", "avro", "iceberg"):
            root = Path(str(importlib.resources.files(f"duckdb_extension_{name}")))
            con.execute(
                f"LOAD '{root / 'extensions' / f'v{duckdb.__version__}' / f'{name}.duckdb_extension'}'"
            )
        code = "\n".join(line for line in s.address(block.text).splitlines() if not line.startswith("--"))
        statements = [part.strip() for part in code.split(";") if part.strip()]
        for statement in statements[:-1]:
            con.execute(statement)
        ((count,),) = con.execute(statements[-1]).fetchall()
    finally:
        con.close()
    assert count == s.rows("placements")


def _run_client_python(s: Session, block: Block) -> None:
    printed = io.StringIO()
    namespace: dict[str, Any] = {}
    with redirect_stdout(printed):
        run_python(s.address(block.text), namespace)
    table = namespace["table"]
    assert isinstance(table, pa.Table) and table.column("n").to_pylist() == [s.rows("placements")]
    assert "placements" in printed.getvalue() and "candidates" in printed.getvalue(), printed.getvalue()


def test_every_block_is_run_or_left_out_for_a_reason() -> None:
    sections = {block.section for block in blocks(README)}
    assert sections <= {*RUN, *LEFT_OUT}, (
        f"README sections with code nobody runs: {sections - {*RUN, *LEFT_OUT}}"
    )
    assert set(RUN) <= sections, f"sections this test runs are gone: {set(RUN) - sections}"


def test_the_readme_runs_as_written(session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(session.cwd)  # the Python blocks name files relative to the clone
    unused = set(CHECKS)
    for block in blocks(README):
        if block.section not in RUN:
            continue
        if block.lang in ("sh", "bash"):
            _run_shell_block(session, block, unused)
        elif block.lang == "python" and block.section.startswith("Iceberg"):
            _run_iceberg_python(session, block)
        elif block.lang == "sql":
            _run_iceberg_sql(session, block)
        elif block.lang == "python":
            _run_client_python(session, block)
        else:
            raise AssertionError(f"README line {block.line}: no runner for a {block.lang!r} block")
    assert unused == set(), f"README commands these checks expect are gone: {sorted(unused)}"
