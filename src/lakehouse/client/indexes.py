"""`lakehouse.Client`'s vector indexes: create, add, search, sync and delete.

Vectors go as float32 bytes (`client/vectors.py`), never as JSON float lists;
numpy is imported by the first call that sends one, so importing the client stays light.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lakehouse.client import models as m
from lakehouse.client.streams import ARROW_STREAM
from lakehouse.client.transport import Transport, segment
from lakehouse.errors import UpstreamError

if TYPE_CHECKING:
    import numpy.typing as npt


class IndexesAPI(Transport):
    """Vector index calls."""

    def indexes(self) -> list[m.IndexInfo]:
        """Every vector index."""
        return self._model(m.IndexList, "GET", "/v1/vectors/index").indexes

    def index(self, name: str) -> m.IndexInfo:
        """One vector index."""
        return self._model(m.IndexInfo, "GET", f"/v1/vectors/index/{segment(name)}")

    def create_index(
        self, name: str, dim: int, metric: str = "cosine", model: str | None = None, **extra: Any
    ) -> m.IndexInfo:
        """A new vector index (`extra`: `source`, `dtype`, ... as the contract names them)."""
        body: dict[str, Any] = {"name": name, "dim": dim, "metric": metric, **extra}
        if model is not None:
            body["model"] = model
        return self._model(m.IndexInfo, "POST", "/v1/vectors/index", json=body)

    def add(self, index: str, items: Sequence[Mapping[str, Any]]) -> m.AddResult:
        """Upsert items (`{"id", "vector"?, "text"?, "metadata"?}`), all or none.

        A vector may be a list or a numpy array. A batch whose every item has a vector is
        sent as an Arrow stream; one with text-only items as JSON with base64 vectors.
        """
        from lakehouse.client.vectors import arrow_items, json_items

        path = f"/v1/vectors/index/{segment(index)}/add"
        stream = arrow_items(items)
        if stream is None:
            return self._model(m.AddResult, "POST", path, json={"items": json_items(items)})
        return self._model(m.AddResult, "POST", path, content=stream, headers={"Content-Type": ARROW_STREAM})

    def add_vectors(
        self,
        index: str,
        ids: Sequence[str],
        vectors: npt.ArrayLike,
        *,
        metadata: Sequence[Mapping[str, Any] | None] | None = None,
        texts: Sequence[str | None] | None = None,
    ) -> m.AddResult:
        """Upsert `vectors` (an (n, dim) array, or n rows) under `ids`, all or none, as one Arrow stream."""
        import numpy as np

        from lakehouse.client.vectors import arrow_stream

        rows = np.asarray(vectors, dtype=np.float32) if not isinstance(vectors, list) else vectors
        stream = arrow_stream(ids, rows, texts=texts, metadata=metadata)
        path = f"/v1/vectors/index/{segment(index)}/add"
        return self._model(m.AddResult, "POST", path, content=stream, headers={"Content-Type": ARROW_STREAM})

    def search(
        self,
        index: str,
        text: str | None = None,
        vector: Sequence[float] | npt.ArrayLike | None = None,
        k: int = 10,
        filter: Mapping[str, Any] | None = None,
        mode: str | None = None,
        **extra: Any,
    ) -> list[m.Hit]:
        """The `k` best items for `text` or `vector` (a list or numpy array, sent as base64), best first.

        `mode`: "vector" (the default), "keyword" (BM25 over the items' texts) or "hybrid" (both, fused).
        """
        body: dict[str, Any] = {"k": k, **extra}
        if mode is not None:
            body["mode"] = mode
        if text is not None:
            body["text"] = text
        if "vectors" in body:
            raise TypeError("search() takes one vector; search_batch() takes many")
        if vector is not None:
            body["vector"] = _base64(vector)
        if filter:
            body["filter"] = dict(filter)
        path = f"/v1/vectors/index/{segment(index)}/search"
        return self._model(m.SearchResult, "POST", path, idempotent=True, json=body).hits

    def search_batch(
        self,
        index: str,
        vectors: Sequence[Sequence[float]] | npt.NDArray[Any],
        k: int = 10,
        filter: Mapping[str, Any] | None = None,
    ) -> list[list[m.Hit]]:
        """The `k` best items for each of `vectors` (an (n, dim) array or n rows), one list per vector.

        Sent as base64 float32 and answered as an Arrow stream: a thousand queries cost
        the server and the client a fraction of what a JSON answer does.
        """
        import pyarrow as pa

        body: dict[str, Any] = {"vectors": [_base64(v) for v in vectors], "k": k}
        if filter:
            body["filter"] = dict(filter)
        path = f"/v1/vectors/index/{segment(index)}/search"
        answer = self.request("POST", path, idempotent=True, json=body, headers={"Accept": ARROW_STREAM})
        try:
            table = pa.ipc.open_stream(answer.content).read_all()
        except pa.ArrowInvalid as exc:
            raise UpstreamError(f"the Arrow answer from {self.url} cannot be read: {exc}") from None
        found: list[list[m.Hit]] = [[] for _ in body["vectors"]]
        columns = table.select(["query", "id", "score", "metadata", "text", "vector_rank"]).to_pydict()
        for query, hit_id, score, metadata, text, rank in zip(*columns.values(), strict=True):
            hit = m.Hit(
                id=hit_id,
                score=score,
                metadata=json.loads(metadata),
                text=text,
                found_by=["vector"],
                ranks={"vector": rank},
                scores={"vector": score},
            )
            found[query].append(hit)
        return found

    def sync_index(self, name: str) -> m.IndexInfo:
        """Bring an index that follows a dataset up to the dataset's current version (write)."""
        return self._model(m.IndexInfo, "POST", f"/v1/vectors/index/{segment(name)}/sync")

    def delete_index(self, name: str) -> None:
        """Delete a vector index (admin)."""
        self.request("DELETE", f"/v1/vectors/index/{segment(name)}")

    def delete_item(self, index: str, item_id: str) -> None:
        """Delete one item of an index."""
        self.request("DELETE", f"/v1/vectors/index/{segment(index)}/items/{segment(item_id)}")


def _base64(vector: Any) -> str:
    """`vectors.base64_vector`, imported (with numpy) on first use."""
    from lakehouse.client.vectors import base64_vector

    return base64_vector(vector)
