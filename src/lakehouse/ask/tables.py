"""Which datasets a statement reads, decided from DuckDB's own parse tree.

`/v1/ask` may be limited to named datasets. The statement is never parsed in
the server: the sandbox parses it (`parse_statement` builds the one query
that asks it to, `SELECT json_serialize_sql('<text>')`, with the text as a
quoted literal) and `read_tables` walks the tree that comes back. A table
reference counts as a dataset unless a CTE in scope defines its name; a
qualified name, a table function (`read_csv`, `query_table`, ...), a `SHOW`
of anything but one relation, and any statement the parser cannot serialize
(everything but SELECT: COPY, ATTACH, PIVOT, EXPLAIN, ...) are refused, so
what is not understood is never let through.

Scope is kept on the narrow side: a CTE's name covers the body of its query
node and the CTEs after it, its own body only when it is recursive. A name
DuckDB would bind to a CTE but that is checked here as a dataset can only be
refused wrongly, never let through wrongly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lakehouse.errors import Forbidden, ForbiddenStatement, SqlError

# A dataset's current version is the view `<name>`; version N is the view `<name>@<N>`.
_VERSIONED = re.compile(r"^(?P<name>.+)@(?P<version>[1-9][0-9]*)$")
ONLY_SELECT = (
    "with datasets named, a query must be one SELECT statement (WITH, FROM and TABLE forms too); "
    "group with GROUP BY instead of PIVOT"
)


def serialize_sql(sql: str) -> str:
    """The statement that makes the sandbox return `sql`'s parse tree as JSON (one row, one column).

    `sql` goes in as a string literal, quoted the way DuckDB reads it (no backslash escapes).
    """
    return "SELECT json_serialize_sql('" + sql.replace("'", "''") + "')"


@dataclass(frozen=True)
class TableRef:
    """A dataset view a statement reads: the dataset's name, and the version when it names one."""

    dataset: str
    version: int | None = None


@dataclass
class _Walk:
    allowed: frozenset[str] | None
    found: list[TableRef] = field(default_factory=list)


def parsed_statement(tree: Any) -> dict[str, Any]:
    """The one statement of a `json_serialize_sql` answer.

    Raises:
        SqlError: DuckDB could not parse the text.
        ForbiddenStatement: not exactly one statement, or one that is not a SELECT.
    """
    if not isinstance(tree, dict):
        raise SqlError("the statement's parse tree could not be read")
    if tree.get("error"):
        kind = str(tree.get("error_type", ""))
        message = str(tree.get("error_message", "the statement does not parse"))
        if kind == "not implemented":
            raise ForbiddenStatement(ONLY_SELECT)
        raise SqlError(message)
    statements = tree.get("statements")
    if not isinstance(statements, list) or len(statements) != 1 or not isinstance(statements[0], dict):
        count = len(statements) if isinstance(statements, list) else 0
        raise ForbiddenStatement(f"send exactly one statement; got {count}")
    return statements[0]


def read_tables(tree: Any, allowed: Iterable[str] | None = None) -> list[TableRef]:
    """The dataset views the statement in `tree` (a `json_serialize_sql` answer) reads, in order.

    With `allowed` (dataset names), any other table, any qualified name and
    any table function is refused.

    Raises:
        SqlError, ForbiddenStatement: as `parsed_statement`.
        Forbidden: a table outside `allowed`, a qualified name, a table function or a SHOW of the catalog.
    """
    statement = parsed_statement(tree)
    walk = _Walk(frozenset(a.lower() for a in allowed) if allowed is not None else None)
    _visit(statement, frozenset(), walk)
    return list(dict.fromkeys(walk.found))


def _visit(node: Any, ctes: frozenset[str], walk: _Walk) -> None:
    if isinstance(node, list):
        for item in node:
            _visit(item, ctes, walk)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type") if "class" not in node else None
    if kind == "BASE_TABLE":
        _base_table(node, ctes, walk)
        return
    if kind == "TABLE_FUNCTION" and walk.allowed is not None:
        function = node.get("function")
        name = str(function.get("function_name")) if isinstance(function, dict) else "a table function"
        raise Forbidden(f"with datasets named, queries read only their views, not {name}(...)")
    if kind == "SHOW_REF" and node.get("table_name") and walk.allowed is not None:
        raise Forbidden("with datasets named, SHOW lists nothing beyond them: use describe_dataset")
    cte_map = node.get("cte_map")
    if isinstance(cte_map, dict) and isinstance(cte_map.get("map"), list) and cte_map["map"]:
        ctes = _visit_ctes(cte_map["map"], ctes, walk)
    if kind == "RECURSIVE_CTE_NODE" and isinstance(node.get("cte_name"), str):
        ctes = ctes | {node["cte_name"].lower()}
    for key, value in node.items():
        if key != "cte_map":
            _visit(value, ctes, walk)


def _visit_ctes(entries: list[Any], ctes: frozenset[str], walk: _Walk) -> frozenset[str]:
    """Walk each CTE's body with the names before it in scope; the names of all of them after."""
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        name = str(entry.get("key", "")).lower()
        body = entry.get("value")
        query = body.get("query") if isinstance(body, dict) else None
        node = query.get("node") if isinstance(query, dict) else None
        recursive = isinstance(node, dict) and node.get("type") == "RECURSIVE_CTE_NODE"
        _visit(body, ctes | {name} if recursive else ctes, walk)
        ctes = ctes | {name}
    return ctes


def _base_table(node: dict[str, Any], ctes: frozenset[str], walk: _Walk) -> None:
    name = str(node.get("table_name", ""))
    qualified = bool(node.get("schema_name") or node.get("catalog_name"))
    if not qualified and name.lower() in ctes:
        return
    if walk.allowed is not None and qualified:
        raise Forbidden(f"with datasets named, name their views without a schema or catalog, not {name!r}")
    versioned = _VERSIONED.match(name)
    ref = TableRef(versioned["name"], int(versioned["version"])) if versioned else TableRef(name)
    if walk.allowed is not None and ref.dataset.lower() not in walk.allowed:
        names = ", ".join(sorted(walk.allowed)) or "none"
        raise Forbidden(f"this question may read only the datasets {names}; {name!r} is not one of them")
    if not qualified:
        walk.found.append(ref)
