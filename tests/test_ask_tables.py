"""Which datasets a statement reads, from the parse tree DuckDB's sandboxed connection returns."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lakehouse.ask.tables import TableRef, read_tables, serialize_sql
from lakehouse.errors import Forbidden, ForbiddenStatement, SqlError
from lakehouse.query.sandbox import check_statement, open_connection

ALLOWED = ["candidates", "placements"]


@pytest.fixture(scope="module")
def conn() -> Iterator[duckdb.DuckDBPyConnection]:
    """A sandboxed connection like the query workers' (no filesystem at all)."""
    connection = open_connection(threads=1, memory_limit="256MB")
    try:
        yield connection
    finally:
        connection.close()


def tree(conn: duckdb.DuckDBPyConnection, sql: str) -> Any:
    """The parse tree of `sql`, asked for with the statement the ask tools send through `/v1/sql`."""
    wrapper = serialize_sql(sql)
    check_statement(conn, wrapper)  # the sandbox lets the wrapper itself through
    row = conn.execute(wrapper).fetchone()
    assert row is not None
    return json.loads(row[0])


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT count(*) FROM candidates", [TableRef("candidates")]),
        (
            'SELECT * FROM "candidates@2" c JOIN placements p USING (candidate_id)',
            [
                TableRef("candidates", 2),
                TableRef("placements"),
            ],
        ),
        ("FROM candidates SELECT city", [TableRef("candidates")]),
        (
            "WITH lyon AS (SELECT * FROM candidates WHERE city = 'Lyon') SELECT * FROM lyon",
            [TableRef("candidates")],
        ),
        (
            "SELECT * FROM candidates WHERE candidate_id IN (SELECT candidate_id FROM placements)",
            [
                TableRef("candidates"),
                TableRef("placements"),
            ],
        ),
        ("WITH RECURSIVE r AS (SELECT 1 AS x UNION ALL SELECT x + 1 FROM r WHERE x < 3) SELECT * FROM r", []),
        ("SELECT 'it''s; DROP TABLE x' AS s", []),
        ("DESCRIBE candidates", [TableRef("candidates")]),
        ("SELECT * FROM CANDIDATES", [TableRef("CANDIDATES")]),
    ],
)
def test_tables_read_are_found(conn: duckdb.DuckDBPyConnection, sql: str, expected: list[TableRef]) -> None:
    assert read_tables(tree(conn, sql), ALLOWED) == expected


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM jobs",
        "SELECT * FROM candidates WHERE candidate_id IN (SELECT id FROM jobs)",
        "SELECT (SELECT max(rate) FROM jobs), * FROM candidates",
        "SELECT * FROM candidates, LATERAL (SELECT * FROM jobs) j",
        "WITH c AS (SELECT * FROM jobs) SELECT * FROM c",
        # A CTE's own body cannot see its name (not recursive): there `jobs` is the dataset.
        "WITH jobs AS (SELECT * FROM jobs) SELECT * FROM jobs",
        # A CTE named inside a subquery does not hide the dataset outside it.
        "SELECT * FROM jobs, (WITH jobs AS (SELECT 1) SELECT * FROM jobs) s",
        'SELECT * FROM "jobs@1"',
        "SELECT * FROM main.candidates",
        "SELECT * FROM memory.main.candidates",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM query_table('jobs')",
        "SELECT * FROM '/etc/passwd'",
        "SHOW TABLES",
        "SUMMARIZE jobs",
        "SELECT * FROM candidates UNION ALL SELECT * FROM jobs",
    ],
)
def test_tables_outside_the_named_datasets_are_refused(conn: duckdb.DuckDBPyConnection, sql: str) -> None:
    with pytest.raises(Forbidden):
        read_tables(tree(conn, sql), ALLOWED)


def test_a_cte_may_take_a_dataset_name(conn: duckdb.DuckDBPyConnection) -> None:
    assert read_tables(tree(conn, "WITH jobs AS (SELECT 1 AS x) SELECT * FROM jobs"), ALLOWED) == []


@pytest.mark.parametrize(
    "sql",
    [
        "COPY candidates TO 'x.csv'",
        "ATTACH 'x.db' AS x",
        "DROP VIEW candidates",
        "CREATE TABLE t AS SELECT 1",
        "INSERT INTO candidates VALUES (1)",
        "PIVOT candidates ON city USING count(*)",
        "EXPLAIN SELECT 1",
        "SET threads = 1",
        "SELECT 1; SELECT 2",
    ],
)
def test_anything_but_one_select_is_refused(conn: duckdb.DuckDBPyConnection, sql: str) -> None:
    with pytest.raises(ForbiddenStatement):
        read_tables(tree(conn, sql), ALLOWED)


def test_text_that_does_not_parse_is_a_sql_error(conn: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(SqlError):
        read_tables(tree(conn, "SELEC 1 FROM"), ALLOWED)


def test_without_a_limit_every_table_is_only_listed(conn: duckdb.DuckDBPyConnection) -> None:
    sql = "SELECT * FROM jobs JOIN read_csv('x') USING (id) JOIN main.other USING (id)"
    assert read_tables(tree(conn, sql)) == [TableRef("jobs")]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(text="SELECT 1') UNION SELECT json_serialize_sql('SELECT 2")
@example(text="\\'; SELECT 1 --")
@example(text="it''s E'\\x27' $$ $tag$")
@given(text=st.text(alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")))
def test_the_statement_reaches_the_parser_exactly_as_written(
    conn: duckdb.DuckDBPyConnection, text: str
) -> None:
    # The quoted literal must hand DuckDB the very text a bound parameter would: no quote
    # or backslash in it can end the literal early or change what is parsed.
    wrapper = serialize_sql(text)
    check_statement(conn, wrapper)
    quoted = conn.execute(wrapper).fetchone()
    bound = conn.execute("SELECT json_serialize_sql(?)", [text]).fetchone()
    assert quoted == bound
