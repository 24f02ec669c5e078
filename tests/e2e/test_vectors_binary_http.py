"""Vectors sent as bytes (an Arrow IPC stream, base64 float32 in JSON) through real `lakehouse serve`."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest

from tests.conftest import StartCluster
from tests.support.procs import LakehouseProcess, closed_url, serving, write_config

pytestmark = pytest.mark.e2e

ARROW = "application/vnd.apache.arrow.stream"
DIM = 16
MAX_BATCH = 500
MAX_BODY = 256 * 1024


def clustered(n: int, dim: int, clusters: int = 20, seed: int = 0) -> np.ndarray:
    """`n` float32 unit vectors gathered around `clusters` random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    data = centres[rng.integers(0, clusters, n)] + 0.3 * rng.normal(size=(n, dim)).astype(np.float32)
    return (data / np.linalg.norm(data, axis=1, keepdims=True)).astype(np.float32)


def b64(vector: Any, dtype: str = "<f4") -> str:
    """The base64 of a vector's bytes (little-endian float32 unless told)."""
    return base64.b64encode(np.asarray(vector, dtype=dtype).tobytes()).decode()


def stream(columns: dict[str, Any], *, chunk: int | None = None, **options: Any) -> bytes:
    """An Arrow IPC stream of the columns, in record batches of `chunk` rows."""
    table = pa.table(columns)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema, options=pa.ipc.IpcWriteOptions(**options)) as writer:
        writer.write_table(table, max_chunksize=chunk)
    return sink.getvalue().to_pybytes()


def fixed(vectors: np.ndarray, dtype: Any = None) -> pa.Array:
    """A fixed_size_list<dtype>[dim] column of the rows (float32 unless told)."""
    values = pa.array(vectors.reshape(-1), type=dtype or pa.float32())
    return pa.FixedSizeListArray.from_arrays(values, vectors.shape[1])


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    """The contract's error body with this status and code."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and isinstance(error["message"], str) and error["message"], error


@pytest.fixture(scope="module")
def lakehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LakehouseProcess]:
    """One lakehouse with a small batch limit and body cap, so both are reached cheaply."""
    root = tmp_path_factory.mktemp("binary")
    dead = closed_url()
    config = write_config(
        root / "lakehouse.toml",
        {
            "storage": {"root": str(root / "data")},
            "vectord": {"max_batch": MAX_BATCH},
            "http": {"max_json_bytes": MAX_BODY},
            "embedd": {"ollama_url": dead, "timeout_secs": 2.0},
        },
    )
    with serving(config) as proc:
        yield proc


@pytest.fixture
def c(lakehouse: LakehouseProcess) -> Iterator[httpx.Client]:
    """An HTTP client of the module's lakehouse."""
    with lakehouse.client() as client:
        yield client


def create(c: httpx.Client, name: str, dim: int = DIM, metric: str = "cosine") -> None:
    """A new, empty index."""
    answer = c.post("/v1/vectors/index", json={"name": name, "dim": dim, "metric": metric})
    assert answer.status_code == 201, answer.text


def add_arrow(c: httpx.Client, name: str, body: bytes) -> httpx.Response:
    """POST an Arrow stream to the index's add route."""
    return c.post(f"/v1/vectors/index/{name}/add", content=body, headers={"Content-Type": ARROW})


def hits_of(c: httpx.Client, name: str, body: dict[str, Any]) -> list[list[tuple[str, float, Any]]]:
    """(id, score, metadata) of each query's hits, one list per query."""
    answer = c.post(f"/v1/vectors/index/{name}/search", json=body)
    assert answer.status_code == 200, answer.text
    found = answer.json()
    results = found.get("results", [found])
    return [[(h["id"], round(h["score"], 5), h["metadata"]) for h in r["hits"]] for r in results]


