"""The DuckDB sandbox: one read-only statement, and a connection with no filesystem at all.

Runs inside a query worker process (see `worker.py`), never in the server.
Two layers. `check_statement` lets through exactly one statement of a
read-only type, decided from DuckDB's own tokenizer and parser (never from
character offsets into text: the tokenizer's offsets are bytes).
`open_connection` builds an in-memory DuckDB with its local filesystem
disabled, no temp directory, no extensions and the configuration locked:
the one filesystem it has is `files.DatasetFiles`, which opens the dataset
views' own objects for reading and nothing else, so even a statement the
check wrongly let through cannot write anywhere. No DuckDB setting names a
server path or holds a credential: the store is reached through pyarrow.
"""

from __future__ import annotations

import importlib.resources
import re
from pathlib import Path

import duckdb
from fsspec import AbstractFileSystem

from lakehouse.errors import Forbidden, ForbiddenStatement, LakehouseError, SqlError

READ_ONLY = frozenset({duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN})
ALLOWED = "only read-only statements (SELECT, WITH, VALUES, DESCRIBE, SHOW, EXPLAIN) run here"
# The words a read-only statement may start with. DuckDB types `PRAGMA x` (and a few
# others) as SELECT, so the first word is checked too.
FIRST_WORDS = frozenset(
    {
        "SELECT",
        "WITH",
        "VALUES",
        "DESCRIBE",
        "SHOW",
        "SUMMARIZE",
        "EXPLAIN",
        "FROM",
        "TABLE",
        "PIVOT",
        "PIVOT_WIDER",
        "UNPIVOT",
        "PIVOT_LONGER",
        "(",
    }
)
_OPTIONS = frozenset({"ANALYZE", "FORMAT", "VERBOSE"})  # EXPLAIN (...) options, not a subquery
# What DuckDB generates ahead of a PIVOT's SELECT (the enum of its columns), with no text.
_GENERATED = frozenset({duckdb.StatementType.CREATE, duckdb.StatementType.TRANSACTION})

# Functions that would reach the host (DuckDB's shell registers getenv); absent from
# this engine, and reported as forbidden rather than as a typo.
ESCAPE_FUNCTIONS = frozenset({"getenv", "system", "shell"})
_WORD = re.compile(r"\w+|\S", re.UNICODE)
_MISSING_FUNCTION = re.compile(r"Function with name (\w+) does not exist")
# DuckDB reads `FROM '/etc/passwd'` (a quoted path with no known extension) as a table
# name; no view here is named like a path, so such a name is an attempt to read a file.
_MISSING_PATH_TABLE = re.compile(r"Table with name (.*[/\\].*?) does not exist")
# A URL scheme whose filesystem is an extension: none loads here, so it is a reach outside.
_NEEDS_EXTENSION = re.compile(r"^File (\S+) requires the extension \w+ to be loaded")
# `lakehouse://` answers only for the views' own objects (files.DatasetFiles).
_NOT_A_DATASET_FILE = re.compile(r'No files found that match the pattern "(lakehouse://[^"]*)"')

KEYWORD = duckdb.token_type.keyword
OPERATOR = duckdb.token_type.operator


def tokens(sql: str) -> list[tuple[str, duckdb.token_type, int]]:
    """Each token's text (upper-cased word, or one operator character), its type and BYTE offset.

    Comments are not tokens. `duckdb.tokenize` reads no file, whatever the text says.
    """
    data = sql.encode("utf-8")
    found = duckdb.tokenize(sql)
    out = []
    for i, (offset, kind) in enumerate(found):
        end = found[i + 1][0] if i + 1 < len(found) else len(data)
        text = data[offset:end].decode("utf-8", errors="replace")
        word = _WORD.match(text.lstrip())
        out.append(((word[0] if word else text.strip()).upper(), kind, offset))
    return out


def check_statement(conn: duckdb.DuckDBPyConnection, sql: str) -> None:
    """Accept exactly one read-only statement, parsed by `conn` (the sandboxed connection).

    Raises:
        SqlError: the text does not parse.
        ForbiddenStatement: several statements, or one that is not read-only.
    """
    toks = tokens(sql)
    # IMPORT DATABASE reads <dir>/schema.sql while it is parsed: refuse it before parsing.
    if any(kind == KEYWORD and text in {"IMPORT", "EXPORT"} for text, kind, _ in toks):
        raise ForbiddenStatement(f"{ALLOWED}; IMPORT and EXPORT DATABASE are refused")
    try:
        statements = conn.extract_statements(sql)
    except duckdb.Error as exc:
        raise SqlError(_first_line(exc)) from None
    if not statements or not toks:
        raise SqlError("no statement to run")
    segments = _segments(toks)
    if len(statements) != 1:
        # DuckDB expands `PIVOT t ON x USING ...` (no IN list) into CREATE TYPE ...
        # statements it generates itself (empty text) followed by the SELECT.
        generated = all(s.type in _GENERATED and not s.query.strip() for s in statements[:-1])
        pivot = any(kind == KEYWORD and text.startswith("PIVOT") for text, kind, _ in toks)
        if not (segments == 1 and pivot and generated):
            raise ForbiddenStatement(f"send exactly one statement; got {max(segments, len(statements))}")
    if segments != 1:
        raise ForbiddenStatement(f"send exactly one statement; got {segments}")
    kind = statements[-1].type
    if kind not in READ_ONLY:
        raise ForbiddenStatement(f"{ALLOWED}; got {kind.name}")
    # One statement: every `;` left is a leading or trailing one.
    body = [tok for tok in toks if not (tok[1] == OPERATOR and tok[0] == ";")]
    first = body[0][0]
    if first not in FIRST_WORDS:
        raise ForbiddenStatement(f"{ALLOWED}; got {first[:40]}")
    if kind == duckdb.StatementType.EXPLAIN:
        # EXPLAIN ANALYZE runs what it explains: the explained statement must pass too.
        start = _explained_offset(body)
        check_statement(conn, sql.encode("utf-8")[start:].decode("utf-8"))


