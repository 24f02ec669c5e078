"""`/v1/ask` end to end: a real `lakehouse serve` with tokens on, driven by a scripted tool-calling model.

The model is a fake (tests/fakes/scripted.py) that makes the tool calls a
test scripts, checks the results it gets back, then answers; embeddings come
from the fake Ollama. The lakehouse holds `candidates` and `jobs` from the
staffing set and an index `profiles` of the candidates' notes.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from lakehouse.auth import Scope
from tests.conftest import StartLakehouse
from tests.fakes.ollama import FakeOllama, run_fake_ollama
from tests.fakes.scripted import Results, ScriptedModel, Turn, run_scripted_model
from tests.support.procs import LakehouseProcess, closed_url, serving, write_config
from tests.support.staffing import csv_bytes, rows
from tests.support.tokens import mint

pytestmark = pytest.mark.e2e

CANDIDATES = 120
NO_KEY_FILES = {f"{p}_key_file": "" for p in ("ollama_cloud", "openrouter", "opencode", "kimi")}
OR_KEY = "sk-or-ask-secret"
MODEL = "qwen3:4b"


@dataclass
class Lake:
    """The module's lakehouse, its fakes and its tokens."""

    proc: LakehouseProcess
    model: ScriptedModel
    read: str
    write: str
    workdir: Path

    def client(self, token: str | None = "read") -> httpx.Client:
        """A client of the lakehouse with the read token (or `write`, or none)."""
        headers = {"Authorization": f"Bearer {getattr(self, token)}"} if token else {}
        return self.proc.client(headers=headers, timeout=60.0)

    def ask(self, **body: Any) -> httpx.Response:
        """POST /v1/ask with the read token; the model defaults to the scripted one."""
        with self.client() as client:
            return client.post("/v1/ask", json={"model": MODEL, **body})

    def sql(self, query: str) -> list[list[Any]]:
        """Rows of a query, asked directly."""
        with self.client() as client:
            answer = client.post("/v1/sql", json={"sql": query})
            assert answer.status_code == 200, answer.text
            result: list[list[Any]] = answer.json()["rows"]
            return result


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[ScriptedModel, FakeOllama]]:
    """The scripted chat model and the fake Ollama for embeddings."""
    with run_scripted_model() as model, run_fake_ollama() as ollama:
        yield model, ollama


