"""`lakehouse.Client` sending vectors as bytes to a real `lakehouse serve`, and waiting out 503 busy."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from lakehouse import Client
from lakehouse.errors import Busy, DimMismatch, InvalidRequest
from tests.fakes.server import serve_in_thread

pytestmark = pytest.mark.e2e

DIM = 8


@pytest.fixture(scope="module")
def ollama_dim() -> int:
    """The module's fake Ollama gives DIM-dimensional vectors."""
    return DIM


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    """`n` random float32 unit vectors."""
    data = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return data / np.linalg.norm(data, axis=1, keepdims=True)


def test_numpy_arrays_lists_and_texts_add_and_search_alike(client: Client) -> None:
    data = unit_rows(300)
    client.create_index("arrays", dim=DIM)
    client.create_index("lists", dim=DIM)
    client.create_index("whole", dim=DIM)
    meta = [{"n": n} for n in range(len(data))]
    added = client.add(
        "arrays", [{"id": f"v{n}", "vector": data[n], "metadata": meta[n]} for n in range(300)]
    )
    assert added.added == 300 and added.count == 300
    client.add(
        "lists", [{"id": f"v{n}", "vector": data[n].tolist(), "metadata": meta[n]} for n in range(300)]
    )
    ids = [f"v{n}" for n in range(300)]
    assert client.add_vectors("whole", ids[:150], data[:150], metadata=meta[:150]).count == 150
    assert client.add_vectors("whole", ids[150:], list(data[150:]), metadata=meta[150:]).count == 300

    for n in (0, 42, 299):
        expected = [(h.id, h.metadata) for h in client.search("lists", vector=data[n].tolist(), k=5)]
        assert expected[0] == (f"v{n}", {"n": n})
        for name in ("arrays", "lists", "whole"):
            assert [(h.id, h.metadata) for h in client.search(name, vector=data[n], k=5)] == expected
            hits = client.search(name, vector=data[n], k=1, filter={"n": {"$ne": n}})
            assert hits[0].id != f"v{n}"

    # Items that need embedding go as JSON, the vectors beside them as base64.
    mixed = client.add(
        "arrays",
        [
            {"id": "t1", "text": "forklift operator"},
            {"id": "t2", "vector": np.full(DIM, 0.5, dtype=np.float64), "text": "picker"},
        ],
    )
    assert mixed.added == 2 and mixed.count == 302
    assert client.search("arrays", text="forklift operator", k=1)[0].id == "t1"
    assert client.search("arrays", vector=np.full(DIM, 0.5), k=1)[0].id == "t2"


def test_a_batch_search_answers_each_query_as_its_own_search_does(client: Client) -> None:
    data = unit_rows(200, seed=3)
    client.create_index("batched", dim=DIM)
    meta = [{"n": n, "name": f"José {n}"} for n in range(len(data))]
    texts = [f"picker {n}" if n % 2 else None for n in range(len(data))]
    client.add_vectors("batched", [f"b{n}" for n in range(200)], data, metadata=meta, texts=texts)
    queries = unit_rows(25, seed=4)
    for where in (None, {"n": {"$lt": 50}}):
        found = client.search_batch("batched", queries, k=4, filter=where)
        assert len(found) == len(queries)
        for query, hits in zip(queries, found, strict=True):
            alone = client.search("batched", vector=query, k=4, filter=where)
            assert [h.model_dump() for h in hits] == [h.model_dump() for h in alone]
            assert [h.ranks for h in hits] == [{"vector": place} for place in (1, 2, 3, 4)]
    # A list of rows works as an array does; a query that finds nothing has an empty list.
    rows = client.search_batch("batched", [q.tolist() for q in queries[:3]], k=2, filter={"n": -1})
    assert rows == [[], [], []]
    with pytest.raises(TypeError, match="search_batch"):
        client.search("batched", vectors=queries)
    with pytest.raises(DimMismatch):
        client.search_batch("batched", [queries[0][:3]])


