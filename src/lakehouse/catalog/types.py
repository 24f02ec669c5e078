"""Column types and names a manifest may hold: DuckDB type names, stored in their canonical form.

A type reaches SQL (view DDL, casts) as text, so the request's text is never
kept: it is parsed with DuckDB's own type parser on a private, empty
connection (which only parses and resolves a type; it runs no statement) and
the parsed type's canonical spelling is stored instead:

    canonical_type("decimal(18, 3)")          -> "DECIMAL(18,3)"
    canonical_type("struct(a int, b text)")   -> "STRUCT(a INTEGER, b VARCHAR)"
    canonical_type("INTEGER); DROP TABLE x")  -> InvalidRequest (400 invalid_request)

DuckDB's parser reads a type as a column definition and quietly drops what
follows it (`INTEGER DEFAULT 1`, `INTEGER, b INT`, comments), so text that
is more than a type is refused before it is parsed.
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache

import duckdb
from duckdb.sqltypes import DuckDBPyType

from lakehouse.errors import InvalidRequest

MAX_TYPE_CHARS = 1024
MAX_COLUMN_NAME_CHARS = 255
# What a stored type that no longer validates is replaced with when a manifest
# is read: not a DuckDB type, so anything built from it fails instead of running.
INVALID_TYPE = "INVALID"

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Words that start a column constraint or option: never part of a type.
_CLAUSE_WORDS = frozenset(
    {
        "as",
        "check",
        "collate",
        "constraint",
        "default",
        "generated",
        "not",
        "primary",
        "references",
        "unique",
        "using",
    }
)
_WORD = re.compile(r"[^\W\d]\w*")

_conn_lock = threading.Lock()
_conn: duckdb.DuckDBPyConnection | None = None


def canonical_type(text: str) -> str:
    """The canonical spelling of DuckDB type `text`.

    Raises:
        InvalidRequest: `text` is not exactly one DuckDB type (empty, too long,
            with a comment, `;`, a second column, a constraint, or a name
            DuckDB does not know).
    """
    if not isinstance(text, str):
        raise InvalidRequest("a column type must be a string")
    return _canonical(text)


def valid_column_name(name: str) -> str:
    """Return `name` when it may name a column (it is always quoted where it reaches SQL).

    Raises:
        InvalidRequest: empty, longer than 255 characters, or holding control characters.
    """
    if not isinstance(name, str) or not name:
        raise InvalidRequest("a column name must be a non-empty string")
    if len(name) > MAX_COLUMN_NAME_CHARS:
        raise InvalidRequest(
            f"column name {name[:40]!r}... is longer than {MAX_COLUMN_NAME_CHARS} characters",
            column=name[:40],
        )
    if _CONTROL.search(name):
        raise InvalidRequest(f"column name {name!r} holds control characters", column=name)
    return name


@lru_cache(maxsize=4096)
def _canonical(text: str) -> str:
    shown = text if len(text) <= 80 else text[:77] + "..."
    if not text.strip():
        raise InvalidRequest("a column type must not be empty")
    if len(text) > MAX_TYPE_CHARS:
        raise InvalidRequest(f"column type {shown!r} is longer than {MAX_TYPE_CHARS} characters")
    problem = _shape_problem(text)
    if problem is not None:
        raise InvalidRequest(f"column type {shown!r} is not a DuckDB type name: {problem}", type=shown)
    try:
        with _conn_lock:
            parsed = _connection().sqltype(text)
            canonical = str(parsed)
            # The canonical spelling must itself parse to the same type, or it is not stored.
            same = _connection().sqltype(canonical) == parsed
    except (duckdb.Error, RuntimeError, ValueError, TypeError):
        raise InvalidRequest(f"column type {shown!r} is not a DuckDB type name", type=shown) from None
    if not same or _shape_problem(canonical) is not None:
        raise InvalidRequest(f"column type {shown!r} has no stable DuckDB spelling", type=shown)
    return canonical


def parsed_type(canonical: str) -> DuckDBPyType:
    """DuckDB's parsed form of a type already in canonical spelling (for mapping it elsewhere)."""
    with _conn_lock:
        return _connection().sqltype(canonical)


def _connection() -> duckdb.DuckDBPyConnection:
    """A private in-memory connection with no user types (call under `_conn_lock`)."""
    global _conn
    if _conn is None:
        _conn = duckdb.connect(":memory:", config={"enable_external_access": False})
    return _conn


def _shape_problem(text: str) -> str | None:
    """Why `text` is more than one type expression, or None.

    Scans outside quotes: no `;`, no comments, no control characters, balanced
    parentheses and brackets, no top-level `,`, and no constraint keywords at
    the top level.
    """
    if _CONTROL.search(text):
        return "it holds control characters"
    depth = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch in "\"'":
            end = _closing_quote(text, i)
            if end is None:
                return "a quote is never closed"
            i = end + 1
            continue
        if ch == ";":
            return "it holds ';'"
        if text.startswith("--", i) or text.startswith("/*", i):
            return "it holds a comment"
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
            if depth < 0:
                return f"an unmatched {ch!r}"
        elif ch == "," and depth == 0:
            return "it holds ',' outside parentheses"
        elif depth == 0 and (ch.isalpha() or ch == "_"):
            word = _WORD.match(text, i)
            assert word is not None
            if word.group().lower() in _CLAUSE_WORDS:
                return f"{word.group()!r} starts a column option, not a type"
            i = word.end()
            continue
        i += 1
    if depth != 0:
        return "a parenthesis or bracket is never closed"
    return None


def _closing_quote(text: str, start: int) -> int | None:
    """Index of the quote closing the one at `start` (doubled quotes are escapes)."""
    quote = text[start]
    i = start + 1
    while i < len(text):
        if text[i] == quote:
            if i + 1 < len(text) and text[i + 1] == quote:
                i += 2
                continue
            return i
        i += 1
    return None