@pytest.fixture(scope="module")
def lake(fakes: tuple[ScriptedModel, FakeOllama], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    """One process for the module: tokens required, candidates, jobs and the profiles index."""
    model, ollama = fakes
    workdir = tmp_path_factory.mktemp("ask")
    root = workdir / "data"
    config = write_config(
        workdir / "lakehouse.toml",
        {
            "storage": {"root": str(root)},
            "auth": {"required": True},
            "chatd": {
                **NO_KEY_FILES,
                "ollama_url": model.url,
                "openrouter_url": model.url + "/v1",
                "kimi_url": closed_url(),
            },
            "embedd": {"ollama_url": ollama.url},
            "ingestd": {"tmp_dir": str(workdir / "spool")},
        },
    )
    read, write = mint(root, "reader", Scope.READ), mint(root, "writer", Scope.WRITE)
    with serving(config, env={"OPENROUTER_API_KEY": OR_KEY, "KIMI_API_KEY": "sk-kimi"}) as proc:
        lake = Lake(proc, model, read, write, workdir)
        with lake.client("write") as client:
            for table, count in (("candidates", CANDIDATES), ("jobs", 30)):
                answer = client.post(
                    f"/v1/ingest/{table}",
                    content=csv_bytes(table, count),
                    headers={"content-type": "text/csv"},
                )
                assert answer.status_code == 201, answer.text
            created = client.post(
                "/v1/vectors/index", json={"name": "profiles", "dim": 768, "model": "nomic-embed-text"}
            )
            assert created.status_code == 201, created.text
            items = [
                {
                    "id": str(row[0]),
                    "text": str(row[6] or row[1]),
                    "metadata": {"city": row[3], "hourly_rate": float(str(row[4]))},
                }
                for row in rows("candidates", CANDIDATES)
            ]
            added = client.post("/v1/vectors/index/profiles/add", json={"items": items})
            assert added.status_code == 200, added.text
        yield lake


@pytest.fixture
def scripted(lake: Lake) -> Iterator[ScriptedModel]:
    """The scripted model, checked after the test: every script check passed."""
    yield lake.model
    assert lake.model.failures == []


def test_a_question_is_answered_from_sql_with_its_citation(lake: Lake, scripted: ScriptedModel) -> None:
    (expected,) = lake.sql("SELECT count(*) FROM candidates WHERE city = 'Lyon'")[0]
    query = "SELECT count(*) AS n FROM candidates WHERE city = 'Lyon'"

    def saw_count(results: Results) -> None:
        assert results == [{"columns": ["n"], "rows": [[expected]], "row_count": 1, "truncated": False}]

    scripted.play(
        Turn(calls=[("sql", {"query": query})]),
        Turn(answer=lambda r: f"{r[0]['rows'][0][0]} candidates live in Lyon.", check=saw_count),
    )
    answer = lake.ask(question="How many candidates live in Lyon?", datasets=["candidates"])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["answer"] == f"{expected} candidates live in Lyon."
    assert body["model"] == MODEL
    assert body["finish"] == "answer"
    assert body["steps"] == [{"tool": "sql", "input": {"query": query}, "output": saw_count_output(expected)}]
    assert body["citations"] == [
        {"type": "sql", "sql": query, "datasets": [{"dataset": "candidates", "version": 1}]}
    ]
    # The model was told what it may read, and offered the tools without search (no index named).
    first = scripted.requests[0]
    assert "candidates: version 1, 120 rows" in first["messages"][0]["content"]
    assert [t["function"]["name"] for t in first["tools"]] == ["list_datasets", "describe_dataset", "sql"]


def saw_count_output(expected: int) -> dict[str, Any]:
    """The sql step's output for a one-row count."""
    return {"columns": ["n"], "rows": [[expected]], "row_count": 1, "truncated": False}


def test_row_ids_are_cited_and_rows_capped(lake: Lake, scripted: ScriptedModel) -> None:
    query = "SELECT candidate_id, full_name FROM candidates ORDER BY candidate_id"

    def capped(results: Results) -> None:
        assert len(results[0]["rows"]) == 50
        assert results[0]["truncated"] is True

    scripted.play(Turn(calls=[("sql", {"query": query})]), Turn(answer="Listed.", check=capped))
    body = lake.ask(question="List the candidates", datasets=["candidates"]).json()
    (citation,) = body["citations"]
    assert citation["row_ids"] == list(range(1, 51))
    assert citation["datasets"] == [{"dataset": "candidates", "version": 1}]


def test_a_question_is_answered_from_search(lake: Lake, scripted: ScriptedModel) -> None:
    lyon = {str(row[0]) for row in rows("candidates", CANDIDATES) if row[3] == "Lyon"}

    def only_lyon(results: Results) -> None:
        hits = results[0]["hits"]
        assert hits and {h["id"] for h in hits} <= lyon
        assert all(h["metadata"]["city"] == "Lyon" for h in hits)

    scripted.play(
        Turn(
            calls=[
                (
                    "search",
                    {
                        "index": "profiles",
                        "query": "night shifts welding",
                        "k": 5,
                        "filter": {"city": "Lyon"},
                    },
                )
            ]
        ),
        Turn(answer=lambda r: "Try " + ", ".join(h["id"] for h in r[0]["hits"]), check=only_lyon),
    )
    answer = lake.ask(question="Who in Lyon welds at night?", indexes=["profiles"], datasets=["candidates"])
    assert answer.status_code == 200, answer.text
    body = answer.json()
    (step,) = body["steps"]
    ids = [h["id"] for h in step["output"]["hits"]]
    assert body["answer"] == "Try " + ", ".join(ids)
    assert body["citations"] == [{"type": "search", "index": "profiles", "ids": ids}]
    tools = scripted.requests[0]["tools"]
    search = next(t for t in tools if t["function"]["name"] == "search")
    assert search["function"]["parameters"]["properties"]["index"]["enum"] == ["profiles"]


FORBIDDEN = [
    "COPY candidates TO '{dir}/leak.csv'",
    "ATTACH '{dir}/leak.db' AS leak",
    "DROP VIEW candidates",
    "CREATE TABLE leak AS SELECT * FROM candidates",
]


@pytest.mark.parametrize("datasets", [None, ["candidates"]], ids=["all-datasets", "named-datasets"])
@pytest.mark.parametrize("statement", FORBIDDEN)
def test_a_forbidden_statement_comes_back_as_an_error_and_changes_nothing(
    lake: Lake, scripted: ScriptedModel, statement: str, datasets: list[str] | None
) -> None:
    query = statement.format(dir=lake.workdir)
    before = lake.sql("SELECT count(*) FROM candidates")

    def refused(results: Results) -> None:
        assert results[0]["error"]["code"] == "forbidden_statement", results

    scripted.play(Turn(calls=[("sql", {"query": query})]), Turn(answer="I cannot do that.", check=refused))
    body: dict[str, Any] = {"question": "Export the candidates"}
    if datasets is not None:
        body["datasets"] = datasets
    answer = lake.ask(**body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["steps"][0]["output"]["error"]["code"] == "forbidden_statement"
    assert answer.json()["citations"] == []
    assert lake.sql("SELECT count(*) FROM candidates") == before
    assert not list(lake.workdir.glob("leak*"))


@pytest.mark.parametrize(
    "query",
    [
        "SELECT count(*) FROM jobs",
        "SELECT * FROM candidates WHERE city IN (SELECT city FROM jobs)",
        "WITH j AS (SELECT * FROM jobs) SELECT * FROM j",
        'SELECT * FROM "jobs@1"',
        "SELECT * FROM main.jobs",
        "SELECT * FROM query_table('jobs')",
        "SHOW TABLES",
    ],
)
def test_a_dataset_not_named_is_refused_as_a_tool_error(
    lake: Lake, scripted: ScriptedModel, query: str
) -> None:
    def refused(results: Results) -> None:
        assert results[0]["error"]["code"] == "forbidden", results
        assert (
            "candidates" in results[0]["error"]["message"]
            or "datasets named" in results[0]["error"]["message"]
        )

    scripted.play(Turn(calls=[("sql", {"query": query})]), Turn(answer="Not allowed.", check=refused))
    answer = lake.ask(question="How many jobs?", datasets=["candidates"])
    assert answer.status_code == 200, answer.text
    assert "rows" not in answer.json()["steps"][0]["output"]


def test_the_catalog_tools_show_only_the_named_datasets(lake: Lake, scripted: ScriptedModel) -> None:
    def checked(results: Results) -> None:
        listed, described, hidden = results
        assert listed == {"datasets": [{"name": "candidates", "version": 1, "row_count": CANDIDATES}]}
        assert described["name"] == "candidates"
        assert [c["name"] for c in described["schema"]][:2] == ["candidate_id", "full_name"]
        assert described["versions"][0]["version"] == 1
        assert hidden["error"]["code"] == "not_found"

    scripted.play(
        Turn(
            calls=[
                ("list_datasets", {}),
                ("describe_dataset", {"name": "candidates"}),
                ("describe_dataset", {"name": "jobs"}),
            ]
        ),
        Turn(answer="Seen.", check=checked),
    )
    assert lake.ask(question="What is there?", datasets=["candidates"]).status_code == 200


def test_bad_calls_come_back_to_the_model_as_errors(lake: Lake, scripted: ScriptedModel) -> None:
    def errors(results: Results) -> None:
        codes = [r["error"]["code"] for r in results]
        assert codes == ["not_found", "invalid_request", "not_found", "sql_error"]

    scripted.play(
        Turn(
            calls=[
                ("drop_everything", {}),
                ("sql", {}),
                ("search", {"index": "profiles", "query": "x"}),  # no index named: no search tool
                ("sql", {"query": "SELEC 1"}),
            ]
        ),
        Turn(answer="Nothing worked.", check=errors),
    )
    answer = lake.ask(question="Anything?", datasets=["candidates"])
    assert answer.status_code == 200, answer.text
    assert [s["tool"] for s in answer.json()["steps"]] == ["drop_everything", "sql", "search", "sql"]


def test_max_steps_bounds_the_rounds_then_asks_for_an_answer(lake: Lake, scripted: ScriptedModel) -> None:
    scripted.play(Turn(calls=[("list_datasets", {})]), repeat_last=True)
    answer = lake.ask(question="Loop forever", max_steps=2)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [s["tool"] for s in body["steps"]] == ["list_datasets", "list_datasets"]
    assert body["finish"] == "max_steps"
    assert body["rounds"] == 2
    assert body["answer"] == "No answer within 2 tool rounds."
    assert len(scripted.requests) == 3
    assert "tools" not in scripted.requests[-1]
    assert "every tool round" in scripted.requests[-1]["messages"][-1]["content"]


def sse_events(response: httpx.Response) -> list[tuple[str, dict[str, Any]]]:
    """The (event, data) pairs of a server-sent event stream."""
    events = []
    for block in response.text.split("\n\n"):
        if not block.strip():
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_stream_sends_each_step_then_the_answer(lake: Lake, scripted: ScriptedModel) -> None:
    scripted.play(
        Turn(calls=[("list_datasets", {})]),
        Turn(calls=[("sql", {"query": "SELECT count(*) AS n FROM candidates"})]),
        Turn(answer=lambda r: f"There are {r[0]['rows'][0][0]}."),
    )
    with lake.client() as client:
        response = client.post("/v1/ask", json={"model": MODEL, "question": "How many?", "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response)
    assert [kind for kind, _ in events] == ["step", "step", "answer"]
    assert [data["tool"] for _, data in events[:2]] == ["list_datasets", "sql"]
    final = events[-1][1]
    assert final["answer"] == f"There are {CANDIDATES}."
    assert final["steps"] == [data for _, data in events[:2]]


def test_a_provider_failure_mid_stream_is_an_error_event(lake: Lake) -> None:
    lake.model.play(Turn(calls=[("list_datasets", {})]))  # the second round is past the script: a 500
    with lake.client() as client:
        response = client.post("/v1/ask", json={"model": MODEL, "question": "How many?", "stream": True})
    assert response.status_code == 200
    assert [(kind, data.get("error", {}).get("code")) for kind, data in sse_events(response)] == [
        ("step", None),
        ("error", "upstream_error"),
    ]


def test_a_provider_failure_before_any_step_keeps_its_status(lake: Lake) -> None:
    lake.model.play()
    for stream in (False, True):
        answer = lake.ask(question="Anything?", stream=stream)
        assert answer.status_code == 502, answer.text
        assert answer.json()["error"]["code"] == "upstream_error"


def test_a_model_that_cannot_call_tools_is_a_clear_error(lake: Lake) -> None:
    answer = lake.ask(question="Anything?", model="gemma3:1b")
    assert answer.status_code == 502
    assert "cannot call tools" in answer.json()["error"]["message"]


def test_provider_errors_keep_chats_statuses(lake: Lake) -> None:
    lake.model.play()
    lake.model.fail_status = 429
    limited = lake.ask(question="Anything?")
    assert (limited.status_code, limited.json()["error"]["code"]) == (429, "rate_limited")
    assert limited.headers["retry-after"] == "7"
    unreachable = lake.ask(question="Anything?", model="kimi/k2")
    assert (unreachable.status_code, unreachable.json()["error"]["code"]) == (503, "provider_unavailable")
    unregistered = lake.ask(question="Anything?", model="opencode/x")
    assert (unregistered.status_code, unregistered.json()["error"]["code"]) == (
        404,
        "provider_not_registered",
    )
    lake.model.play()


def test_a_question_past_its_time_is_504(lake: Lake, start_lakehouse: StartLakehouse) -> None:
    proc = start_lakehouse(config={"chatd": {"ollama_url": lake.model.url, "ask_timeout_secs": 0.5}})
    lake.model.play(Turn(answer="too late"))
    lake.model.delay = 5.0
    try:
        with proc.client(timeout=30.0) as client:
            answer = client.post("/v1/ask", json={"model": MODEL, "question": "Quick?"})
    finally:
        lake.model.play()
    assert answer.status_code == 504
    assert answer.json()["error"]["code"] == "upstream_timeout"
    assert "0.5 s" in answer.json()["error"]["message"]


def test_an_openai_compatible_provider_runs_the_same_loop(lake: Lake, scripted: ScriptedModel) -> None:
    scripted.play(
        Turn(calls=[("sql", {"query": "SELECT count(*) AS n FROM jobs"})]),
        Turn(answer=lambda r: f"{r[0]['rows'][0][0]} jobs."),
    )
    answer = lake.ask(question="How many jobs?", model="openrouter/vendor/model", max_steps=1)
    assert answer.status_code == 200, answer.text
    assert answer.json()["answer"] == "30 jobs."
    assert answer.json()["provider"] == "openrouter"
    tool_message = scripted.requests[1]["messages"][-2]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "call_0"
    # Out of rounds: the tools are still named, but the model may not call them.
    assert scripted.requests[1]["tool_choice"] == "none" and scripted.requests[1]["tools"]


@pytest.mark.parametrize("question", ["", "   ", "x" * 4001])
def test_an_empty_or_oversized_question_is_400(lake: Lake, question: str) -> None:
    answer = lake.ask(question=question)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(
    "body", [{"max_steps": 0}, {"max_steps": 21}, {"model": ""}, {"datasets": "candidates"}]
)
def test_invalid_fields_are_400(lake: Lake, body: dict[str, Any]) -> None:
    answer = lake.ask(question="How many?", **body)
    assert answer.status_code == 400, answer.text


@pytest.mark.parametrize(
    ("body", "named"),
    [({"datasets": ["ghosts"]}, {"dataset": "ghosts"}), ({"indexes": ["ghosts"]}, {"index": "ghosts"})],
)
def test_an_unknown_dataset_or_index_is_404(lake: Lake, body: dict[str, Any], named: dict[str, str]) -> None:
    lake.model.play()
    answer = lake.ask(question="How many?", **body)
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert error["code"] == "not_found"
    assert named.items() <= error.items()
    assert lake.model.requests == []  # refused before any model call


def test_ask_needs_a_token(lake: Lake) -> None:
    with lake.client(token=None) as client:
        answer = client.post("/v1/ask", json={"model": MODEL, "question": "How many?"})
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")


def test_a_long_result_is_cut_to_what_the_model_may_read(lake: Lake, scripted: ScriptedModel) -> None:
    query = "SELECT candidate_id, notes, notes AS again FROM candidates ORDER BY candidate_id"

    def cut(results: Results) -> None:
        (result,) = results
        assert 0 < len(result["rows"]) < 50
        assert "fit in what the model reads" in result["cut"]

    scripted.play(Turn(calls=[("sql", {"query": query})]), Turn(answer="Cut.", check=cut))
    assert lake.ask(question="All notes?", datasets=["candidates"]).status_code == 200
    sent = next(m for m in scripted.requests[1]["messages"] if m["role"] == "tool")["content"]
    assert len(sent) <= 8000
