"""`lakehouse.Client`: the whole HTTP API of a lakehouse, typed, over httpx.

Every error body comes back as the `lakehouse.errors` class of its code
(`SqlError`, `NotFound`, `SchemaDrift`, ...) with its status, code, message
and detail; a lakehouse that cannot be reached raises `Unavailable` saying
how to start one. The CLI, the MCP server and `lakehouse doctor` use it too.
A 503 with Retry-After (an index still loading answers `busy`) is waited out
and retried, within `busy_wait` seconds in all, for calls that change
nothing (GETs, searches, SQL); any other call raises it at once. Vectors go
as float32 bytes (`client/vectors.py`), never as JSON float lists.

    with Client("http://127.0.0.1:3110") as lh:
        lh.ingest("people", "people.csv")
        table = lh.sql("SELECT city, count(*) FROM people GROUP BY city")
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from lakehouse.client import models as m
from lakehouse.client.vectors import arrow_items, arrow_stream, base64_vector, json_items
from lakehouse.errors import LakehouseError, Unavailable, UpstreamError, UpstreamTimeout

if TYPE_CHECKING:  # pyarrow is imported when sql() runs
    import numpy.typing as npt
    import pyarrow

DEFAULT_URL = "http://127.0.0.1:3110"
ARROW_STREAM = "application/vnd.apache.arrow.stream"
CHUNK = 1024 * 1024
START_HINT = "is it running? start it with `lakehouse serve`"
# How long, in all, calls that change nothing wait out 503s with Retry-After.
BUSY_WAIT_SECS = 30.0
# A Retry-After of 0 (or in the past) still waits this long, so a retry never spins.
MIN_RETRY_SECS = 0.25
SAFE_METHODS = frozenset({"GET", "HEAD"})
# Content types by file extension (the formats ingest takes); any other file goes without
# one, and the server reads its format from the bytes.
CONTENT_TYPES = {
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".parquet": "application/vnd.apache.parquet",
    ".json": "application/json",
    ".ndjson": "application/x-ndjson",
    ".jsonl": "application/x-ndjson",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

Model = TypeVar("Model", bound=BaseModel)
Source = str | os.PathLike[str] | bytes | IO[bytes]
Progress = Callable[[int], None]


def _segment(name: str) -> str:
    """One path segment, escaped so a name can never reach another route."""
    return quote(name, safe="")


class Client:
    """A lakehouse at `url` (else `$LAKEHOUSE_URL`, else :3110), with `token` (else `$LAKEHOUSE_TOKEN`).

    `busy_wait`: how many seconds in all a call that changes nothing may spend waiting
    out 503 answers with Retry-After before it raises (0: never retry).
    """

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        timeout: float = 120.0,
        *,
        transport: httpx.BaseTransport | None = None,
        busy_wait: float = BUSY_WAIT_SECS,
    ) -> None:
        self.url = (url or os.environ.get("LAKEHOUSE_URL") or DEFAULT_URL).rstrip("/")
        token = (token if token is not None else os.environ.get("LAKEHOUSE_TOKEN", "")).strip()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout
        self.busy_wait = busy_wait
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            transport=transport,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # -- transport ---------------------------------------------------------------------------

    def _send(
        self, request: httpx.Request, *, stream: bool = False, idempotent: bool | None = None
    ) -> httpx.Response:
        """Send `request`; raise the typed error of a refusal or of a lakehouse out of reach.

        An idempotent request (by default GET and HEAD) that meets a 503 with Retry-After is
        sent again after the wait it asks for, while the waits add up to at most `busy_wait`.
        """
        if idempotent is None:
            idempotent = request.method in SAFE_METHODS
        waited = 0.0
        while True:
            response = self._send_once(request, stream)
            if not response.is_error:
                return response
            if stream:
                response.read()
                response.close()
            delay = _retry_delay(response) if idempotent else None
            if delay is None or waited + delay > self.busy_wait:
                raise _error_of(response)
            time.sleep(delay)
            waited += delay

    def _send_once(self, request: httpx.Request, stream: bool) -> httpx.Response:
        """One attempt: the response, whatever its status, or the typed error of a failed connection."""
        try:
            response = self._http.send(request, stream=stream)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise Unavailable(
                f"cannot reach the lakehouse gateway at {self.url} ({type(exc).__name__}): {START_HINT}"
                " (or point the client at it: --gateway / $LAKEHOUSE_URL)",
                url=self.url,
            ) from None
        except httpx.TimeoutException:
            raise UpstreamTimeout(
                f"the lakehouse gateway at {self.url} did not answer within {self.timeout:g}s", url=self.url
            ) from None
        except httpx.HTTPError as exc:
            raise Unavailable(
                f"the connection to the lakehouse gateway at {self.url} failed ({type(exc).__name__})",
                url=self.url,
            ) from None
        return response

    def request(
        self, method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One request to any route; the response when it succeeded, else the typed error.

        `idempotent`: whether a 503 with Retry-After may be retried (default: GET and HEAD only).
        """
        return self._send(self._http.build_request(method, path, **kwargs), idempotent=idempotent)

    def _json(self, method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any) -> Any:
        response = self.request(method, path, idempotent=idempotent, **kwargs)
        return None if response.status_code == 204 or not response.content else response.json()

    def _model(
        self, model: type[Model], method: str, path: str, *, idempotent: bool | None = None, **kwargs: Any
    ) -> Model:
        return model.model_validate(self._json(method, path, idempotent=idempotent, **kwargs))

    # -- health ------------------------------------------------------------------------------

    def health(self) -> m.Health:
        """`GET /health`: the service's name and version."""
        return self._model(m.Health, "GET", "/health")

    # -- ingest and catalog ------------------------------------------------------------------

    def ingest(
        self,
        name: str,
        source: Source,
        mode: Literal["append", "replace"] = "append",
        content_type: str | None = None,
        *,
        sheet: str | None = None,
        progress: Progress | None = None,
    ) -> m.IngestResult:
        """Upload a file (a path, bytes, or a binary file object) as a new version of dataset `name`.

        CSV, TSV, Parquet, JSON, NDJSON or XLSX: a path's extension names its Content-Type
        (unless `content_type` does); bytes and file objects go without one unless given,
        and the server tells the format from the bytes. `sheet` picks an XLSX sheet (default
        the first). A path or file object is streamed in chunks, never read whole;
        `progress` is called with each chunk's size.
        """
        headers: dict[str, str] = {}
        content: bytes | Iterator[bytes]
        if isinstance(source, bytes):
            content = source
        elif isinstance(source, str | os.PathLike):
            path = Path(source)
            content_type = content_type or CONTENT_TYPES.get(path.suffix.lower())
            headers["content-length"] = str(path.stat().st_size)
            content = _chunks_of_path(path, progress)
        else:
            content = _chunks_of_file(source, progress)
        if content_type:
            headers["content-type"] = content_type
        return self._model(
            m.IngestResult,
            "POST",
            f"/v1/ingest/{_segment(name)}",
            params={"mode": mode, **({"sheet": sheet} if sheet is not None else {})},
            content=content,
            headers=headers,
        )

    def datasets(self) -> list[m.DatasetSummary]:
        """Every dataset's current version, by name (every page)."""
        found: list[m.DatasetSummary] = []
        after: str | None = None
        while True:
            params = {"after": after} if after is not None else None
            page = self._model(m.DatasetList, "GET", "/v1/catalog/datasets", params=params)
            found.extend(page.datasets)
            if page.next is None or not page.datasets:
                return found
            after = page.next

    def dataset(self, name: str, version: int | None = None) -> m.Manifest:
        """A dataset's current manifest, or version `version`'s."""
        params = {"version": version} if version is not None else None
        return self._model(m.Manifest, "GET", f"/v1/catalog/datasets/{_segment(name)}", params=params)

    def versions(self, name: str) -> list[m.VersionSummary]:
        """A dataset's history, oldest first (every page)."""
        path = f"/v1/catalog/datasets/{_segment(name)}/versions"
        found: list[m.VersionSummary] = []
        after: int | str | None = None
        while True:
            page = self._model(
                m.VersionList, "GET", path, params={"after": after} if after is not None else None
            )
            found.extend(page.versions)
            if page.next is None or not page.versions:
                return found
            after = page.next

    def expire(self, name: str, *, keep_last: int | None = None, older_than: str | None = None) -> m.Expired:
        """Remove old versions (never the current one) and the files only they used (admin).

        Give `keep_last` (versions to keep) or `older_than` (ISO 8601).
        """
        body: dict[str, Any] = {}
        if keep_last is not None:
            body["keep_last"] = keep_last
        if older_than is not None:
            body["older_than"] = older_than
        return self._model(m.Expired, "POST", f"/v1/catalog/datasets/{_segment(name)}/expire", json=body)

    def register(
        self,
        name: str,
        schema: Sequence[Mapping[str, str]],
        objects: Sequence[Mapping[str, Any]],
        row_count: int,
        **extra: Any,
    ) -> m.Manifest:
        """Register stored Parquet objects as a new version (the same content again: the existing one)."""
        body = {
            "name": name,
            "schema": list(schema),
            "objects": list(objects),
            "row_count": row_count,
            **extra,
        }
        return self._model(m.Manifest, "POST", "/v1/catalog/register", json=body)

    def delete_dataset(self, name: str) -> None:
        """Delete a dataset: every version, every file, its views (admin)."""
        self.request("DELETE", f"/v1/catalog/datasets/{_segment(name)}")

    # -- SQL ---------------------------------------------------------------------------------

    def sql(self, query: str, max_rows: int | None = None) -> pyarrow.Table:
        """Run one read-only statement; the whole result as a `pyarrow.Table` (read as an Arrow stream)."""
        import pyarrow as pa

        request = self._http.build_request(
            "POST", "/v1/sql", json={"sql": query}, headers={"Accept": ARROW_STREAM}
        )
        response = self._send(request, stream=True, idempotent=True)  # read-only
        try:
            with pa.ipc.open_stream(_ResponseFile(response)) as reader:
                table = reader.read_all()
        except pa.ArrowInvalid as exc:
            raise UpstreamError(f"the Arrow stream from {self.url} broke off: {exc}") from None
        finally:
            response.close()
        return table if max_rows is None else table.slice(0, max_rows)

    def sql_json(self, query: str, max_rows: int | None = None) -> m.SqlResult:
        """Run one read-only statement; the JSON answer (rows, and whether they were truncated)."""
        body: dict[str, Any] = {"sql": query}
        if max_rows is not None:
            body["max_rows"] = max_rows
        return self._model(m.SqlResult, "POST", "/v1/sql", idempotent=True, json=body)

    # -- storage -----------------------------------------------------------------------------

    def put(self, key: str, data: Source, *, headers: Mapping[str, str] | None = None) -> m.StoredObject:
        """Write an object (bytes, a path or a file object, streamed)."""
        content: bytes | Iterator[bytes]
        if isinstance(data, bytes):
            content = data
        elif isinstance(data, str | os.PathLike):
            content = _chunks_of_path(Path(data), None)
        else:
            content = _chunks_of_file(data, None)
        path = f"/v1/storage/objects/{quote(key, safe='/')}"
        return self._model(m.StoredObject, "PUT", path, content=content, headers=dict(headers or {}))

    def get(self, key: str) -> bytes:
        """An object's bytes."""
        return self.request("GET", f"/v1/storage/objects/{quote(key, safe='/')}").content

    def head(self, key: str) -> dict[str, str]:
        """An object's headers (Content-Length, ETag, ...), lower-cased."""
        response = self.request("HEAD", f"/v1/storage/objects/{quote(key, safe='/')}")
        return {k.lower(): v for k, v in response.headers.items()}

    def delete(self, key: str) -> None:
        """Delete an object."""
        self.request("DELETE", f"/v1/storage/objects/{quote(key, safe='/')}")

    def list_objects(
        self, prefix: str = "", limit: int | None = None, after: str | None = None
    ) -> m.ObjectList:
        """One page of objects under `prefix`; pass the answer's `next` as `after` for the next."""
        params: dict[str, Any] = {"prefix": prefix}
        if limit is not None:
            params["limit"] = limit
        if after is not None:
            params["after"] = after
        return self._model(m.ObjectList, "GET", "/v1/storage/objects", params=params)

    # -- vectors -----------------------------------------------------------------------------

    def indexes(self) -> list[m.IndexInfo]:
        """Every vector index."""
        return self._model(m.IndexList, "GET", "/v1/vectors/index").indexes

    def index(self, name: str) -> m.IndexInfo:
        """One vector index."""
        return self._model(m.IndexInfo, "GET", f"/v1/vectors/index/{_segment(name)}")

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
        path = f"/v1/vectors/index/{_segment(index)}/add"
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

        rows = np.asarray(vectors, dtype=np.float32) if not isinstance(vectors, list) else vectors
        stream = arrow_stream(ids, rows, texts=texts, metadata=metadata)
        path = f"/v1/vectors/index/{_segment(index)}/add"
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
        if vector is not None:
            body["vector"] = base64_vector(vector)
        if body.get("vectors") is not None:
            body["vectors"] = [base64_vector(v) for v in body["vectors"]]
        if filter:
            body["filter"] = dict(filter)
        path = f"/v1/vectors/index/{_segment(index)}/search"
        return self._model(m.SearchResult, "POST", path, idempotent=True, json=body).hits

    def sync_index(self, name: str) -> m.IndexInfo:
        """Bring an index that follows a dataset up to the dataset's current version (write)."""
        return self._model(m.IndexInfo, "POST", f"/v1/vectors/index/{_segment(name)}/sync")

    def delete_index(self, name: str) -> None:
        """Delete a vector index (admin)."""
        self.request("DELETE", f"/v1/vectors/index/{_segment(name)}")

    def delete_item(self, index: str, item_id: str) -> None:
        """Delete one item of an index."""
        self.request("DELETE", f"/v1/vectors/index/{_segment(index)}/items/{_segment(item_id)}")

    # -- models ------------------------------------------------------------------------------

    def embed(self, texts: Sequence[str], model: str | None = None) -> m.Embeddings:
        """One embedding vector per text."""
        body: dict[str, Any] = {"texts": list(texts)}
        if model is not None:
            body["model"] = model
        return self._model(m.Embeddings, "POST", "/v1/embed", json=body)

    def chat(self, model: str, messages: Sequence[Mapping[str, Any]], **opts: Any) -> m.ChatAnswer:
        """One chat turn (`opts`: `format`, `max_tokens`, `temperature`, `think`, ...)."""
        body = {"model": model, "messages": list(messages), **opts, "stream": False}
        return self._model(m.ChatAnswer, "POST", "/v1/chat", json=body)

    def chat_stream(
        self, model: str, messages: Sequence[Mapping[str, Any]], **opts: Any
    ) -> Iterator[dict[str, Any]]:
        """The answer's pieces as they come (`{"content"}`), then the whole answer with `"done": true`.

        An error after the answer started is raised as its typed error.
        """
        body = {"model": model, "messages": list(messages), **opts, "stream": True}
        response = self._send(self._http.build_request("POST", "/v1/chat", json=body), stream=True)
        try:
            for line in response.iter_lines():
                if not line.strip():
                    continue
                piece = json.loads(line)
                if isinstance(piece, dict) and "error" in piece:
                    raise LakehouseError.from_body(response.status_code, piece)
                yield piece
        finally:
            response.close()

    def ask(
        self,
        question: str,
        model: str,
        datasets: Sequence[str] | None = None,
        indexes: Sequence[str] | None = None,
        max_steps: int | None = None,
    ) -> m.AskAnswer:
        """`POST /v1/ask`: the model answers from the data (only `datasets` and `indexes` when named)."""
        body = _ask_body(question, model, datasets, indexes, max_steps, stream=False)
        return self._model(m.AskAnswer, "POST", "/v1/ask", json=body)

    def ask_stream(
        self,
        question: str,
        model: str,
        datasets: Sequence[str] | None = None,
        indexes: Sequence[str] | None = None,
        max_steps: int | None = None,
    ) -> Iterator[m.AskStep | m.AskAnswer]:
        """`POST /v1/ask` streamed: each step as the server runs it, then the whole answer.

        An `error` event (the provider failing after the first step) is raised as its typed error.
        """
        body = _ask_body(question, model, datasets, indexes, max_steps, stream=True)
        request = self._http.build_request(
            "POST", "/v1/ask", json=body, headers={"Accept": "text/event-stream"}
        )
        response = self._send(request, stream=True)
        try:
            for kind, data in _sse_events(response.iter_lines()):
                if kind == "error":
                    raise LakehouseError.from_body(response.status_code, data)
                if kind == "step":
                    yield m.AskStep.model_validate(data)
                elif kind == "answer":
                    yield m.AskAnswer.model_validate(data)
        finally:
            response.close()

    def providers(self) -> m.Providers:
        """The registered chat providers (never a key)."""
        return self._model(m.Providers, "GET", "/v1/chat/providers")

    def models(self) -> list[m.ModelInfo]:
        """`GET /v1/models`: the tiers, default models and each provider's models."""
        return self._model(m.ModelList, "GET", "/v1/models").data


