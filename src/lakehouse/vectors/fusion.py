"""Reciprocal rank fusion of rankings, and the labels saying which ranking found a hit.

RRF (Cormack, Clarke and Buettcher, 2009) scores an item `sum(1 / (C + rank))`
over the rankings that hold it: it needs no calibration between a cosine
similarity and a BM25 score, which live on unrelated scales.
"""

from __future__ import annotations

from dataclasses import replace

from lakehouse.vectors.ranking import Hit

RRF_C = 60


def ranked(hits: list[Hit], by: str) -> list[Hit]:
    """The hits labelled with their place (1-based) and score in the ranking `by`."""
    # Built directly rather than with dataclasses.replace, which costs several times more per
    # hit: a batch of a thousand queries labels ten thousand hits.
    return [
        Hit(hit.id, hit.score, hit.distance, hit.metadata, hit.text, {by: place}, {by: hit.score})
        for place, hit in enumerate(hits, 1)
    ]


def fuse(rankings: dict[str, list[Hit]], k: int, c: int = RRF_C) -> list[Hit]:
    """The k best hits by reciprocal rank fusion; ties go to the best single place, then the id."""
    fused: dict[str, float] = {}
    first: dict[str, Hit] = {}
    ranks: dict[str, dict[str, int]] = {}
    scores: dict[str, dict[str, float]] = {}
    for by, hits in rankings.items():
        for place, hit in enumerate(hits, 1):
            fused[hit.id] = fused.get(hit.id, 0.0) + 1.0 / (c + place)
            first.setdefault(hit.id, hit)
            ranks.setdefault(hit.id, {})[by] = place
            scores.setdefault(hit.id, {})[by] = hit.score
    order = sorted(fused, key=lambda i: (-fused[i], min(ranks[i].values()), i))[:k]
    return [replace(first[i], score=fused[i], distance=0.0, ranks=ranks[i], scores=scores[i]) for i in order]
