"""Where Iceberg files live: object keys as the URIs Iceberg engines open, and back.

On the local backend an object's URI is `file://<root>/objects/<key>`; on S3
it is `s3://<bucket>/<key>`. Iceberg metadata holds these absolute URIs, so
pyiceberg, DuckDB, Spark or Daft open the files with their own filesystems.

A URI coming back from a client (a data file in a commit) is turned into a
key by parsing, then checked with the key rules: one that is not under the
store's base, or whose rest is not a valid key (`..`, control characters), is
refused rather than trusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lakehouse.errors import InvalidKey
from lakehouse.storage.base import DATASETS_PREFIX, ObjectStore
from lakehouse.storage.keys import validate_key

if TYPE_CHECKING:
    from pyiceberg.io import FileIO


@dataclass(frozen=True)
class Warehouse:
    """The URI base of one object store and how pyiceberg reaches it."""

    base: str
    io_properties: dict[str, str]

    def uri(self, key: str) -> str:
        """The URI of object `key`."""
        return f"{self.base}/{key}"

    def key(self, uri: str) -> str | None:
        """The object key a URI names, or None when it is outside this store or not a valid key."""
        if not isinstance(uri, str) or not uri.startswith(self.base + "/"):
            return None
        key = uri[len(self.base) + 1 :]
        try:
            return validate_key(key)
        except InvalidKey:
            return None

    def table_location(self, name: str) -> str:
        """The Iceberg table location of dataset `name`: its reserved area."""
        return self.uri(f"{DATASETS_PREFIX}{name}")

    def io(self) -> FileIO:
        """A pyiceberg FileIO over the store (pyarrow's local or S3 filesystem)."""
        from pyiceberg.io.pyarrow import PyArrowFileIO

        return PyArrowFileIO(dict(self.io_properties))


def warehouse_for(store: ObjectStore) -> Warehouse:
    """The warehouse of a local or S3 store."""
    from lakehouse.storage.local import LocalStore

    if isinstance(store, LocalStore):
        return Warehouse(f"file://{store.objects}", {})
    from lakehouse.storage.s3 import S3Store

    if isinstance(store, S3Store):
        from lakehouse.arrow_s3 import ICEBERG_PROPERTIES

        creds = store.creds
        props: dict[str, Any] = {"s3.region": creds.region, **ICEBERG_PROPERTIES}
        if creds.endpoint:
            props["s3.endpoint"] = creds.endpoint
        if creds.access_key_id:
            props["s3.access-key-id"] = creds.access_key_id
            props["s3.secret-access-key"] = creds.secret_access_key or ""
        if creds.session_token:
            props["s3.session-token"] = creds.session_token
        return Warehouse(f"s3://{store.bucket}", props)
    raise TypeError(f"no Iceberg warehouse for a {type(store).__name__}")
