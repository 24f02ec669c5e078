"""A restarted process serves everything at once while a vector index replays a long log."""

from __future__ import annotations

import time
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import StartLakehouse

pytestmark = pytest.mark.e2e

DIM = 64
ITEMS = 60_000
BATCH = 5_000
# Nothing is snapshotted: a restart replays every record of the log. A shallow graph
# keeps writing and replaying 60,000 vectors to seconds each; a deep search keeps it exact enough.
VECTORD = {
    "snapshot_every": 1_000_000_000,
    "max_batch": BATCH,
    "connectivity": 8,
    "expansion_add": 16,
    "expansion_search": 512,
}


def vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """`n` random unit vectors, rounded so the JSON stays small (what is sent is what is kept)."""
    rng = np.random.default_rng(seed)
    data = rng.normal(size=(n, dim)).astype(np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    return np.round(data, 4).astype(np.float32)


def assert_busy(answer: httpx.Response) -> None:
    """The contract's 503 `busy`, with a short Retry-After."""
    assert answer.status_code == 503, answer.text
    error = answer.json()["error"]
    assert error["code"] == "busy" and "loading" in error["message"]
    assert answer.headers["retry-after"] in ("1", "2")


def search_body(data: np.ndarray, n: int) -> dict[str, Any]:
    """Item `n`'s own vector, as the query."""
    return {"vector": data[n].tolist(), "k": 3}


def test_index_replaying_its_log_answers_busy_while_the_rest_serves(start_lakehouse: StartLakehouse) -> None:
    proc = start_lakehouse(config={"vectord": VECTORD})
    data = vectors(ITEMS, DIM)
    with proc.client() as c:
        assert c.post("/v1/vectors/index", json={"name": "big", "dim": DIM}).status_code == 201
        for start in range(0, ITEMS, BATCH):
            items = [
                {"id": f"v{n}", "vector": data[n].tolist(), "metadata": {"n": n}}
                for n in range(start, start + BATCH)
            ]
            answer = c.post("/v1/vectors/index/big/add", json={"items": items})
            assert answer.status_code == 200, answer.text
        assert c.delete("/v1/vectors/index/big/items/v7").status_code == 204
    proc.kill9()

    started = time.monotonic()
    proc.start()  # returns once /health answers
    healthy_after = time.monotonic() - started
    seen_loading = busy = 0
    with proc.client(timeout=10.0) as c:
        deadline = time.monotonic() + 60
        while True:
            info = c.get("/v1/vectors/index/big").json()
            if info["state"] == "ready":
                break
            assert info["state"] == "loading", info
            seen_loading += 1
            progress = info["progress"]
            assert 0 <= progress["replayed"] <= progress["total"] == ITEMS // BATCH + 1
            assert 0 <= info["count"] <= ITEMS
            # Everything else answers meanwhile.
            assert c.get("/health").status_code == 200
            answer = c.post("/v1/sql", json={"sql": "SELECT 40 + 2 AS answer"})
            assert answer.status_code == 200 and answer.json()["rows"] == [[42]], answer.text
            # Creating an index by a loading one's name is refused as ever.
            assert c.post("/v1/vectors/index", json={"name": "big", "dim": DIM}).status_code == 409
            # The index itself is busy; each of these asks something that cannot change it
            # even if the load has just finished (then it answers as a ready index would).
            answer = c.post("/v1/vectors/index/big/search", json=search_body(data, 11))
            if answer.status_code == 503:
                assert_busy(answer)
                busy += 1
                added = c.post("/v1/vectors/index/big/add", json={"items": []})
                assert added.status_code in (503, 400), added.text
                if added.status_code == 503:
                    assert_busy(added)
                gone = c.delete("/v1/vectors/index/big/items/no-such-item")
                assert gone.status_code in (503, 404), gone.text
            else:
                assert answer.status_code == 200, answer.text
            assert time.monotonic() < deadline, f"still loading after 60 s: {info}"
            time.sleep(0.05)

        # Once ready: every acknowledged change, and the right hits.
        assert info["count"] == ITEMS - 1
        assert "progress" not in info or info["progress"] is None
        for n in (0, 11, 4_999, 30_000, ITEMS - 1):
            hits = c.post("/v1/vectors/index/big/search", json=search_body(data, n)).json()["hits"]
            assert hits[0]["id"] == f"v{n}" and hits[0]["metadata"] == {"n": n}
            assert hits[0]["score"] == pytest.approx(1.0, abs=1e-3)
        # Each item alone (its filter leaves one candidate, searched exactly) holds its own vector.
        for n in [7, *range(0, ITEMS, 997)]:
            body = {"vector": data[n].tolist(), "k": 1, "filter": {"n": n}}
            hits = c.post("/v1/vectors/index/big/search", json=body).json()["hits"]
            if n == 7:
                assert hits == []  # deleted before the crash, deleted after it
            else:
                assert [h["id"] for h in hits] == [f"v{n}"]
                assert hits[0]["score"] == pytest.approx(1.0, abs=1e-3)
    print(f"healthy after {healthy_after:.2f} s; loading seen {seen_loading} times, busy {busy} times")
