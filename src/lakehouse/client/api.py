"""`lakehouse.Client`: the whole HTTP API of a lakehouse, typed, over httpx.

One class put together from one module per idea: `transport.py` (the
connection, waits on 503 busy, every error body raised as its `lakehouse.errors`
class), `streams.py` (uploads in chunks, Arrow and SSE answers), and the typed
calls by service area: `datasets.py` (ingest, catalog, SQL), `storage.py`,
`indexes.py` (vectors, sent as float32 bytes by `vectors.py`) and `chat.py`
(embeddings, chat, ask). The CLI, the MCP server and `lakehouse doctor` use it too.

    with Client("http://127.0.0.1:3110") as lh:
        lh.ingest("people", "people.csv")
        table = lh.sql("SELECT city, count(*) FROM people GROUP BY city")
"""

from __future__ import annotations

from lakehouse.client import models as m
from lakehouse.client.chat import ModelsAPI
from lakehouse.client.datasets import DatasetsAPI
from lakehouse.client.indexes import IndexesAPI
from lakehouse.client.storage import StorageAPI
from lakehouse.client.streams import ARROW_STREAM, CHUNK, CONTENT_TYPES, Progress, Source
from lakehouse.client.transport import BUSY_WAIT_SECS, DEFAULT_URL, MIN_RETRY_SECS, START_HINT

__all__ = [
    "ARROW_STREAM",
    "BUSY_WAIT_SECS",
    "CHUNK",
    "CONTENT_TYPES",
    "DEFAULT_URL",
    "MIN_RETRY_SECS",
    "START_HINT",
    "Client",
    "Progress",
    "Source",
]


class Client(DatasetsAPI, StorageAPI, IndexesAPI, ModelsAPI):
    """A lakehouse at `url` (else `$LAKEHOUSE_URL`, else :3110), with `token` (else `$LAKEHOUSE_TOKEN`).

    `busy_wait`: how many seconds in all a call that changes nothing may spend waiting
    out 503 answers with Retry-After before it raises (0: never retry).
    Use it as a context manager, or call `close()`, to release its connections.
    """

    def health(self) -> m.Health:
        """`GET /health`: the service's name and version."""
        return self._model(m.Health, "GET", "/health")
