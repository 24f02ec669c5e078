"""`lakehouse.Client`'s object storage: put, get, head, delete and list objects by key."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from lakehouse.client import models as m
from lakehouse.client.streams import Source, body_of
from lakehouse.client.transport import Transport


def _object_path(key: str) -> str:
    # A key's slashes are its folders; everything else is escaped.
    return f"/v1/storage/objects/{quote(key, safe='/')}"


class StorageAPI(Transport):
    """Object storage calls."""

    def put(self, key: str, data: Source, *, headers: Mapping[str, str] | None = None) -> m.StoredObject:
        """Write an object (bytes, a path or a file object, streamed)."""
        return self._model(
            m.StoredObject, "PUT", _object_path(key), content=body_of(data), headers=dict(headers or {})
        )

    def get(self, key: str) -> bytes:
        """An object's bytes."""
        return self.request("GET", _object_path(key)).content

    def head(self, key: str) -> dict[str, str]:
        """An object's headers (Content-Length, ETag, ...), lower-cased."""
        response = self.request("HEAD", _object_path(key))
        return {k.lower(): v for k, v in response.headers.items()}

    def delete(self, key: str) -> None:
        """Delete an object."""
        self.request("DELETE", _object_path(key))

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