def _segments(toks: list[tuple[str, duckdb.token_type, int]]) -> int:
    """Statements the tokenizer sees: non-empty runs between top-level `;` tokens."""
    count, open_run = 0, False
    for text, kind, _ in toks:
        if kind == OPERATOR and text == ";":
            open_run = False
        elif not open_run:
            count, open_run = count + 1, True
    return count


def _explained_offset(toks: list[tuple[str, duckdb.token_type, int]]) -> int:
    """The byte offset where the statement after `EXPLAIN [ANALYZE] [(options)]` starts."""
    at = 1
    if at < len(toks) - 1 and toks[at][0] == "ANALYZE":
        at += 1
    if at < len(toks) - 1 and toks[at][0] == "(" and toks[at + 1][0] in _OPTIONS:
        depth = 0
        while at < len(toks) - 1:
            depth += {"(": 1, ")": -1}.get(toks[at][0], 0)
            at += 1
            if depth == 0:
                break
    if at >= len(toks):
        raise ForbiddenStatement(f"{ALLOWED}; EXPLAIN needs a statement")
    return toks[at][2]


def open_connection(
    *, threads: int, memory_limit: str, files: AbstractFileSystem | None = None
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB whose only files are `files` (read-only), with its settings locked.

    DuckDB's local filesystem is disabled and no extension can load, so no path
    and no URL reaches anything but `files` (`files.DatasetFiles`: the views'
    own objects); with `files` None, nothing at all. No temp directory: a query
    past `memory_limit` fails with DuckDB's out-of-memory error instead of
    spilling. Call with the working directory at "/" (the worker does), so the
    paths DuckDB derives from it reveal nothing.
    """
    conn = duckdb.connect(
        ":memory:",
        config={
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "temp_directory": "",
            "secret_directory": "no-secrets",
            "extension_directory": "no-extensions",
            "threads": threads,
            "memory_limit": memory_limit,
            "python_enable_replacements": False,
        },
    )
    conn.execute("SET disabled_filesystems = 'LocalFileSystem'")
    if files is not None:
        conn.register_filesystem(files)
    else:
        conn.execute("SET enable_external_access = false")
    conn.execute("SET enable_progress_bar = false")
    conn.execute("SET lock_configuration = true")
    return conn


def translate(exc: duckdb.Error) -> LakehouseError:
    """DuckDB's error as the lakehouse's: permission errors are 403, the rest 400 sql_error."""
    if isinstance(exc, duckdb.PermissionException):
        return Forbidden("this query reaches outside the lakehouse's datasets: " + _first_line(exc))
    url = _NEEDS_EXTENSION.search(str(exc))
    if url:
        return Forbidden(f"queries read only the lakehouse's datasets, not {url[1]}")
    refused = _NOT_A_DATASET_FILE.search(str(exc))
    if isinstance(exc, duckdb.IOException) and refused:
        return Forbidden(f"queries read only the lakehouse's datasets through their views, not {refused[1]}")
    missing = _MISSING_FUNCTION.search(str(exc))
    if isinstance(exc, duckdb.CatalogException) and missing and missing[1].lower() in ESCAPE_FUNCTIONS:
        return Forbidden(f"{missing[1]} is not available to queries here")
    path = _MISSING_PATH_TABLE.search(str(exc))
    if isinstance(exc, duckdb.CatalogException) and path:
        return Forbidden(f"queries read only the lakehouse's datasets, not the file {path[1]}")
    return SqlError(str(exc).strip())


def scrub(text: str, hidden: list[str]) -> str:
    """`text` with every non-empty string of `hidden` (paths, keys) cut out."""
    for secret in sorted((h for h in hidden if h), key=len, reverse=True):
        text = text.replace(secret, "…")
    return text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def httpfs_path() -> Path:
    """The httpfs extension file shipped by the `duckdb-extension-httpfs` package (for `doctor`)."""
    root = importlib.resources.files("duckdb_extension_httpfs")
    path = Path(str(root)) / "extensions" / f"v{duckdb.__version__}" / "httpfs.duckdb_extension"
    if not path.exists():
        raise RuntimeError(
            f"httpfs for DuckDB {duckdb.__version__} is not installed; "
            f"run: pip install 'duckdb-extension-httpfs=={duckdb.__version__}'"
        )
    return path


def literal(value: str) -> str:
    """A quoted SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def identifier(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'
