"""`lakehouse mcp` driven by the MCP SDK's own stdio client against a live `lakehouse serve`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError
from mcp.types import CallToolResult

from tests.support.procs import LAKEHOUSE, LakehouseProcess, closed_url, write_config

pytestmark = pytest.mark.e2e

PEOPLE_CSV = b"id,name,city\n1,Ada,Oslo\n2,Bo,Lima\n3,Cy,Oslo\n"


@asynccontextmanager
async def mcp_session(gateway: str | None = None, config: Path | None = None) -> AsyncIterator[ClientSession]:
    """A ready MCP client session to a `lakehouse mcp --gateway <gateway>` subprocess."""
    args = ["mcp", "--gateway", gateway] if gateway else ["mcp", "--config", str(config)]
    params = StdioServerParameters(command=LAKEHOUSE, args=args)
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


def text_of(result: CallToolResult) -> str:
    """All text content of a tool result."""
    return "".join(getattr(item, "text", "") for item in result.content)


def payload(result: CallToolResult) -> Any:
    """The JSON a successful tool returned."""
    assert not result.is_error, text_of(result)
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(text_of(result))


@pytest.fixture(scope="module")
def ollama_dim() -> int:
    """The module's fake Ollama embeds in 8 dimensions."""
    return 8


@pytest.fixture(scope="module")
def lakehouse(lakehouse: LakehouseProcess) -> LakehouseProcess:
    """The module's lakehouse (tests/e2e/conftest.py) holding a `people` dataset."""
    ingest(lakehouse, "people", PEOPLE_CSV)
    return lakehouse


def ingest(proc: LakehouseProcess, name: str, csv: bytes) -> None:
    """Ingest a CSV through the HTTP API."""
    with proc.client() as client:
        response = client.post(f"/v1/ingest/{name}", content=csv, headers={"content-type": "text/csv"})
    assert response.status_code == 201, response.text


async def test_tools_have_described_schemas_and_an_unreachable_gateway_is_a_tool_error() -> None:
    gateway = closed_url()
    async with mcp_session(gateway) as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        first = await session.call_tool("list_datasets", {})
        second = await session.call_tool("query_sql", {"sql": "SELECT 1"})
    assert set(tools) == {
        "list_datasets",
        "get_manifest",
        "query_sql",
        "list_indexes",
        "list_models",
        "embed_text",
        "search_vectors",
        "chat",
        "ask",
    }
    for tool in tools.values():
        assert tool.description
        for prop in tool.input_schema.get("properties", {}).values():
            assert prop.get("description"), f"{tool.name}: an argument without a description"
    assert tools["query_sql"].input_schema["required"] == ["sql"]
    assert tools["get_manifest"].input_schema["required"] == ["name"]
    assert tools["search_vectors"].input_schema["required"] == ["index"]
    assert set(tools["chat"].input_schema["required"]) == {"model", "prompt"}
    assert set(tools["ask"].input_schema["required"]) == {"question", "model"}
    assert {"answer", "steps", "citations"} <= set((tools["ask"].output_schema or {})["properties"])
    assert tools["query_sql"].annotations is not None and tools["query_sql"].annotations.read_only_hint
    # The server survives a dead gateway: both calls come back as tool errors naming it.
    for result in (first, second):
        assert result.is_error
        assert "cannot reach the lakehouse gateway" in text_of(result)
        assert gateway in text_of(result)


