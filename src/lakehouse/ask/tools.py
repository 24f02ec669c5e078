"""The tools `/v1/ask` offers the model, what each returns to it, and the citations each leaves.

    list_datasets      the datasets the question may read, with their current versions
    describe_dataset   one dataset's schema and recent versions
    sql                one read-only DuckDB statement, through `/v1/sql`'s sandbox, rows capped
    search             one search of a named index (text, k, a metadata filter, a mode)

A tool's failure (bad SQL, a forbidden statement, a dataset or index not
named in the request, a service refusing) is its result, `{"error": {"code",
"message"}}`, never an exception: the model reads it and may try again.
With datasets named, a statement's tables are read from the sandbox's own
parse of it (`tables.py`) before it runs, and any other table is refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lakehouse.ask.backend import Lakehouse
from lakehouse.ask.tables import TableRef, read_tables, serialize_sql
from lakehouse.errors import InvalidRequest, LakehouseError, NotFound

ROWS = 50  # rows of a SQL result the model sees
MAX_K = 20  # hits of a search the model sees
MAX_SQL_CHARS = 20_000
MAX_CELL_CHARS = 400  # a longer text value reaches the model cut, with "…"
MAX_IDS = 50  # row or item ids one citation lists
VERSIONS_SHOWN = 10
MODES = ("vector", "keyword", "hybrid")


def _function(name: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


def tool_specs(indexes: Sequence[str]) -> tuple[dict[str, Any], ...]:
    """The OpenAI function tools offered; `search` only when there are indexes to search."""
    specs = [
        _function(
            "list_datasets", "List the datasets you may query: name, current version, row count.", {}, []
        ),
        _function(
            "describe_dataset",
            "A dataset's columns and types, row count and recent versions.",
            {"name": {"type": "string", "description": "Dataset name."}},
            ["name"],
        ),
        _function(
            "sql",
            "Run one read-only DuckDB SELECT over the datasets. Each dataset is a view named after it; "
            f'version N is the view "<name>@<N>" (quoted). At most {ROWS} rows come back: aggregate, '
            "filter or LIMIT in SQL.",
            {"query": {"type": "string", "description": "One SELECT statement."}},
            ["query"],
        ),
    ]
    if indexes:
        specs.append(
            _function(
                "search",
                "Search a vector index for the items nearest a text; each hit has its id, score, metadata.",
                {
                    "index": {"type": "string", "enum": list(indexes), "description": "Index to search."},
                    "query": {"type": "string", "description": "What to look for."},
                    "k": {"type": "integer", "minimum": 1, "maximum": MAX_K, "description": "Hits wanted."},
                    "filter": {
                        "type": "object",
                        "description": 'Metadata filter, e.g. {"city": "Oslo"} or {"rate": {"$lt": 25}}.',
                    },
                    "mode": {
                        "type": "string",
                        "enum": list(MODES),
                        "description": "vector (meaning), keyword (exact terms) or hybrid (both).",
                    },
                },
                ["index", "query"],
            )
        )
    return tuple(specs)


@dataclass(frozen=True)
class ToolResult:
    """What a tool gave the model, and what the answer may cite from it."""

    output: dict[str, Any]
    citations: tuple[dict[str, Any], ...] = ()

    @property
    def failed(self) -> bool:
        """Whether the tool failed (its output is an error body)."""
        return "error" in self.output


@dataclass
class Toolbox:
    """The tools over one `Lakehouse`, limited to the datasets and indexes of one question.

    `datasets` None: every dataset may be read. `indexes`: the index infos
    (by name) of the indexes the question may search.
    """

    lakehouse: Lakehouse
    datasets: tuple[str, ...] | None
    indexes: Mapping[str, dict[str, Any]] = field(default_factory=dict)

    async def run(self, name: str, arguments: Any) -> ToolResult:
        """Run tool `name` with the model's arguments; a failure is the result, never raised."""
        try:
            if not isinstance(arguments, dict):
                raise InvalidRequest("the tool's arguments must be a JSON object")
            if name == "list_datasets":
                return await self._list()
            if name == "describe_dataset":
                return await self._describe(_text(arguments, "name"))
            if name == "sql":
                return await self._sql(_text(arguments, "query"))
            if name == "search" and self.indexes:
                return await self._search(arguments)
            raise NotFound(f"there is no tool {name!r}; use one of {', '.join(self.names())}")
        except LakehouseError as exc:
            return ToolResult({"error": {"code": exc.code, "message": exc.message}})

    def names(self) -> list[str]:
        """The tools offered."""
        return [spec["function"]["name"] for spec in tool_specs(list(self.indexes))]

    def _may_read(self, name: str) -> None:
        if self.datasets is not None and name not in self.datasets:
            raise NotFound(f"dataset {name!r} is not one this question may read: {', '.join(self.datasets)}")

    async def _list(self) -> ToolResult:
        current = await self.lakehouse.datasets()
        shown = [
            {"name": d.get("name"), "version": d.get("version"), "row_count": d.get("row_count")}
            for d in current
            if self.datasets is None or d.get("name") in self.datasets
        ]
        return ToolResult({"datasets": shown})

    async def _describe(self, name: str) -> ToolResult:
        self._may_read(name)
        manifest = await self.lakehouse.dataset(name)
        history = await self.lakehouse.versions(name)
        output = {
            "name": manifest.get("name"),
            "version": manifest.get("version"),
            "row_count": manifest.get("row_count"),
            "schema": [{"name": c.get("name"), "type": c.get("type")} for c in manifest.get("schema") or []],
            "versions": [
                {
                    "version": v.get("version"),
                    "row_count": v.get("row_count"),
                    "created_at": v.get("created_at"),
                }
                for v in history[-VERSIONS_SHOWN:]
            ],
        }
        return ToolResult(output)

    async def _sql(self, query: str) -> ToolResult:
        if len(query) > MAX_SQL_CHARS:
            raise InvalidRequest(f"the query is longer than {MAX_SQL_CHARS} characters")
        tables = await self._tables(query)
        # Versions as of just before the run: a bare view reads the current one.
        current = {d.get("name"): d.get("version") for d in await self.lakehouse.datasets()} if tables else {}
        result = await self.lakehouse.sql(query, ROWS)
        columns = [c.get("name") for c in result.get("columns") or []]
        rows = [[_cell(v) for v in row] for row in result.get("rows") or []]
        output = {
            "columns": columns,
            "rows": rows,
            "row_count": result.get("row_count", len(rows)),
            "truncated": bool(result.get("truncated")),
        }
        read = [{"dataset": t.dataset, "version": t.version or current.get(t.dataset)} for t in tables]
        citation: dict[str, Any] = {"type": "sql", "sql": query, "datasets": read}
        ids = _row_ids(columns, rows)
        if ids:
            citation["row_ids"] = ids
        return ToolResult(output, (citation,))

    async def _tables(self, query: str) -> list[TableRef]:
        """The datasets `query` reads, by the sandbox's parse; refused when outside the named ones.

        With every dataset open, a statement the parse cannot read (DESCRIBE
        of a non-view, PIVOT, EXPLAIN) still runs and the sandbox decides; it
        is only cited without its tables.
        """
        try:
            answer = await self.lakehouse.sql(serialize_sql(query), 1)
            rows = answer.get("rows") or [[None]]
            tree = json.loads(rows[0][0]) if isinstance(rows[0][0], str) else None
            return read_tables(tree, self.datasets)
        except LakehouseError:
            if self.datasets is not None:
                raise
            return []

    async def _search(self, arguments: Mapping[str, Any]) -> ToolResult:
        index = _text(arguments, "index")
        if index not in self.indexes:
            raise NotFound(f"index {index!r} is not one this question may search: {', '.join(self.indexes)}")
        body: dict[str, Any] = {"text": _text(arguments, "query"), "k": _k(arguments.get("k"))}
        if arguments.get("filter") not in (None, {}):
            if not isinstance(arguments["filter"], dict):
                raise InvalidRequest("'filter' must be an object of metadata fields")
            body["filter"] = arguments["filter"]
        mode = arguments.get("mode")
        if mode not in (None, "", "vector"):
            if mode not in MODES:
                raise InvalidRequest(f"'mode' must be one of {', '.join(MODES)}")
            body["mode"] = mode
        found = await self.lakehouse.search(index, body)
        hits = [_hit(h) for h in found.get("hits") or [] if isinstance(h, dict)][:MAX_K]
        citation: dict[str, Any] = {
            "type": "search",
            "index": index,
            "ids": [h["id"] for h in hits][:MAX_IDS],
        }
        source = self.indexes[index].get("source")
        if isinstance(source, dict) and source.get("dataset"):
            citation["dataset"] = source["dataset"]
            citation["version"] = self.indexes[index].get("synced_version")
        return ToolResult({"index": index, "hits": hits}, (citation,) if hits else ())


