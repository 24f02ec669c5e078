"""The only files a query worker's DuckDB can open: the dataset views' own objects, read-only.

DuckDB's own local filesystem is disabled in the worker (`sandbox.open_connection`),
so every path a query names goes through `DatasetFiles`, an fsspec filesystem
registered under the `lakehouse://` protocol. It maps `lakehouse://<object key>`
to the object store through pyarrow (a local folder or S3, credentials held in
this process, never in a DuckDB setting), answers only for the keys of the views
registered now, and has no way to write, remove, rename or list anything. So a
query can read its datasets' Parquet files at DuckDB's native speed and nothing
else, and no path it can see names a place on the server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fsspec import AbstractFileSystem

PROTOCOL = "lakehouse"


def dataset_url(key: str) -> str:
    """The name DuckDB knows an object by."""
    return f"{PROTOCOL}://{key}"


class DatasetFiles(AbstractFileSystem):  # type: ignore[misc]
    """Read-only access to exactly the objects in `allowed`, through a pyarrow filesystem."""

    protocol = PROTOCOL
    # fsspec caches instances by their arguments; each worker wants its own.
    cachable = False

    def __init__(self, store: Any) -> None:
        super().__init__()
        self._store = store
        self._allowed: frozenset[str] = frozenset()
        # Dataset files never change once written, so what a stat said stays true. DuckDB asks
        # for a file's size and time dozens of times per query (once per row group and thread).
        self._stats: dict[str, tuple[int, datetime]] = {}

    @property
    def allowed(self) -> frozenset[str]:
        """The object keys that open: exactly those of the views registered now."""
        return self._allowed

    @allowed.setter
    def allowed(self, keys: frozenset[str]) -> None:
        self._allowed = keys
        self._stats = {key: stat for key, stat in self._stats.items() if key in keys}

    def _key(self, path: str) -> str:
        key = str(self._strip_protocol(path)).lstrip("/")
        if key not in self.allowed:
            raise FileNotFoundError(f"{dataset_url(key)} is not a file of the lakehouse's datasets")
        return key

    def _open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        if mode != "rb":
            raise PermissionError("the lakehouse's datasets are read-only")
        return self._store.open_input_file(self._key(path))

    def _stat(self, path: str) -> tuple[int, datetime]:
        key = self._key(path)
        stat = self._stats.get(key)
        if stat is None:
            found = self._store.get_file_info(key)
            stat = self._stats[key] = (int(found.size), found.mtime)
        return stat

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """Size and kind of one allowed object."""
        return {"name": path, "size": self._stat(path)[0], "type": "file"}

    def modified(self, path: str) -> datetime:
        """When the object was written (DuckDB keys its metadata cache on it)."""
        return self._stat(path)[1]

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        """Nothing is listable: a query names its files, or reads its views."""
        raise FileNotFoundError(path)

    def glob(self, path: str, **kwargs: Any) -> list[str]:
        """An allowed object's own name, and nothing for a pattern."""
        key = str(self._strip_protocol(path)).lstrip("/")
        return [dataset_url(key)] if key in self.allowed else []


def object_store(storage: dict[str, Any]) -> Any:
    """pyarrow's view of the object store: object keys are paths in it."""
    import pyarrow.fs as pafs

    if storage["backend"] == "s3":
        from lakehouse.arrow_s3 import client_options

        options: dict[str, Any] = {"region": storage.get("region") or "us-east-1", **client_options()}
        if storage.get("access_key"):
            options.update(access_key=storage["access_key"], secret_key=storage.get("secret_key") or "")
            if storage.get("session_token"):
                options["session_token"] = storage["session_token"]
        if storage.get("endpoint"):
            options.update(endpoint_override=storage["endpoint"], scheme=storage.get("scheme") or "https")
        return pafs.SubTreeFileSystem(str(storage["bucket"]), pafs.S3FileSystem(**options))
    return pafs.SubTreeFileSystem(str(storage["root"]), pafs.LocalFileSystem())
