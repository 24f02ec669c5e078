"""Which Iceberg table properties a client may set, and which the server's own writes act on.

A table property can be configuration: pyiceberg takes the metadata path, the
location provider (a class it imports), codecs and FileIO settings from them.
A commit may set only the client's own keys (`settable_property`), and the
server's writes carry on only those and its own (`kept_properties`), so one
missed key cannot steer where or how the server writes. No pyiceberg here:
the REST routes check keys without importing it.
"""

from __future__ import annotations

import re

from lakehouse.errors import InvalidRequest

# The table properties the lakehouse itself sets (`new_table`); the server's own
# writes act on these and nothing else.
# (pyiceberg's TableProperties.DEFAULT_NAME_MAPPING and the Parquet codec.)
SERVER_PROPERTIES = frozenset({"schema.name-mapping.default", "write.parquet.compression-codec"})
# The first word (up to the first ".", "-" or "_") of every property key Iceberg,
# pyiceberg or its catalogs treat as configuration: writing (`write.*`, the
# location provider, codecs), reading, commits, expiry, the name mapping, format
# versions, and FileIO and credentials (`py-io-impl`, `s3.*`, `client.*`,
# `buffer-size`, `token` ...), which pyiceberg's REST client merges into every
# reader's file access from the table's properties; and our own.
_RESERVED_WORDS = frozenset(
    {
        "adls", "audience", "auth", "avro", "aws", "azure", "botocore", "buffer", "client", "commit",
        "compatibility", "credential", "credentials", "current", "default", "downcast", "dynamodb",
        "encryption", "engine", "format", "fs", "fsspec", "gc", "gcp", "gcs", "glue", "grant", "hadoop",
        "hdfs", "header", "hf", "history", "hive", "http", "https", "iceberg", "io", "kms", "lakehouse",
        "location", "lock", "manifest", "metadata", "namespace", "oauth", "oauth2", "orc", "oss",
        "parquet", "prefix", "proxy", "py", "pyarrow", "pyiceberg", "read", "resource", "rest", "s3",
        "scan", "schema", "scope", "sigv4", "signer", "snapshot", "ssl", "table", "tls", "token", "uri",
        "uuid", "vended", "warehouse", "write",
    }
)  # fmt: skip
_FIRST_WORD = re.compile(r"[^._\-]*")
# Every later metadata file (and the metadata cache) carries the clients' properties:
# at most this many bytes of keys and values.
MAX_CLIENT_BYTES = 64 * 1024


def settable_property(key: str) -> bool:
    """Whether a commit may set or remove table property `key`.

    The rule is an allowlist by shape: a key is the client's own (`owner`,
    `comment`, `team.contact`) unless its first word, up to the first ".",
    "-" or "_" and in any case, is one Iceberg, pyiceberg or the lakehouse reserve
    for configuration (`write.metadata.path`, `format-version`,
    `py-io-impl`, `schema.name-mapping.default`, `lakehouse.*` ...). New
    configuration keys appear under these words, so they stay refused.
    """
    first = _FIRST_WORD.match(key.lower())
    return bool(key) and first is not None and first.group() not in _RESERVED_WORDS


def kept_properties(properties: dict[str, str]) -> dict[str, str]:
    """The properties a new version carries on: the server's own and the clients' (`settable_property`).

    Configuration a commit managed to set before it was refused is dropped.
    """
    return {k: v for k, v in properties.items() if k in SERVER_PROPERTIES or settable_property(k)}


def check_size(properties: dict[str, str]) -> None:
    """Refuse a table whose clients' properties, keys and values, pass MAX_CLIENT_BYTES in UTF-8.

    Raises:
        InvalidRequest: the properties are too large.
    """
    size = sum(len(k.encode()) + len(v.encode()) for k, v in properties.items() if k not in SERVER_PROPERTIES)
    if size > MAX_CLIENT_BYTES:
        raise InvalidRequest(
            f"a table's own properties may hold at most {MAX_CLIENT_BYTES} bytes of keys and values, "
            f"not {size}"
        )
