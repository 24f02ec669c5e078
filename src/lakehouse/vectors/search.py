"""Searching one index by vector, by keyword (BM25), or both fused by reciprocal rank."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from lakehouse.errors import InvalidRequest
from lakehouse.runner import run_blocking
from lakehouse.vectors.filters import MATCH_ALL, parse_filter
from lakehouse.vectors.fusion import fuse, ranked
from lakehouse.vectors.index import VectorIndex
from lakehouse.vectors.items import Vector, query_vectors
from lakehouse.vectors.ranking import Answer
from lakehouse.vectors.records import Vectors

MAX_K = 1000
MODES = ("vector", "keyword", "hybrid")
# Hybrid search fuses this many of each ranking's best (at least 2k). Deeper
# lists barely move the fused top k, while a filtered graph walk grows with
# the depth: 50 under a 10% filter cost about four times 20.
HYBRID_DEPTH = 20


async def search(
    index: VectorIndex,
    embed_text: Callable[[str], Awaitable[Vectors]],
    *,
    vectors: Sequence[Vector] | Vectors | None,
    text: str | None,
    k: int,
    where: dict[str, Any] | None,
    mode: str,
) -> Answer:
    """The k best items for each query, best first; each hit's `ranks` names the rankings that found it.

    Raises:
        DimMismatch: a query vector has the wrong length.
        InvalidRequest: no query, bad mode or filter, k out of range, NaN or infinite values.
    """
    if not 1 <= k <= MAX_K:
        raise InvalidRequest(f"k must be between 1 and {MAX_K}, got {k}")
    if mode not in MODES:
        raise InvalidRequest(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    node = parse_filter(where)
    has_text = text is not None and bool(text.strip())
    if mode != "vector" and not has_text:
        raise InvalidRequest(f"{mode} search needs a non-empty text")
    if mode == "keyword" and vectors is not None:
        raise InvalidRequest("keyword search takes a text, not vectors")
    if mode == "hybrid" and vectors is not None and len(vectors) != 1:
        raise InvalidRequest("hybrid search takes a text and at most one vector")
    if mode == "keyword":
        assert text is not None
        return Answer.of([ranked(await run_blocking(index.keyword_search, text, k, node), "keyword")])
    if vectors is not None:
        queries = query_vectors(vectors, index.spec)
    elif has_text:
        assert text is not None
        queries = await embed_text(text)
    else:
        raise InvalidRequest("give a vector, vectors or a non-empty text to search with")
    if mode == "vector":
        if len(queries) == 1 and node == MATCH_ALL:
            at_once = index.answer_at_once(queries[0], k)
            if at_once is not None:
                return at_once
        # On a worker thread: a large batch must keep off the event loop.
        return await run_blocking(index.answer, queries, k, node)
    assert text is not None
    depth = min(max(2 * k, HYBRID_DEPTH), MAX_K)
    by_vector, by_keyword = await run_blocking(index.hybrid_search, queries[0], text, depth, node)
    return Answer.of([fuse({"vector": by_vector, "keyword": by_keyword}, k)])
