"""Metadata filters: parsing, semantics against a brute-force reference, and k hits under ranges."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lakehouse.errors import InvalidRequest
from lakehouse.vectors.filters import parse_filter
from lakehouse.vectors.index import EXACT_FILTER_MAX, IndexSpec, VectorIndex
from lakehouse.vectors.records import Batch


def spec(dim: int = 8) -> IndexSpec:
    """A small cosine index definition."""
    return IndexSpec("t", dim, "cosine", "m", "f32", 16, 128, 128, "g", "now")


def index_of(vectors: np.ndarray, metadata: list[dict[str, Any]]) -> VectorIndex:
    """An index holding `v0`, `v1`, ... with the given vectors and metadata."""
    index = VectorIndex.empty(spec(vectors.shape[1]))
    ids = [f"v{i}" for i in range(len(vectors))]
    index.apply(Batch("add", ids, list(range(len(ids))), vectors, metadata, [None] * len(ids)))
    return index


def unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """`n` random unit vectors."""
    data = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    out: np.ndarray = data / np.linalg.norm(data, axis=1, keepdims=True)
    return out


# The reference semantics, written independently of the implementation.
def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    return "other"


def _eq(have: Any, want: Any) -> bool:
    return _kind(have) == _kind(want) and have == want


def _cmp(have: Any, op: str, bound: Any) -> bool:
    if _kind(have) != _kind(bound) or _kind(bound) not in ("number", "string"):
        return False
    return bool({"$lt": have < bound, "$lte": have <= bound, "$gt": have > bound, "$gte": have >= bound}[op])


def matches(flt: dict[str, Any], meta: dict[str, Any]) -> bool:
    """Whether `meta` passes `flt`, by the contract's rules."""
    for key, cond in flt.items():
        if key == "$and":
            ok = all(matches(part, meta) for part in cond)
        elif key == "$or":
            ok = any(matches(part, meta) for part in cond)
        elif isinstance(cond, dict) and cond and all(k.startswith("$") for k in cond):
            ok = True
            for op, arg in cond.items():
                present = key in meta
                have = meta.get(key)
                if op == "$eq":
                    ok &= present and _eq(have, arg)
                elif op == "$ne":
                    ok &= not (present and _eq(have, arg))
                elif op == "$in":
                    ok &= present and any(_eq(have, a) for a in arg)
                elif op == "$nin":
                    ok &= not (present and any(_eq(have, a) for a in arg))
                else:
                    ok &= present and _cmp(have, op, arg)
        else:
            ok = key in meta and _eq(meta[key], cond)
        if not ok:
            return False
    return True


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.sampled_from([0.5, -1.5, 2.0, math.inf]),
    st.sampled_from(["a", "b", "c", "10", "2", ""]),
)
FIELDS = ["x", "y", "z"]
metadata_st = st.dictionaries(st.sampled_from(FIELDS), scalars, max_size=3)
bounds = st.one_of(st.integers(-5, 5), st.sampled_from([0.5, -1.5, "a", "b", "10", ""]))


def field_conditions() -> st.SearchStrategy[Any]:
    """One field's condition: a literal or an operator object."""
    ops = st.one_of(
        st.tuples(st.sampled_from(["$eq", "$ne"]), scalars),
        st.tuples(st.sampled_from(["$in", "$nin"]), st.lists(scalars, max_size=3)),
        st.tuples(st.sampled_from(["$lt", "$lte", "$gt", "$gte"]), bounds),
    )
    return st.one_of(scalars, st.lists(ops, min_size=1, max_size=2).map(dict))


filters_st = st.recursive(
    st.dictionaries(st.sampled_from(FIELDS), field_conditions(), min_size=1, max_size=2),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3).map(lambda parts: {"$and": parts}),
        st.lists(inner, min_size=1, max_size=3).map(lambda parts: {"$or": parts}),
    ),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(metas=st.lists(metadata_st, min_size=1, max_size=60), flt=filters_st)
def test_filtered_search_with_k_all_equals_brute_force(
    metas: list[dict[str, Any]], flt: dict[str, Any]
) -> None:
    index = index_of(unit(len(metas), 8), metas)
    hits = index.search(unit(1, 8, seed=1), len(metas), parse_filter(flt))[0]
    expected = {f"v{i}" for i, meta in enumerate(metas) if matches(flt, meta)}
    assert {hit.id for hit in hits} == expected


@pytest.mark.parametrize(
    "bad",
    [
        {"rate": {"$foo": 1}},
        {"rate": {"$regex": "x"}},
        {"$not": {"rate": 1}},
        {"$nor": [{"rate": 1}]},
        {"$and": {"rate": 1}},
        {"$and": []},
        {"$or": "rate"},
        {"$or": [1, 2]},
        {"rate": {"$in": 3}},
        {"rate": {"$nin": "abc"}},
        {"rate": {"$lt": True}},
        {"rate": {"$gte": None}},
        {"rate": {"$lt": [1, 2]}},
        {"rate": {"$lt": 1, "plain": 2}},
        {"": 1},
        [{"rate": 1}],
        "rate = 1",
        {"a": {"$in": list(range(20000))}},
        {"$and": [{"a": i} for i in range(1500)]},
    ],
)
def test_malformed_filters_are_invalid_requests(bad: Any) -> None:
    with pytest.raises(InvalidRequest):
        parse_filter(bad)


