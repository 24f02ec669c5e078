"""Generated statements around the sandbox's decision never write a file or change a view.

Hypothesis wraps write statements (COPY into the data root, CREATE OR REPLACE
VIEW of a dataset, ATTACH, INSTALL, DROP, EXPORT) in EXPLAIN [ANALYZE], WITH,
subqueries and leading statements, with random comments (multibyte ones
included), whitespace and keyword case. Whatever status each gets, the data
root's files and every view's rows must be as they were.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakehouse.catalog import Catalog
from lakehouse.config import Settings
from lakehouse.errors import LakehouseError
from lakehouse.ingest import Ingester
from lakehouse.query import QueryEngine
from lakehouse.storage import open_store


@dataclass
class Lake:
    """An engine on a dedicated event loop, the data root, and what its views return."""

    runner: asyncio.Runner
    engine: QueryEngine
    root: Path
    outside: Path
    data_file: str
    original: list[list[object]]

    def query(self, sql: str) -> list[list[object]]:
        rows: list[list[object]] = self.runner.run(self.engine.run(sql)).rows
        return rows


async def _body(data: bytes) -> AsyncIterator[bytes]:
    yield data


VIEWS_SQL = 'SELECT (SELECT list(id ORDER BY id) FROM people), (SELECT list(id ORDER BY id) FROM "people@1")'


def hashes(root: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lake]:
    tmp = tmp_path_factory.mktemp("props")
    config = Settings.model_validate(
        {
            "storage": {"root": str(tmp / "data")},
            "ingestd": {"tmp_dir": str(tmp / "spool")},
            "queryd": {"timeout_secs": 5.0, "memory_limit": "512MB"},
        }
    )
    runner = asyncio.Runner()
    store = open_store(config)
    catalog = Catalog(store)
    engine = QueryEngine(config, store, catalog)
    try:
        ingester = Ingester(config, store, catalog)
        runner.run(ingester.ingest("people", _body(b"id\n1\n2\n")))
        runner.run(ingester.ingest("people", _body(b"id\n3\n")))
        manifest = runner.run(catalog.get("people", 1))
        data_file = store.engine_path(manifest.objects[0].key)
        lake = Lake(runner, engine, tmp / "data", tmp / "outside", data_file, [])
        lake.original = lake.query(VIEWS_SQL)
        assert lake.original == [[[1, 2, 3], [1, 2]]]
        yield lake
    finally:
        runner.run(engine.close())
        runner.run(store.close())
        runner.close()


KEYWORDS = ["EXPLAIN", "ANALYZE", "SELECT", "FROM", "WITH", "AS", "COPY", "TO", "CREATE", "OR", "REPLACE"]
COMMENTS = st.one_of(
    st.sampled_from(
        [" ", "  ", "\n", "\t", " /* é */ ", "/*日本語*/", " -- ;\n", "/* ; */", "/*🙂🙂*/", "\u00a0"]
    ),
    st.text(st.characters(min_codepoint=0xA0, max_codepoint=0x2FFF), max_size=12).map(lambda t: f"/*{t}*/"),
)


def cores(lake: Lake) -> st.SearchStrategy[list[str]]:
    """Statements that would write or redefine something, as token lists."""
    root, outside = str(lake.root), str(lake.outside)
    return st.sampled_from(
        [
            ["COPY", "(SELECT 666 AS id)", "TO", f"'{lake.data_file}'"],
            [
                "COPY",
                "(SELECT 666 AS id)",
                "TO",
                f"'{root}/objects/_lakehouse/new.parquet'",
                "(FORMAT parquet)",
            ],
            ["COPY", "people", "TO", f"'{outside}.csv'"],
            ["CREATE", "OR", "REPLACE", "VIEW", "people", "AS", "SELECT", "666", "AS", "id"],
            ["CREATE", "OR", "REPLACE", "TEMP", "VIEW", '"people@1"', "AS", "SELECT", "666", "AS", "id"],
            ["ATTACH", f"'{root}/evil.db'", "AS", "evil"],
            ["INSTALL", "httpfs"],
            ["DROP", "VIEW", "people"],
            ["CREATE", "TABLE", "t", "AS", "SELECT", "1"],
            ["EXPORT", "DATABASE", f"'{outside}'"],
        ]
    )


def wrap(inner: st.SearchStrategy[list[str]]) -> st.SearchStrategy[list[str]]:
    """One more layer around a statement."""
    return st.one_of(
        inner.map(lambda s: ["EXPLAIN", *s]),
        inner.map(lambda s: ["EXPLAIN", "ANALYZE", *s]),
        inner.map(lambda s: ["EXPLAIN", "(ANALYZE)", *s]),
        inner.map(lambda s: ["EXPLAIN", "(FORMAT json, ANALYZE)", *s]),
        inner.map(lambda s: ["WITH", "x", "AS", "(SELECT 1)", *s]),
        inner.map(lambda s: ["SELECT", "*", "FROM", "(", *s, ")"]),
        inner.map(lambda s: ["SELECT", "1", ";", *s]),
        inner.map(lambda s: [*s, ";", "SELECT", "1"]),
        inner.map(lambda s: ["PIVOT", "people", "ON", "id", "USING", "count(*)", ";", *s]),
    )


@st.composite
def statements(draw: st.DrawFn, lake: Lake) -> str:
    tokens = draw(st.recursive(cores(lake), wrap, max_leaves=3))
    out = []
    for token in tokens:
        if token.upper() in KEYWORDS and draw(st.booleans()):
            token = "".join(c.lower() if draw(st.booleans()) else c for c in token)
        out.append(token)
        out.append(draw(COMMENTS))
    return draw(COMMENTS) + "".join(out)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_generated_statement_writes_or_redefines(lake: Lake, data: st.DataObject) -> None:
    before = hashes(lake.root)
    sql = data.draw(statements(lake))
    try:
        lake.query(sql)
    except LakehouseError as exc:
        assert exc.status in (400, 403, 408), f"{exc.status} {exc}"
    assert hashes(lake.root) == before
    assert not lake.outside.exists() and not Path(f"{lake.outside}.csv").exists()
    assert lake.query(VIEWS_SQL) == lake.original