def test_arrow_base64_and_json_adds_find_the_same_hits(c: httpx.Client) -> None:
    data = clustered(400, DIM)
    ids = [f"v{n}" for n in range(len(data))]
    meta = [{"n": n, "even": n % 2 == 0} for n in range(len(data))]
    for name in ("by_json", "by_base64", "by_arrow", "by_arrow_lists"):
        create(c, name)
    for start in range(0, len(data), 200):
        rows = range(start, start + 200)
        as_json = [{"id": ids[n], "vector": data[n].tolist(), "metadata": meta[n]} for n in rows]
        as_b64 = [{"id": ids[n], "vector": b64(data[n]), "metadata": meta[n]} for n in rows]
        columns = {
            "id": [ids[n] for n in rows],
            "metadata": [json.dumps(meta[n]) for n in rows],
        }
        for name, body in (("by_json", as_json), ("by_base64", as_b64)):
            answer = c.post(f"/v1/vectors/index/{name}/add", json={"items": body})
            assert answer.status_code == 200 and answer.json()["added"] == 200, answer.text
        # Fixed-size vectors in several record batches; variable-length lists in one.
        answer = add_arrow(
            c, "by_arrow", stream({**columns, "vector": fixed(data[start : start + 200])}, chunk=64)
        )
        assert answer.status_code == 200 and answer.json() == {"added": 200, "count": start + 200}, (
            answer.text
        )
        lists = pa.array([data[n] for n in rows], type=pa.list_(pa.float32()))
        answer = add_arrow(c, "by_arrow_lists", stream({**columns, "vector": lists}))
        assert answer.status_code == 200 and answer.json()["count"] == start + 200, answer.text

    queries = clustered(12, DIM, seed=1)
    expected = hits_of(c, "by_json", {"vectors": queries.tolist(), "k": 5})
    assert all(len(hits) == 5 for hits in expected)
    for name in ("by_json", "by_base64", "by_arrow", "by_arrow_lists"):
        assert c.get(f"/v1/vectors/index/{name}").json()["count"] == len(data)
        # The same hits whichever way the items came and the queries go.
        assert hits_of(c, name, {"vectors": queries.tolist(), "k": 5}) == expected, name
        assert hits_of(c, name, {"vectors": [b64(q) for q in queries], "k": 5}) == expected, name
        mixed = [b64(q) if n % 2 else q.tolist() for n, q in enumerate(queries)]
        assert hits_of(c, name, {"vectors": mixed, "k": 5}) == expected, name
        for n in (0, 7):
            single = hits_of(c, name, {"vector": b64(queries[n]), "k": 5})
            assert single == [expected[n]], name
        # Each item's own vector finds it first, with its metadata.
        top = hits_of(c, name, {"vector": b64(data[33]), "k": 1, "filter": {"even": False}})
        assert top[0][0][0] == "v33" and top[0][0][1] == pytest.approx(1.0, abs=1e-4)
        assert top[0][0][2] == meta[33]


def test_arrow_items_carry_texts_and_replace_as_json_items_do(c: httpx.Client) -> None:
    create(c, "texts", dim=4)
    vectors = np.eye(4, dtype=np.float32)
    body = stream(
        {
            "id": ["a", "b", "c", "a"],  # the last of repeated ids wins, as in JSON
            "vector": fixed(np.vstack([vectors[:3], vectors[3:]])),
            "text": ["forklift operator", None, "warehouse picker", "night shift forklift driver"],
            "metadata": ['{"city": "Leeds"}', None, '{"city": "York"}', '{"city": "Hull"}'],
        }
    )
    answer = add_arrow(c, "texts", body)
    assert answer.status_code == 200 and answer.json() == {"added": 3, "count": 3}, answer.text
    hits = c.post(
        "/v1/vectors/index/texts/search", json={"text": "forklift", "mode": "keyword", "k": 5}
    ).json()["hits"]
    assert [(h["id"], h["text"], h["metadata"]) for h in hits] == [
        ("a", "night shift forklift driver", {"city": "Hull"})
    ]
    hits = c.post("/v1/vectors/index/texts/search", json={"vector": b64(vectors[3]), "k": 1}).json()["hits"]
    assert hits[0]["id"] == "a" and hits[0]["metadata"] == {"city": "Hull"}
    hits = c.post("/v1/vectors/index/texts/search", json={"vector": b64(vectors[1]), "k": 1}).json()["hits"]
    assert hits[0]["id"] == "b" and hits[0]["metadata"] == {}


