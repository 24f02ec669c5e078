"""`/v1/ask` through its clients: `Client.ask` and `ask_stream`, `lakehouse ask`, the MCP `ask` tool."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator

import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from lakehouse import Client
from lakehouse.client import models as m
from lakehouse.errors import NotFound, UpstreamError
from tests.fakes.scripted import ScriptedModel, Turn, run_scripted_model
from tests.support.procs import LAKEHOUSE, LakehouseProcess, serving, write_config

pytestmark = pytest.mark.e2e

PEOPLE_CSV = b"id,name,city\n1,Ada,Oslo\n2,Bo,Lima\n3,Cy,Oslo\n"
OSLO = "SELECT id FROM people WHERE city = 'Oslo' ORDER BY id"


@pytest.fixture(scope="module")
def model() -> Iterator[ScriptedModel]:
    """The scripted tool-calling model."""
    with run_scripted_model() as fake:
        yield fake


@pytest.fixture(scope="module")
def lakehouse(model: ScriptedModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LakehouseProcess]:
    """One open lakehouse with a `people` dataset, chatting with the scripted model."""
    root = tmp_path_factory.mktemp("ask-clients")
    config = write_config(
        root / "lakehouse.toml",
        {
            "storage": {"root": str(root / "data")},
            "chatd": {"ollama_url": model.url},
            "ingestd": {"tmp_dir": str(root / "spool")},
        },
    )
    with serving(config) as proc:
        with proc.client() as client:
            answer = client.post(
                "/v1/ingest/people", content=PEOPLE_CSV, headers={"content-type": "text/csv"}
            )
            assert answer.status_code == 201, answer.text
        yield proc


def oslo_script(model: ScriptedModel) -> None:
    """One SQL round, then an answer naming the ids it got."""
    model.play(
        Turn(calls=[("sql", {"query": OSLO})]),
        Turn(answer=lambda r: "Oslo: " + ", ".join(str(row[0]) for row in r[0]["rows"])),
    )


def test_client_ask_and_ask_stream(lakehouse: LakehouseProcess, model: ScriptedModel) -> None:
    with Client(lakehouse.url) as client:
        oslo_script(model)
        answer = client.ask("Who is in Oslo?", "qwen3:4b", datasets=["people"])
        assert answer.answer == "Oslo: 1, 3"
        assert answer.citations[0]["row_ids"] == [1, 3]
        assert answer.citations[0]["datasets"] == [{"dataset": "people", "version": 1}]
        oslo_script(model)
        events = list(client.ask_stream("Who is in Oslo?", "qwen3:4b", datasets=["people"]))
        assert [type(e) for e in events] == [m.AskStep, m.AskAnswer]
        assert isinstance(events[0], m.AskStep) and events[0].tool == "sql"
        assert isinstance(events[1], m.AskAnswer) and events[1].answer == "Oslo: 1, 3"
        with pytest.raises(NotFound):
            client.ask("Who?", "qwen3:4b", datasets=["ghosts"])
        model.play(Turn(calls=[("list_datasets", {})]))  # the second round fails: an error event
        with pytest.raises(UpstreamError):
            list(client.ask_stream("Who?", "qwen3:4b"))
    assert model.failures == ["request 2 is past the script's 1 turns"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """`lakehouse ARGS` with a wide terminal and no colour."""
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run([LAKEHOUSE, *args], capture_output=True, text=True, env=env, timeout=60)


def test_cli_ask_prints_the_steps_then_the_answer(lakehouse: LakehouseProcess, model: ScriptedModel) -> None:
    oslo_script(model)
    done = run(
        "ask", "Who is in Oslo?", "--model", "qwen3:4b", "--dataset", "people", "--gateway", lakehouse.url
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Oslo: 1, 3"
    assert f"→ sql {OSLO} · 2 rows" in done.stderr
    assert "cites SQL over people@1 rows [1, 3]" in done.stderr
    oslo_script(model)
    done = run("ask", "Who?", "-m", "qwen3:4b", "-d", "people", "--json", "--gateway", lakehouse.url)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["answer"] == "Oslo: 1, 3"
    assert body["steps"][0]["output"]["rows"] == [[1], [3]]
    missing = run("ask", "Who?", "-m", "qwen3:4b", "-d", "ghosts", "--gateway", lakehouse.url)
    assert missing.returncode == 1
    assert "not_found" in missing.stderr and "ghosts" in missing.stderr


async def test_mcp_ask_tool(lakehouse: LakehouseProcess, model: ScriptedModel) -> None:
    oslo_script(model)
    params = StdioServerParameters(command=LAKEHOUSE, args=["mcp", "--gateway", lakehouse.url])
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        result = await session.call_tool(
            "ask", {"question": "Who is in Oslo?", "model": "qwen3:4b", "datasets": ["people"]}
        )
        assert not result.is_error
        assert result.structured_content is not None
        assert result.structured_content["answer"] == "Oslo: 1, 3"
        assert result.structured_content["citations"][0]["row_ids"] == [1, 3]
        refused = await session.call_tool(
            "ask", {"question": "Who?", "model": "qwen3:4b", "indexes": ["nope"]}
        )
        assert refused.is_error
        assert "not_found (404)" in "".join(getattr(c, "text", "") for c in refused.content)
