"""`lakehouse.Client`'s datasets: ingest, the catalog, and SQL answered as Arrow or JSON."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from lakehouse.client import models as m
from lakehouse.client.streams import (
    ARROW_STREAM,
    CONTENT_TYPES,
    Progress,
    ResponseFile,
    Source,
    body_of,
    chunks_of_path,
)
from lakehouse.client.transport import Transport, segment
from lakehouse.errors import UpstreamError

if TYPE_CHECKING:  # pyarrow is imported when sql() runs
    import pyarrow


class DatasetsAPI(Transport):
    """Ingest, catalog and SQL calls."""

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
        if isinstance(source, str | os.PathLike):
            path = Path(source)
            content_type = content_type or CONTENT_TYPES.get(path.suffix.lower())
            headers["content-length"] = str(path.stat().st_size)
            content = chunks_of_path(path, progress)
        else:
            content = body_of(source, progress)
        if content_type:
            headers["content-type"] = content_type
        return self._model(
            m.IngestResult,
            "POST",
            f"/v1/ingest/{segment(name)}",
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
        return self._model(m.Manifest, "GET", f"/v1/catalog/datasets/{segment(name)}", params=params)

    def versions(self, name: str) -> list[m.VersionSummary]:
        """A dataset's history, oldest first (every page)."""
        path = f"/v1/catalog/datasets/{segment(name)}/versions"
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
        return self._model(m.Expired, "POST", f"/v1/catalog/datasets/{segment(name)}/expire", json=body)

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
        self.request("DELETE", f"/v1/catalog/datasets/{segment(name)}")

    def sql(self, query: str, max_rows: int | None = None) -> pyarrow.Table:
        """Run one read-only statement; the whole result as a `pyarrow.Table` (read as an Arrow stream)."""
        import pyarrow as pa

        request = self._http.build_request(
            "POST", "/v1/sql", json={"sql": query}, headers={"Accept": ARROW_STREAM}
        )
        response = self._send(request, stream=True, idempotent=True)  # read-only
        try:
            with pa.ipc.open_stream(ResponseFile(response.iter_bytes())) as reader:
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
