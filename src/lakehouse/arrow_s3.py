"""How pyarrow's S3 client connects and retries: like the lakehouse's own S3 store.

pyarrow's S3 filesystem reads a query's dataset files (`query.files`) and,
through pyiceberg's FileIO, writes every version's Iceberg metadata
(`catalog.warehouse`). Left to the AWS SDK's defaults it gives up after 3
attempts with a 1 s connect timeout, so a few dropped or refused connections
in a row (a busy endpoint, a connection the server closed) fail a commit or a
query. Here it waits as long to connect as `storage.s3` does and makes up to
`ATTEMPTS` attempts, the SDK's standard backoff between them (about 15 s at
most in all), so a transient error is retried and a down endpoint still fails
within seconds.
"""

from __future__ import annotations

from typing import Any

import pyarrow.fs as pafs

ATTEMPTS = 5
# The same as `storage.s3.CONNECT_TIMEOUT`, written out: this module is imported by every query
# worker on S3, which must not load obstore, pydantic and the settings for one number.
CONNECT_SECS = 5.0


class Retries(pafs.AwsStandardS3RetryStrategy):  # type: ignore[misc]
    """The SDK's standard retries, `ATTEMPTS` attempts (pyiceberg builds it by name, with no arguments)."""

    def __init__(self) -> None:
        super().__init__(max_attempts=ATTEMPTS)


# pyiceberg's names for the same settings (`Warehouse.io_properties`).
ICEBERG_PROPERTIES = {
    "s3.connect-timeout": str(CONNECT_SECS),
    "s3.retry-strategy-impl": f"{__name__}.{Retries.__qualname__}",
}


def client_options() -> dict[str, Any]:
    """`pyarrow.fs.S3FileSystem` keyword arguments: the connect timeout and the retries."""
    return {"connect_timeout": CONNECT_SECS, "retry_strategy": Retries()}
