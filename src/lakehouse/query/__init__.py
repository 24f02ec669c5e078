"""queryd's domain: sandboxed DuckDB SQL over every dataset version."""

from __future__ import annotations

from lakehouse.query.engine import ArrowStream, QueryEngine
from lakehouse.query.results import Column, QueryResult

__all__ = ["ArrowStream", "Column", "QueryEngine", "QueryResult"]
