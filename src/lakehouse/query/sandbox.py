"""The DuckDB sandbox: one read-only statement, and no reach past the lakehouse's datasets.

Two layers. `check_statement` lets through exactly one statement of a
read-only type (DuckDB's own parser tells the type). `open_connection` then
builds the one connection every query cursor comes from, with file access
limited to the dataset location and the exact files manifests name outside
it, external access off and the configuration locked, so a SELECT cannot
read `/etc/passwd`, a URL, another stored object, or change a setting.
"""

from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from lakehouse.errors import Forbidden, ForbiddenStatement, SqlError

# DuckDB types as SELECT: WITH, VALUES, DESCRIBE, SHOW, SUMMARIZE, TABLE x, FROM-first,
# PIVOT ... IN (...), UNPIVOT: all read-only queries, allowed. It also rewrites
# `PRAGMA name` into a SELECT, refused below by its first word. CALL (and CHECKPOINT)
# are typed CALL and refused. EXPLAIN is allowed only over a read-only statement,
# since EXPLAIN ANALYZE runs what it explains.
READ_ONLY = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})
ALLOWED = "only read-only statements (SELECT, WITH, VALUES, DESCRIBE, SHOW, EXPLAIN) run here"


# Functions that would reach the host (DuckDB's shell registers getenv); absent from
# this engine, and reported as forbidden rather than as a typo.
ESCAPE_FUNCTIONS = frozenset({"getenv", "system", "shell"})
_TOKEN = re.compile(r"\w+|\S")
_OPTIONS = frozenset({"ANALYZE", "FORMAT", "VERBOSE"})  # EXPLAIN (...) options, not a subquery
_MISSING_FUNCTION = re.compile(r"Function with name (\w+) does not exist")
# DuckDB reads `FROM '/etc/passwd'` (a quoted path with no known extension) as a table
# name; no view here is named like a path, so such a name is an attempt to read a file.
_MISSING_PATH_TABLE = re.compile(r"Table with name (.*[/\\].*?) does not exist")


@dataclass(frozen=True)
class S3Access:
    """What DuckDB's httpfs needs to read the lakehouse's bucket."""

    key_id: str
    secret: str
    region: str
    endpoint: str  # host[:port], no scheme; empty for AWS itself
    use_ssl: bool
    url_style: str  # "path" or "vhost"
    session_token: str = ""


def check_statement(sql: str) -> None:
    """Accept exactly one read-only statement.

    Raises:
        SqlError: the text does not parse.
        ForbiddenStatement: several statements, or one that is not read-only.
    """
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise SqlError(_first_line(exc)) from None
    if len(statements) != 1:
        raise ForbiddenStatement(f"send exactly one statement; got {len(statements)}")
    kind = statements[0].type
    if kind not in READ_ONLY:
        raise ForbiddenStatement(f"{ALLOWED}; got {kind.name}")
    words = _words(sql)
    if words and words[0][0] == "PRAGMA":
        raise ForbiddenStatement(f"{ALLOWED}; got PRAGMA")
    if kind == duckdb.StatementType.EXPLAIN:
        check_statement(sql[_explained_offset(words) :])


def _words(sql: str) -> list[tuple[str, int]]:
    """Each token's text (upper-cased; one character for operators) and offset, comments skipped."""
    words = []
    for offset, _ in duckdb.tokenize(sql):
        found = _TOKEN.match(sql, offset)
        words.append(((found[0] if found else sql[offset]).upper(), offset))
    return words


def _explained_offset(words: list[tuple[str, int]]) -> int:
    """Where the statement after `EXPLAIN [ANALYZE] [(options)]` starts."""
    at = 1
    if at < len(words) - 1 and words[at][0] == "ANALYZE":
        at += 1
    if at < len(words) - 1 and words[at][0] == "(" and words[at + 1][0] in _OPTIONS:
        depth = 0
        while at < len(words) - 1:
            depth += {"(": 1, ")": -1}.get(words[at][0], 0)
            at += 1
            if depth == 0:
                break
    return words[at][1]


def httpfs_path() -> Path:
    """The httpfs extension file shipped by the `duckdb-extension-httpfs` package."""
    root = importlib.resources.files("duckdb_extension_httpfs")
    path = Path(str(root)) / "extensions" / f"v{duckdb.__version__}" / "httpfs.duckdb_extension"
    if not path.exists():
        raise RuntimeError(
            f"httpfs for DuckDB {duckdb.__version__} is not installed; "
            f"run: pip install 'duckdb-extension-httpfs=={duckdb.__version__}'"
        )
    return path


def open_connection(
    allowed: list[str],
    *,
    files: list[str] | None = None,
    threads: int,
    memory_limit: str,
    spill_dir: str,
    s3: S3Access | None = None,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB limited to reading under `allowed` and exactly `files`, locked.

    Sorts and joins past `memory_limit` spill to `spill_dir` (DuckDB's own files;
    queries cannot name them).
    """
    conn = duckdb.connect(
        ":memory:",
        config={
            "threads": threads,
            "memory_limit": memory_limit,
            "temp_directory": spill_dir,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
        },
    )
    conn.execute("SET enable_progress_bar = false")  # a session option; cursors inherit it
    if s3 is not None:
        conn.execute(f"LOAD {literal(str(httpfs_path()))}")
        conn.execute(_secret_sql(s3))
    listed = ", ".join(literal(path) for path in allowed)
    conn.execute(f"SET allowed_directories = [{listed}]")
    if files:
        conn.execute(f"SET allowed_paths = [{', '.join(literal(path) for path in files)}]")
    conn.execute("SET enable_external_access = false")
    conn.execute("SET lock_configuration = true")
    return conn


def _secret_sql(s3: S3Access) -> str:
    parts = [
        "TYPE s3",
        f"KEY_ID {literal(s3.key_id)}",
        f"SECRET {literal(s3.secret)}",
        f"REGION {literal(s3.region)}",
        f"URL_STYLE {literal(s3.url_style)}",
        f"USE_SSL {'true' if s3.use_ssl else 'false'}",
    ]
    if s3.endpoint:
        parts.append(f"ENDPOINT {literal(s3.endpoint)}")
    if s3.session_token:
        parts.append(f"SESSION_TOKEN {literal(s3.session_token)}")
    return "CREATE SECRET lakehouse_s3 (" + ", ".join(parts) + ")"


def translate(exc: duckdb.Error) -> Exception:
    """DuckDB's error as the lakehouse's: permission errors are 403, the rest 400 sql_error."""
    if isinstance(exc, duckdb.PermissionException):
        return Forbidden("this query reaches outside the lakehouse's datasets: " + _first_line(exc))
    missing = _MISSING_FUNCTION.search(str(exc))
    if isinstance(exc, duckdb.CatalogException) and missing and missing[1].lower() in ESCAPE_FUNCTIONS:
        return Forbidden(f"{missing[1]} is not available to queries here")
    path = _MISSING_PATH_TABLE.search(str(exc))
    if isinstance(exc, duckdb.CatalogException) and path:
        return Forbidden(f"queries read only the lakehouse's datasets, not the file {path[1]}")
    return SqlError(str(exc).strip())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def literal(value: str) -> str:
    """A quoted SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def identifier(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'