def _text(arguments: Mapping[str, Any], key: str) -> str:
    value = arguments.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"'{key}' must be a non-empty string")
    return value


def _k(value: Any) -> int:
    if value is None:
        return 10
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidRequest(f"'k' must be a whole number from 1 to {MAX_K}")
    return min(value, MAX_K)


def _cell(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_CELL_CHARS:
        return value[:MAX_CELL_CHARS] + "…"
    return value


def _hit(hit: Mapping[str, Any]) -> dict[str, Any]:
    """A hit as the model sees it: long texts cut; the fields vectord adds (how it was found) kept."""
    out = {k: v for k, v in hit.items() if k not in ("vector", "metadata", "text")}
    out["id"] = str(hit.get("id"))
    metadata = hit.get("metadata")
    out["metadata"] = {k: _cell(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {}
    if isinstance(hit.get("text"), str):
        out["text"] = _cell(hit["text"])
    return out


def _row_ids(columns: Sequence[Any], rows: Sequence[Sequence[Any]]) -> list[Any]:
    """The values of the result's id column (`id`, else the first `<x>_id`), when it has one."""
    names = [str(c).lower() for c in columns]
    at = (
        names.index("id")
        if "id" in names
        else next((i for i, n in enumerate(names) if n.endswith("_id")), -1)
    )
    if at < 0:
        return []
    return [row[at] for row in rows if at < len(row) and row[at] is not None][:MAX_IDS]
