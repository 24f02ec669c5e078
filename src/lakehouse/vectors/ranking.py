"""Search results: one `Hit` at a time, or a whole batch's hits as columns (`Answer`).

A batch of a thousand queries finds ten thousand hits. Made one `Hit` at a
time (two dicts each), and rendered from those, that cost the server about a
sixth of the batch's time beside the graph search itself; as columns (numpy
for the numbers, one list of items) the answer is built in a millisecond or
two and rendered without a `Hit` in between. `Answer.hits` makes the
`Hit` lists for callers that want them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from lakehouse.vectors.index import Item

# The rankings a hit can be found by, in the order answers name them.
RANKINGS = ("vector", "keyword")


@dataclass(slots=True)
class Hit:
    """One search result; `ranks` and `scores` say which rankings found it, at what place.

    Not frozen: a frozen dataclass sets each field through `object.__setattr__`,
    and a thousand-query batch makes ten thousand hits (12 ms frozen, 2 ms not).
    """

    id: str
    score: float
    distance: float
    metadata: dict[str, Any]
    text: str | None = None
    ranks: dict[str, int] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class Answer:
    """Every query's hits in order of query then place, one entry per hit in each column.

    `ranks[by]` is each hit's place in ranking `by` (1 is best; 0 where that
    ranking did not find it) and its score there; rankings that found no hit
    are absent.
    """

    queries: int
    query: npt.NDArray[np.int32]
    items: list[Item]
    score: npt.NDArray[np.float64]
    distance: npt.NDArray[np.float64]
    ranks: dict[str, tuple[npt.NDArray[np.int32], npt.NDArray[np.float64]]]

    @classmethod
    def ranked(
        cls,
        per_query: Sequence[tuple[npt.NDArray[Any], npt.NDArray[Any]]],
        items: dict[int, Item],
        metric: str,
    ) -> Answer:
        """A vector ranking: per query, graph keys nearest first and the engine's distances.

        The engines report 1 - similarity for cosine and ip, and squared L2;
        scores are computed in float64. A key with no item (removed while the
        graph still held it) is left out, and the places after it close up.
        """
        counts = np.fromiter((len(keys) for keys, _ in per_query), dtype=np.int64, count=len(per_query))
        if not counts.sum():
            return cls.empty(len(per_query))
        keys = np.concatenate([keys for keys, _ in per_query])
        distance = np.concatenate([distances for _, distances in per_query]).astype(np.float64)
        query = np.repeat(np.arange(len(per_query), dtype=np.int32), counts)
        looked_up = [items.get(key) for key in keys.tolist()]
        found = [item for item in looked_up if item is not None]
        if len(found) < len(looked_up):
            kept = np.fromiter((item is not None for item in looked_up), dtype=bool, count=len(looked_up))
            query, distance = query[kept], distance[kept]
            counts = np.bincount(query, minlength=len(per_query))
        score = np.sqrt(np.maximum(distance, 0.0)) if metric == "l2" else 1.0 - distance
        starts = np.cumsum(counts) - counts
        place = (np.arange(len(query)) - np.repeat(starts, counts) + 1).astype(np.int32)
        return cls(len(per_query), query, found, score, distance, {"vector": (place, score)})

    @classmethod
    def empty(cls, queries: int) -> Answer:
        """No hits for any of `queries` queries."""
        nothing = np.zeros(0, dtype=np.float64)
        return cls(queries, np.zeros(0, dtype=np.int32), [], nothing, nothing, {})

    @classmethod
    def of(cls, found: list[list[Hit]]) -> Answer:
        """The columns of hits made one at a time (keyword, hybrid and filtered searches)."""
        from lakehouse.vectors.index import Item

        hits = [hit for query_hits in found for hit in query_hits]
        query = np.repeat(np.arange(len(found), dtype=np.int32), [len(q) for q in found])
        items = [Item(hit.id, hit.metadata, hit.text) for hit in hits]
        ranks = {}
        for by in RANKINGS:
            if any(by in hit.ranks for hit in hits):
                place = np.fromiter((hit.ranks.get(by, 0) for hit in hits), dtype=np.int32, count=len(hits))
                score = np.fromiter(
                    (hit.scores.get(by, np.nan) for hit in hits), dtype=np.float64, count=len(hits)
                )
                ranks[by] = (place, score)
        return cls(
            len(found),
            query,
            items,
            np.fromiter((hit.score for hit in hits), dtype=np.float64, count=len(hits)),
            np.fromiter((hit.distance for hit in hits), dtype=np.float64, count=len(hits)),
            ranks,
        )

    def hits(self) -> list[list[Hit]]:
        """Per query, its hits as `Hit`s, best first."""
        out: list[list[Hit]] = [[] for _ in range(self.queries)]
        labels = [(by, place.tolist(), score.tolist()) for by, (place, score) in self.ranks.items()]
        for at, (query, item, score, distance) in enumerate(
            zip(self.query.tolist(), self.items, self.score.tolist(), self.distance.tolist(), strict=True)
        ):
            ranks = {by: places[at] for by, places, _ in labels if places[at]}
            scores = {by: values[at] for by, places, values in labels if places[at]}
            out[query].append(Hit(item.id, score, distance, item.metadata, item.text, ranks, scores))
        return out