async def test_datasets_manifest_sql_and_resources_through_mcp(lakehouse: LakehouseProcess) -> None:
    proc = lakehouse
    async with mcp_session(proc.url) as session:
        listed = payload(await session.call_tool("list_datasets", {}))
        manifest = payload(await session.call_tool("get_manifest", {"name": "people"}))
        rows = payload(
            await session.call_tool(
                "query_sql", {"sql": "SELECT name FROM people WHERE city = 'Oslo' ORDER BY id"}
            )
        )
        capped = payload(await session.call_tool("query_sql", {"sql": "SELECT * FROM people", "max_rows": 2}))
        missing = await session.call_tool("get_manifest", {"name": "nobody"})
        sideways = await session.call_tool("get_manifest", {"name": "../../storage/objects"})
        resources = (await session.list_resources()).resources
        read = await session.read_resource("lakehouse://datasets/people")
        with pytest.raises(MCPError, match="not_found"):
            await session.read_resource("lakehouse://datasets/nobody")
    assert [d["name"] for d in listed["datasets"]] == ["people"]
    assert manifest["row_count"] == 3
    assert [c["name"] for c in manifest["schema"]] == ["id", "name", "city"]
    assert rows["rows"] == [["Ada"], ["Cy"]]
    assert len(capped["rows"]) == 2 and capped["truncated"] is True
    assert missing.is_error and "not_found" in text_of(missing)
    assert sideways.is_error
    assert [str(r.uri) for r in resources] == ["lakehouse://datasets/people"]
    overview = json.loads(getattr(read.contents[0], "text", ""))
    assert [c["name"] for c in overview["schema"]] == ["id", "name", "city"]
    assert overview["sample"]["rows"][0] == [1, "Ada", "Oslo"]


async def test_sql_errors_come_back_as_tool_errors_with_the_gateway_message(
    lakehouse: LakehouseProcess,
) -> None:
    proc = lakehouse
    async with mcp_session(proc.url) as session:
        bad = await session.call_tool("query_sql", {"sql": "SELECT no_such_column FROM (SELECT 1 AS a)"})
        write = await session.call_tool("query_sql", {"sql": "CREATE TABLE t (a INT)"})
        too_many = await session.call_tool("query_sql", {"sql": "SELECT 1", "max_rows": 100000})
    assert bad.is_error and "sql_error" in text_of(bad) and "no_such_column" in text_of(bad)
    assert write.is_error and "forbidden_statement" in text_of(write)
    assert too_many.is_error


async def test_embed_text_through_mcp(lakehouse: LakehouseProcess) -> None:
    async with mcp_session(lakehouse.url) as session:
        embedded = payload(await session.call_tool("embed_text", {"texts": ["apples", "pears"]}))
        empty = await session.call_tool("embed_text", {"texts": []})
    assert embedded["dim"] == 8 and len(embedded["vectors"]) == 2
    assert empty.is_error


async def test_chat_through_mcp(lakehouse: LakehouseProcess) -> None:
    async with mcp_session(lakehouse.url) as session:
        answer = payload(await session.call_tool("chat", {"model": "qwen3:4b", "prompt": "say hi"}))
        unrouted = await session.call_tool("chat", {"model": "kimi/k2", "prompt": "hi"})
    assert answer["provider"] == "ollama" and answer["content"]
    assert unrouted.is_error and "provider_not_registered" in text_of(unrouted)


async def test_search_vectors_through_mcp(lakehouse: LakehouseProcess) -> None:
    proc = lakehouse
    with proc.client() as client:
        created = client.post("/v1/vectors/index", json={"name": "notes", "dim": 3})
        assert created.status_code == 201, created.text
        items = [
            {"id": "a", "vector": [1.0, 0.0, 0.0], "metadata": {"kind": "fruit"}},
            {"id": "b", "vector": [0.0, 1.0, 0.0], "metadata": {"kind": "stone"}, "text": "holds a CDL-A"},
        ]
        added = client.post("/v1/vectors/index/notes/add", json={"items": items})
        assert added.status_code == 200, added.text
    async with mcp_session(proc.url) as session:
        hits = payload(
            await session.call_tool("search_vectors", {"index": "notes", "vector": [0.9, 0.1, 0.0], "k": 1})
        )
        filtered = payload(
            await session.call_tool(
                "search_vectors",
                {"index": "notes", "vector": [0.9, 0.1, 0.0], "k": 1, "filter": {"kind": "stone"}},
            )
        )
        keyword = payload(
            await session.call_tool("search_vectors", {"index": "notes", "text": "CDL-A", "mode": "keyword"})
        )
        neither = await session.call_tool("search_vectors", {"index": "notes"})
        unknown = await session.call_tool("search_vectors", {"index": "nope", "vector": [1.0, 0.0, 0.0]})
    assert hits["hits"][0]["id"] == "a"
    assert [h["id"] for h in filtered["hits"]] == ["b"]
    assert [(h["id"], h["found_by"]) for h in keyword["hits"]] == [("b", ["keyword"])]
    assert neither.is_error and "text or vector" in text_of(neither)
    assert unknown.is_error and "not_found" in text_of(unknown)