def test_deep_nesting_is_refused() -> None:
    deep: dict[str, Any] = {"a": 1}
    for _ in range(40):
        deep = {"$or": [deep]}
    with pytest.raises(InvalidRequest, match="nest"):
        parse_filter(deep)


def test_types_never_compare_across_classes() -> None:
    metas: list[dict[str, Any]] = [
        {"rate": 20},
        {"rate": "20"},
        {"rate": True},
        {"rate": None},
        {"rate": [20]},
        {},
        {"rate": 10**400},
    ]
    index = index_of(unit(len(metas), 8), metas)

    def ids(flt: dict[str, Any]) -> set[str]:
        return {h.id for h in index.search(unit(1, 8, 1), 100, parse_filter(flt))[0]}

    assert ids({"rate": {"$lt": 25}}) == {"v0"}
    assert ids({"rate": {"$lt": "3"}}) == {"v1"}  # strings order as text: "20" < "3"
    assert ids({"rate": 1}) == set()  # true is not 1
    assert ids({"rate": True}) == {"v2"}
    assert ids({"rate": None}) == {"v3"}
    assert ids({"rate": [20]}) == {"v4"}
    assert ids({"rate": {"$gt": 10**300}}) == {"v6"}
    assert ids({"rate": {"$ne": 20}}) == {"v1", "v2", "v3", "v4", "v5", "v6"}
    assert ids({"rate": {"$nin": [20, "20"]}}) == {"v2", "v3", "v4", "v5", "v6"}
    assert ids({"rate": {"$in": [20, None]}}) == {"v0", "v3"}


def test_range_filter_returns_k_when_k_match_among_many() -> None:
    """15 cheap items among 20,000 dear ones: the exact path over just the 15."""
    n = 20000
    metas = [{"hourly_rate": 40.0 + (i % 30)} for i in range(n)]
    cheap = list(range(7, n, n // 15))[:15]
    for i in cheap:
        metas[i] = {"hourly_rate": 18.5}
    index = index_of(unit(n, 16), metas)
    hits = index.search(unit(1, 16, 9), 10, parse_filter({"hourly_rate": {"$lt": 25}}))[0]
    assert len(hits) == 10
    assert {h.id for h in hits} <= {f"v{i}" for i in cheap}
    hits = index.search(unit(1, 16, 9), 50, parse_filter({"hourly_rate": {"$lt": 25}}))[0]
    assert len(hits) == 15


def test_broad_range_filter_far_from_the_query_still_returns_k() -> None:
    """More matches than the exact path takes, all far from the query: the walk deepens, then goes exact."""
    n, dim = 12000, 16
    vectors = unit(n, dim, seed=3)
    query = vectors[0:1].copy()
    similarity = (vectors @ query[0]).astype(float)
    far = similarity < np.quantile(similarity, 0.45)  # the 45% least similar items
    metas = [{"rate": 10 if f else 50, "n": i} for i, f in enumerate(far)]
    assert int(far.sum()) > EXACT_FILTER_MAX
    index = index_of(vectors, metas)
    hits = index.search(query, 10, parse_filter({"rate": {"$lte": 10}}))[0]
    assert len(hits) == 10
    assert all(h.metadata["rate"] == 10 for h in hits)
    exact = np.argsort(-np.where(far, similarity, -np.inf))[:10]
    recall = len({h.id for h in hits} & {f"v{i}" for i in exact}) / 10
    assert recall >= 0.8


def test_filters_follow_replaced_and_deleted_items() -> None:
    index = index_of(unit(3, 8), [{"rate": 10}, {"rate": 20}, {"rate": 30}])
    index.apply(Batch("add", ["v0"], [3], unit(1, 8, 5), [{"rate": 99}], [None]))
    index.apply(Batch("delete", ["v1"], []))
    found = index.search(unit(1, 8, 2), 10, parse_filter({"rate": {"$gte": 15}}))[0]
    assert {h.id for h in found} == {"v0", "v2"}
    assert {h.id for h in index.search(unit(1, 8, 2), 10, parse_filter({"rate": 10}))[0]} == set()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["$and", "$or", "$lt", "$in", "$ne", "$x", "a", "b", ""]), inner, max_size=3
        )
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(raw=json_values, metas=st.lists(st.dictionaries(st.sampled_from(["a", "b"]), json_values, max_size=2)))
def test_any_json_filter_parses_or_is_refused_and_never_raises_in_search(
    raw: Any, metas: list[dict[str, Any]]
) -> None:
    try:
        node = parse_filter(raw)
    except InvalidRequest:
        return
    index = index_of(unit(len(metas) + 1, 4), [*metas, {}])
    index.search(unit(1, 4, 1), 10, node)


def test_lone_surrogates_compare_without_raising() -> None:
    index = index_of(unit(2, 4), [{"a": "\ud800x"}, {"a": "x"}])
    found = index.search(unit(1, 4, 1), 10, parse_filter({"a": "\ud800x"}))[0]
    assert [h.id for h in found] == ["v0"]
    index.search(unit(1, 4, 1), 10, parse_filter({"a": {"$gte": "\udfff"}}))  # orders, never raises
