"""queryd's domain: sandboxed DuckDB SQL over every dataset version, run in worker processes.

Imports are lazy so a worker process loads only what it runs (`worker.py`, `sandbox.py`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lakehouse.query.engine import ArrowStream, QueryEngine
    from lakehouse.query.results import Column, QueryResult

__all__ = ["ArrowStream", "Column", "QueryEngine", "QueryResult"]


def __getattr__(name: str) -> Any:
    if name in {"ArrowStream", "QueryEngine"}:
        from lakehouse.query import engine

        return getattr(engine, name)
    if name in {"Column", "QueryResult"}:
        from lakehouse.query import results

        return getattr(results, name)
    raise AttributeError(name)