def test_bad_vectors_raise_the_servers_errors_and_add_nothing(client: Client) -> None:
    client.create_index("strict", dim=DIM)
    client.add_vectors("strict", ["a"], unit_rows(1))
    with pytest.raises(DimMismatch):
        client.add("strict", [{"id": "b", "vector": np.ones(DIM)}, {"id": "c", "vector": np.ones(DIM + 1)}])
    with pytest.raises(DimMismatch):
        client.add_vectors("strict", ["b", "c"], np.ones((2, DIM - 1)))
    with pytest.raises(InvalidRequest):
        client.add_vectors("strict", ["b"], np.full((1, DIM), np.nan))
    with pytest.raises(InvalidRequest):
        client.add("strict", [{"id": "b", "vector": [1e39] * DIM}])  # past float32: infinite
    with pytest.raises(DimMismatch):
        client.search("strict", vector=np.ones(DIM - 1))
    with pytest.raises(ValueError, match="2 ids but 1 vectors"):
        client.add_vectors("strict", ["b", "c"], np.ones((1, DIM)))
    assert client.index("strict").count == 1


@dataclass
class BusyServer:
    """A real HTTP server that answers 503 `busy` with Retry-After `busy_for` times per path, then 200."""

    busy_for: int = 2
    retry_after: str = "0"
    seen: list[tuple[str, str, str]] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    url: str = ""

    def app(self) -> Starlette:
        """The ASGI app: every route answers the same way."""

        async def answer(request: Request) -> Response:
            self.bodies.append(await request.body())
            path = request.url.path
            self.seen.append((request.method, path, request.headers.get("content-type", "")))
            if sum(1 for _, p, _ in self.seen if p == path) <= self.busy_for:
                error = {"code": "busy", "message": "vector index 'big' is loading; retry shortly"}
                return JSONResponse(
                    {"error": {**error, "index": "big"}},
                    status_code=503,
                    headers={"Retry-After": self.retry_after},
                )
            if path.endswith("/search"):
                return JSONResponse({"hits": [{"id": "a", "score": 1.0, "metadata": {}}]})
            if path.endswith("/add"):
                return JSONResponse({"added": 1, "count": 1})
            info = {"name": "big", "dim": DIM, "metric": "cosine", "count": 3, "model": "m"}
            return JSONResponse(info if path != "/v1/vectors/index" else {"indexes": [info]})

        return Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST", "DELETE"])])

    def count(self, path: str) -> int:
        """How many requests reached `path`."""
        return sum(1 for _, p, _ in self.seen if p == path)


@pytest.fixture
def busy() -> Iterator[BusyServer]:
    """A BusyServer on 127.0.0.1, port 0."""
    server = BusyServer()
    with serve_in_thread(server.app()) as running:
        server.url = running.url
        yield server


def test_reads_and_searches_wait_out_busy_and_writes_do_not(busy: BusyServer) -> None:
    with Client(busy.url, token="") as client:
        assert client.index("big").count == 3
        assert busy.count("/v1/vectors/index/big") == 3  # two 503s, then the answer
        assert [h.id for h in client.search("big", vector=np.ones(DIM), k=1)] == ["a"]
        assert busy.count("/v1/vectors/index/big/search") == 3
        searches = [
            body for (_, p, _), body in zip(busy.seen, busy.bodies, strict=True) if p.endswith("/search")
        ]
        sent = json.loads(searches[-1])["vector"]  # the same body each time: base64 float32
        assert np.frombuffer(base64.b64decode(sent), dtype="<f4").tolist() == [1.0] * DIM

        with pytest.raises(Busy) as raised:
            client.add("big", [{"id": "a", "vector": np.ones(DIM)}])
        assert busy.count("/v1/vectors/index/big/add") == 1  # a write is never sent twice
        assert raised.value.status == 503 and raised.value.detail["index"] == "big"
        assert [ct for _, p, ct in busy.seen if p.endswith("/add")] == ["application/vnd.apache.arrow.stream"]


def test_busy_past_the_wait_budget_is_raised(busy: BusyServer) -> None:
    busy.busy_for = 1000
    busy.retry_after = "1"
    with Client(busy.url, token="", busy_wait=2.5) as client:
        with pytest.raises(Busy):
            client.index("big")
        # Waits of 1 s fit twice in 2.5 s: the first try and two retries.
        assert busy.count("/v1/vectors/index/big") == 3
    with Client(busy.url, token="", busy_wait=0) as client, pytest.raises(Busy):
        client.indexes()
    assert busy.count("/v1/vectors/index") == 1