def bad_streams() -> dict[str, tuple[bytes, str]]:
    """Arrow bodies that must each be refused whole: (body, expected error code)."""
    good = np.eye(DIM, dtype=np.float32)[:3]
    ids = ["x1", "x2", "x3"]
    whole = stream({"id": ids, "vector": fixed(good)}, chunk=2)
    nan, inf = good.copy(), good.copy()
    nan[1, 3], inf[2, 0] = np.nan, np.inf
    ragged = pa.array([good[0], good[1][:-1], good[2]], type=pa.list_(pa.float32()))
    holed = pa.array([good[0].tolist(), [None] * DIM, good[2].tolist()], type=pa.list_(pa.float32()))
    return {
        "wrong fixed dimension": (
            stream({"id": ids, "vector": fixed(np.eye(DIM + 1, dtype=np.float32)[:3])}),
            "dim_mismatch",
        ),
        "one list too short": (stream({"id": ids, "vector": ragged}), "dim_mismatch"),
        "NaN": (stream({"id": ids, "vector": fixed(nan)}), "invalid_request"),
        "infinity": (stream({"id": ids, "vector": fixed(inf)}), "invalid_request"),
        "float64 vectors": (
            stream({"id": ids, "vector": fixed(good.astype(np.float64), pa.float64())}),
            "invalid_request",
        ),
        "float16 vectors": (
            stream({"id": ids, "vector": fixed(good.astype(np.float16), pa.float16())}),
            "invalid_request",
        ),
        "integer vectors": (
            stream({"id": ids, "vector": fixed(good.astype(np.int32), pa.int32())}),
            "invalid_request",
        ),
        "a null inside a vector": (stream({"id": ids, "vector": holed}), "invalid_request"),
        "truncated": (whole[: len(whole) // 2], "invalid_request"),
        "cut at a message boundary": (whole[:-8], "invalid_request"),
        "bytes after the end": (whole + b"\x00" * 8, "invalid_request"),
        "garbage": (b"\x00\x01 this is not arrow " * 20, "invalid_request"),
        "empty body": (b"", "invalid_request"),
        "an Arrow file, not a stream": (_arrow_file({"id": ids, "vector": fixed(good)}), "invalid_request"),
        "compressed": (stream({"id": ids, "vector": fixed(good)}, compression="zstd"), "invalid_request"),
        "no id column": (stream({"vector": fixed(good)}), "invalid_request"),
        "a null id": (stream({"id": ["x1", None, "x3"], "vector": fixed(good)}), "invalid_request"),
        "an empty id": (stream({"id": ["x1", "", "x3"], "vector": fixed(good)}), "invalid_request"),
        "integer ids": (stream({"id": [1, 2, 3], "vector": fixed(good)}), "invalid_request"),
        "an unknown column": (stream({"id": ids, "vectors": fixed(good)}), "invalid_request"),
        "bad metadata JSON": (
            stream({"id": ids, "vector": fixed(good), "metadata": ['{"a": 1}', '{"a": ', None]}),
            "invalid_request",
        ),
        "metadata not an object": (
            stream({"id": ids, "vector": fixed(good), "metadata": [None, "[1, 2]", None]}),
            "invalid_request",
        ),
        "NaN in metadata": (
            stream({"id": ids, "vector": fixed(good), "metadata": [None, '{"a": NaN}', None]}),
            "invalid_request",
        ),
        "a row without vector or text": (
            stream({"id": ids, "vector": pa.array([good[0], None, good[2]], type=pa.list_(pa.float32()))}),
            "invalid_request",
        ),
        "more rows than max_batch": (
            stream(
                {
                    "id": [f"r{n}" for n in range(MAX_BATCH + 1)],
                    "vector": fixed(np.ones((MAX_BATCH + 1, DIM), np.float32)),
                },
                chunk=200,
            ),
            "invalid_request",
        ),
    }


def _arrow_file(columns: dict[str, Any]) -> bytes:
    table = pa.table(columns)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def bad_json_items() -> dict[str, tuple[list[dict[str, Any]], str]]:
    """JSON batches with a bad base64 vector after a good one: (items, expected error code)."""
    good = {"id": "x1", "vector": b64(np.eye(DIM)[0])}
    return {
        "not a multiple of 4 bytes": (
            [good, {"id": "x2", "vector": base64.b64encode(b"\x00" * 63).decode()}],
            "invalid_request",
        ),
        "too few floats": ([good, {"id": "x2", "vector": b64(np.ones(DIM - 1))}], "dim_mismatch"),
        "too many floats": ([good, {"id": "x2", "vector": b64(np.ones(DIM + 1))}], "dim_mismatch"),
        "float64 bytes": ([good, {"id": "x2", "vector": b64(np.ones(DIM), "<f8")}], "dim_mismatch"),
        "not base64": ([good, {"id": "x2", "vector": "not*base64!"}], "invalid_request"),
        "url-safe alphabet": (
            [good, {"id": "x2", "vector": base64.urlsafe_b64encode(b"\xfb\xff" * (DIM * 2)).decode()}],
            "invalid_request",
        ),
        "NaN": ([good, {"id": "x2", "vector": b64(np.full(DIM, np.nan))}], "invalid_request"),
        "infinity": ([good, {"id": "x2", "vector": b64(np.full(DIM, np.inf))}], "invalid_request"),
    }


def test_every_bad_binary_input_is_refused_whole(c: httpx.Client) -> None:
    create(c, "guarded")
    keep = np.eye(DIM, dtype=np.float32)
    assert add_arrow(c, "guarded", stream({"id": ["k1", "k2"], "vector": fixed(keep[:2])})).status_code == 200

    def unchanged() -> None:
        assert c.get("/v1/vectors/index/guarded").json()["count"] == 2
        hits = c.post("/v1/vectors/index/guarded/search", json={"vector": b64(keep[0]), "k": 10}).json()[
            "hits"
        ]
        assert sorted(h["id"] for h in hits) == ["k1", "k2"]

    for what, (body, code) in bad_streams().items():
        answer = add_arrow(c, "guarded", body)
        assert answer.status_code == 400, f"{what}: {answer.text}"
        assert answer.json()["error"]["code"] == code, f"{what}: {answer.text}"
        unchanged()
    for what, (items, code) in bad_json_items().items():
        answer = c.post("/v1/vectors/index/guarded/add", json={"items": items})
        assert answer.status_code == 400 and answer.json()["error"]["code"] == code, f"{what}: {answer.text}"
        unchanged()
    good_stream = stream({"id": ["x1"], "vector": fixed(keep[:1])})
    for content_type in ("application/octet-stream", "text/csv", "application/vnd.apache.arrow.file"):
        answer = c.post(
            "/v1/vectors/index/guarded/add", content=good_stream, headers={"Content-Type": content_type}
        )
        assert_error(answer, 400, "invalid_request")
        assert content_type in answer.json()["error"]["message"]
        unchanged()

    # Queries: base64 of the wrong size or values, and bodies that are not JSON.
    search = "/v1/vectors/index/guarded/search"
    assert_error(c.post(search, json={"vector": b64(np.ones(DIM - 1))}), 400, "dim_mismatch")
    assert_error(c.post(search, json={"vectors": [b64(keep[0]), b64(np.ones(DIM * 2))]}), 400, "dim_mismatch")
    assert_error(
        c.post(search, json={"vector": base64.b64encode(b"\x00" * 5).decode()}), 400, "invalid_request"
    )
    assert_error(c.post(search, json={"vector": "%%%"}), 400, "invalid_request")
    assert_error(c.post(search, json={"vector": b64(np.full(DIM, np.nan))}), 400, "invalid_request")
    assert_error(c.post(search, content=good_stream, headers={"Content-Type": ARROW}), 400, "invalid_request")
    unchanged()


def test_bodies_over_the_cap_are_413_and_add_nothing(c: httpx.Client) -> None:
    dim = 256
    create(c, "capped", dim=dim)
    # Under max_batch, over the body cap: refused by size before anything is read.
    rows = MAX_BODY // (dim * 4) + 10
    assert rows <= MAX_BATCH
    vectors = clustered(rows, dim)
    ids = [f"id-{n:08d}-{'x' * 40}" for n in range(rows)]
    big = stream({"id": ids, "vector": fixed(vectors)})
    assert len(big) > MAX_BODY
    assert_error(add_arrow(c, "capped", big), 413, "too_large")

    # Sent chunked, with no Content-Length, it is cut off as it streams.
    def chunks() -> Iterator[bytes]:
        for start in range(0, len(big), 16384):
            yield big[start : start + 16384]

    answer = c.post("/v1/vectors/index/capped/add", content=chunks(), headers={"Content-Type": ARROW})
    assert_error(answer, 413, "too_large")
    items = [{"id": ids[n], "vector": b64(vectors[n])} for n in range(rows)]
    assert_error(c.post("/v1/vectors/index/capped/add", json={"items": items}), 413, "too_large")
    assert c.get("/v1/vectors/index/capped").json()["count"] == 0
    # The same items in batches under the cap are all taken.
    half = rows // 2
    assert (
        add_arrow(c, "capped", stream({"id": ids[:half], "vector": fixed(vectors[:half])})).status_code == 200
    )
    assert c.post("/v1/vectors/index/capped/add", json={"items": items[half:]}).status_code == 200
    assert c.get("/v1/vectors/index/capped").json()["count"] == rows


def test_the_openapi_document_names_the_arrow_body(c: httpx.Client) -> None:
    spec = c.get("/openapi.json").json()
    add = spec["paths"]["/v1/vectors/index/{name}/add"]["post"]["requestBody"]
    assert set(add["content"]) == {"application/json", ARROW}
    assert "fixed_size_list<float32>" in add["description"]
    vector = add["content"]["application/json"]["schema"]["properties"]["items"]["items"]["properties"][
        "vector"
    ]
    assert "base64" in vector["description"]


def test_arrow_adds_and_base64_searches_cross_the_gateway(start_cluster: StartCluster) -> None:
    cluster = start_cluster(services=["vectord"])
    data = clustered(50, 8)
    with cluster.client() as client:
        create(client, "through", dim=8)
        ids = [f"g{n}" for n in range(len(data))]
        answer = add_arrow(client, "through", stream({"id": ids, "vector": fixed(data)}))
        assert answer.status_code == 200 and answer.json()["count"] == len(data), answer.text
        assert hits_of(client, "through", {"vector": b64(data[9]), "k": 1})[0][0][0] == "g9"
        assert_error(add_arrow(client, "through", b"not arrow"), 400, "invalid_request")


def arrow_hits(c: httpx.Client, name: str, body: dict[str, Any], accept: str = ARROW) -> pa.Table:
    """The search's answer as an Arrow table, asked for with `accept`."""
    answer = c.post(f"/v1/vectors/index/{name}/search", json=body, headers={"Accept": accept})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == ARROW
    assert "content-encoding" not in answer.headers  # Arrow is never gzipped
    return pa.ipc.open_stream(answer.content).read_all()


def test_an_arrow_answer_holds_the_json_answer_row_for_row(c: httpx.Client) -> None:
    create(c, "answers")
    data = clustered(300, DIM)
    items = [
        {"id": f"a{n}", "vector": b64(data[n]), "metadata": {"n": n, "tag": "é" if n % 3 else None}}
        | ({"text": f"forklift operator {n}"} if n % 2 else {})
        for n in range(len(data))
    ]
    assert c.post("/v1/vectors/index/answers/add", json={"items": items}).status_code == 200
    queries = clustered(7, DIM, seed=2)
    body = {"vectors": [b64(q) for q in queries], "k": 6, "filter": {"n": {"$gte": 10}}}
    as_json = c.post("/v1/vectors/index/answers/search", json=body).json()["results"]
    table = arrow_hits(c, "answers", body)
    assert table.schema.names == [
        "query", "id", "score", "metadata", "text",
        "vector_rank", "vector_score", "keyword_rank", "keyword_score",
    ]  # fmt: skip
    rows = table.to_pylist()
    expected = [(q, h) for q, result in enumerate(as_json) for h in result["hits"]]
    assert len(rows) == len(expected) == 7 * 6
    for row, (query, hit) in zip(rows, expected, strict=True):
        assert row["query"] == query and row["id"] == hit["id"]
        assert row["score"] == hit["score"] == row["vector_score"]
        assert json.loads(row["metadata"]) == hit["metadata"] and hit["metadata"]["n"] >= 10
        assert row["text"] == hit.get("text")
        assert row["vector_rank"] == hit["ranks"]["vector"] and row["keyword_rank"] is None

    # One query: query 0; a hybrid answer carries both rankings where they found the hit.
    single = arrow_hits(c, "answers", {"vector": b64(data[41]), "k": 3}).to_pylist()
    assert [r["query"] for r in single] == [0, 0, 0] and single[0]["id"] == "a41"
    hybrid = {"vector": b64(data[41]), "text": "forklift operator 41", "mode": "hybrid", "k": 5}
    fused = c.post("/v1/vectors/index/answers/search", json=hybrid).json()["hits"]
    rows = arrow_hits(c, "answers", hybrid).to_pylist()
    assert [r["id"] for r in rows] == [h["id"] for h in fused] and rows[0]["id"] == "a41"
    for row, hit in zip(rows, fused, strict=True):
        for by in ("vector", "keyword"):
            assert row[f"{by}_rank"] == hit["ranks"].get(by)
            assert row[f"{by}_score"] == hit["scores"].get(by)
    # Nothing found: the schema and no rows.
    none = arrow_hits(c, "answers", {"vector": b64(data[0]), "k": 3, "filter": {"n": -1}})
    assert none.num_rows == 0 and none.schema.names[0] == "query"


def test_json_is_answered_unless_arrow_is_named_and_errors_stay_json(c: httpx.Client) -> None:
    create(c, "negotiated")
    data = clustered(20, DIM)
    items = [{"id": f"n{i}", "vector": b64(v)} for i, v in enumerate(data)]
    assert c.post("/v1/vectors/index/negotiated/add", json={"items": items}).status_code == 200
    body = {"vector": b64(data[3]), "k": 2}
    for accept in ("", "*/*", "application/*", f"{ARROW};q=0", f"application/json, {ARROW};q=0.5", "text/x"):
        answer = c.post("/v1/vectors/index/negotiated/search", json=body, headers={"Accept": accept})
        assert answer.status_code == 200, (accept, answer.text)
        assert answer.headers["content-type"] == "application/json", accept
        assert answer.json()["hits"][0]["id"] == "n3"
    for accept in (ARROW, f"application/json;q=0.9, {ARROW}", f"{ARROW.upper()}; q=1", f"*/*;q=0.1, {ARROW}"):
        assert arrow_hits(c, "negotiated", body, accept=accept).column("id")[0].as_py() == "n3", accept
    # Refusals are the contract's JSON errors whatever the client accepts.
    headers = {"Accept": ARROW}
    answer = c.post("/v1/vectors/index/absent/search", json=body, headers=headers)
    assert_error(answer, 404, "not_found")
    answer = c.post("/v1/vectors/index/negotiated/search", json={"vector": b64(data[0][:3])}, headers=headers)
    assert_error(answer, 400, "dim_mismatch")
    answer = c.post(
        "/v1/vectors/index/negotiated/search", json={"vector": b64(data[0]), "k": 0}, headers=headers
    )
    assert_error(answer, 400, "invalid_request")


def test_the_openapi_document_names_the_arrow_answer(c: httpx.Client) -> None:
    spec = c.get("/openapi.json").json()
    answer = spec["paths"]["/v1/vectors/index/{name}/search"]["post"]["responses"]["200"]
    assert set(answer["content"]) == {"application/json", ARROW}
    assert "vector_rank" in answer["description"]