def _ask_body(
    question: str,
    model: str,
    datasets: Sequence[str] | None,
    indexes: Sequence[str] | None,
    max_steps: int | None,
    *,
    stream: bool,
) -> dict[str, Any]:
    body: dict[str, Any] = {"question": question, "model": model, "stream": stream}
    if datasets is not None:
        body["datasets"] = list(datasets)
    if indexes:
        body["indexes"] = list(indexes)
    if max_steps is not None:
        body["max_steps"] = max_steps
    return body


def _sse_events(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """(event, parsed data) for each server-sent event in `lines`."""
    kind = "message"
    data: list[str] = []
    for line in lines:
        if not line:
            if data:
                yield kind, json.loads("\n".join(data))
            kind, data = "message", []
        elif line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield kind, json.loads("\n".join(data))


def _retry_delay(response: httpx.Response) -> float | None:
    """Seconds a 503's Retry-After asks to wait (seconds or an HTTP date); None for any other answer."""
    value = response.headers.get("retry-after", "").strip() if response.status_code == 503 else ""
    if not value:
        return None
    if value.isdigit():
        return max(float(value), MIN_RETRY_SECS)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max(when.timestamp() - time.time(), MIN_RETRY_SECS)


def _error_of(response: httpx.Response) -> LakehouseError:
    """The typed error of a refusal, keeping status, code, message and detail."""
    try:
        body = response.json()
    except ValueError:
        body = None
    error = LakehouseError.from_body(response.status_code, body, dict(response.headers))
    if error.status != response.status_code:
        error.status = response.status_code  # type: ignore[misc]
    return error


def _chunks_of_path(path: Path, progress: Progress | None) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        yield from _chunks_of_file(fh, progress)


def _chunks_of_file(fh: IO[bytes], progress: Progress | None) -> Iterator[bytes]:
    while data := fh.read(CHUNK):
        if progress is not None:
            progress(len(data))
        yield data


class _ResponseFile:
    """A streamed response as the read-only file pyarrow's IPC reader takes."""

    def __init__(self, response: httpx.Response) -> None:
        self._chunks = response.iter_bytes()
        self._buffer = bytearray()
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True