async def test_without_gateway_flag_the_config_names_the_gateway(
    lakehouse: LakehouseProcess, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "client.toml", {"gateway": {"bind": f"0.0.0.0:{lakehouse.port}"}})
    async with mcp_session(config=config) as session:
        listed = payload(await session.call_tool("list_datasets", {}))
    assert "people" in [d["name"] for d in listed["datasets"]]


async def test_every_tool_publishes_a_specific_output_schema_and_honest_hints() -> None:
    async with mcp_session(closed_url()) as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    for tool in tools.values():
        schema = tool.output_schema
        assert schema is not None, f"{tool.name}: no outputSchema"
        assert schema.get("properties"), f"{tool.name}: a generic object schema"
        assert schema.get("required"), f"{tool.name}: no required fields"
    sql_fields = set(tools["query_sql"].output_schema["properties"])
    assert sql_fields >= {"columns", "rows", "row_count", "truncated"}
    assert "indexes" in tools["list_indexes"].output_schema["properties"]
    assert "data" in tools["list_models"].output_schema["properties"]
    assert "hits" in tools["search_vectors"].output_schema["properties"]
    assert "schema" in tools["get_manifest"].output_schema["properties"]
    # A text query is embedded by a provider: the world outside the lakehouse.
    assert tools["search_vectors"].annotations.open_world_hint is True
    assert tools["list_indexes"].annotations.open_world_hint is False


async def test_results_are_compact_json_matching_the_structured_content(lakehouse: LakehouseProcess) -> None:
    async with mcp_session(lakehouse.url) as session:
        result = await session.call_tool("query_sql", {"sql": "SELECT id, name FROM people ORDER BY id"})
    text = text_of(result)
    assert not result.is_error, text
    assert json.loads(text) == result.structured_content
    assert ": " not in text and ", " not in text and "\n" not in text


async def test_list_indexes_and_models_through_mcp(lakehouse: LakehouseProcess) -> None:
    with lakehouse.client() as client:
        created = client.post("/v1/vectors/index", json={"name": "listed", "dim": 2})
        assert created.status_code in (201, 409), created.text
    async with mcp_session(lakehouse.url) as session:
        indexes = payload(await session.call_tool("list_indexes", {}))
        models = await session.call_tool("list_models", {})
    listed = {i["name"]: i for i in indexes["indexes"]}
    assert listed["listed"]["dim"] == 2 and listed["listed"]["metric"] == "cosine"
    ids = [model["id"] for model in payload(models)["data"]]
    assert "qwen3:4b" in ids and "nomic-embed-text" in ids


async def test_resources_list_is_empty_not_an_error_when_the_gateway_is_down() -> None:
    async with mcp_session(closed_url()) as session:
        resources = (await session.list_resources()).resources
        templates = (await session.list_resource_templates()).resource_templates
    assert resources == []
    assert [t.uri_template for t in templates] == ["lakehouse://datasets/{name}"]


async def test_the_explore_dataset_prompt_names_the_dataset_and_the_tools() -> None:
    async with mcp_session(closed_url()) as session:
        prompts = {p.name: p for p in (await session.list_prompts()).prompts}
        got = await session.get_prompt("explore_dataset", {"name": "people"})
    assert {"explore_dataset", "compare_versions"} <= set(prompts)
    assert [a.name for a in prompts["explore_dataset"].arguments or []] == ["name"]
    text = "".join(getattr(msg.content, "text", "") for msg in got.messages)
    assert "people" in text and "get_manifest" in text and "query_sql" in text
