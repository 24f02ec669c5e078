"""A batch's hits as columns (`Answer`): the hits, places, scores and renderings one `Hit` at a time gives."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lakehouse.vectors.answers import hits_arrow, hits_json
from lakehouse.vectors.fusion import fuse, ranked
from lakehouse.vectors.index import Item
from lakehouse.vectors.ranking import Answer, Hit

ITEMS = {
    key: Item(f"id{key}", {"n": key} if key % 2 else {}, f"text {key}" if key % 3 else None)
    for key in range(20)
}


def found(*rows: list[tuple[int, float]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query, graph keys and engine distances as the graphs return them."""
    return [
        (np.array([key for key, _ in row], dtype=np.uint64), np.array([d for _, d in row], dtype=np.float32))
        for row in rows
    ]


def test_a_key_without_an_item_is_left_out_and_the_places_after_it_close_up() -> None:
    items = {key: item for key, item in ITEMS.items() if key != 5}
    answer = Answer.ranked(found([(3, 0.1), (5, 0.2), (7, 0.3)], [(5, 0.0)], [(9, 0.5)]), items, "cosine")
    hits = answer.hits()
    assert [[h.id for h in q] for q in hits] == [["id3", "id7"], [], ["id9"]]
    assert [[h.ranks for h in q] for q in hits] == [[{"vector": 1}, {"vector": 2}], [], [{"vector": 1}]]
    assert answer.query.tolist() == [0, 0, 2]


@pytest.mark.parametrize(
    ("metric", "distance", "score"),
    [("cosine", 0.25, 0.75), ("ip", -0.5, 1.5), ("l2", 4.0, 2.0), ("l2", -1e-7, 0.0)],
)
def test_scores_follow_the_metric_in_float64(metric: str, distance: float, score: float) -> None:
    (hit,) = Answer.ranked(found([(1, distance)]), ITEMS, metric).hits()[0]
    assert hit.score == pytest.approx(score) and hit.scores == {"vector": hit.score}
    assert hit.distance == np.float32(distance)


def test_no_hits_for_any_query_is_a_list_per_query() -> None:
    assert Answer.ranked(found([], []), ITEMS, "cosine").hits() == [[], []]
    assert Answer.empty(3).hits() == [[], [], []]
    assert hits_json(Answer.empty(2)) == [[], []]
    assert pa.ipc.open_stream(hits_arrow(Answer.empty(2))).read_all().num_rows == 0


hit_lists = st.lists(
    st.lists(st.tuples(st.integers(0, 19), st.floats(-2, 2, width=32)), max_size=6, unique_by=lambda p: p[0]),
    max_size=5,
)


@settings(max_examples=60, deadline=None)
@given(rows=hit_lists, keyword=hit_lists)
def test_hits_made_one_at_a_time_come_back_the_same_from_columns(rows: list, keyword: list) -> None:
    vector = Answer.ranked(found(*rows), ITEMS, "cosine").hits()
    words = [
        ranked([Hit(ITEMS[k].id, s, 0.0, ITEMS[k].metadata, ITEMS[k].text) for k, s in r], "keyword")
        for r in keyword
    ]
    fused = [fuse({"vector": v, "keyword": w}, 4) for v, w in zip(vector, words, strict=False)]
    for lists in (vector, words, fused):
        answer = Answer.of(lists)
        assert answer.hits() == lists
        rendered = hits_json(answer)
        table = pa.ipc.open_stream(hits_arrow(answer)).read_all().to_pylist()
        assert [len(q) for q in rendered] == [len(q) for q in lists]
        flat = [(n, h) for n, q in enumerate(lists) for h in q]
        for (query, hit), row, as_json in zip(flat, table, [h for q in rendered for h in q], strict=True):
            assert as_json["id"] == row["id"] == hit.id and row["query"] == query
            assert as_json["score"] == row["score"] == hit.score
            assert as_json["ranks"] == hit.ranks and as_json["scores"] == hit.scores
            assert as_json["found_by"] == [by for by in ("vector", "keyword") if by in hit.ranks]
            assert json.loads(row["metadata"]) == as_json["metadata"] == hit.metadata
            assert row["text"] == as_json.get("text") == hit.text
            for by in ("vector", "keyword"):
                assert row[f"{by}_rank"] == hit.ranks.get(by) and row[f"{by}_score"] == hit.scores.get(by)
