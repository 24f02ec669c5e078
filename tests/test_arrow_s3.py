"""pyarrow's S3 client (Iceberg metadata, query reads) rides out connections an endpoint drops.

A proxy in front of moto's S3 server closes the first few connections it
accepts without answering, as a busy or restarting endpoint would; a write
through the catalog's Iceberg FileIO still lands, byte for byte, and a query
worker's read of a dataset file still reads it.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from lakehouse.catalog.warehouse import warehouse_for
from lakehouse.query.files import object_store
from lakehouse.storage.s3 import S3Credentials, S3Store

pytestmark = pytest.mark.s3

# One more dropped connection in a row than the AWS SDK's default 3 attempts ride out.
DROPS = 3


class DroppingProxy:
    """A TCP proxy to `target` that closes its first `drops` connections unanswered."""

    def __init__(self, target: tuple[str, int], drops: int) -> None:
        self.target = target
        self.left = drops
        self.dropped = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            with self.lock:
                drop, self.left = self.left > 0, self.left - 1
                if drop:
                    self.dropped += 1
            if drop:
                client.close()
                continue
            upstream = socket.create_connection(self.target)
            self.open += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        """Stop accepting and close every connection."""
        self.listener.close()
        for sock in self.open:
            sock.close()


@contextlib.contextmanager
def dropping_proxy(endpoint: str, drops: int) -> Iterator[DroppingProxy]:
    """A `DroppingProxy` to the `http://host:port` endpoint, closed afterwards."""
    host, port = endpoint.removeprefix("http://").rsplit(":", 1)
    proxy = DroppingProxy((host, int(port)), drops)
    try:
        yield proxy
    finally:
        proxy.close()


def test_an_iceberg_file_is_written_though_the_first_connections_are_dropped(
    s3_storage: dict[str, str],
) -> None:
    import boto3

    endpoint, bucket = s3_storage["endpoint"], s3_storage["bucket"]
    body = b'{"format-version": 2}' * 1000
    key = "_lakehouse/datasets/trips/metadata/00001.metadata.json"
    with dropping_proxy(endpoint, DROPS) as proxy:
        store = S3Store(
            bucket, S3Credentials("testing", "testing", None, "us-east-1", f"http://127.0.0.1:{proxy.port}")
        )
        warehouse = warehouse_for(store)
        with warehouse.io().new_output(warehouse.uri(key)).create() as out:
            out.write(body)
        assert proxy.dropped == DROPS
    stored = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").get_object(
        Bucket=bucket, Key=key
    )
    assert stored["Body"].read() == body


def test_a_query_worker_reads_a_dataset_file_though_the_first_connections_are_dropped(
    s3_storage: dict[str, str],
) -> None:
    import boto3

    endpoint, bucket = s3_storage["endpoint"], s3_storage["bucket"]
    body = b"PAR1" + bytes(range(256)) * 64
    key = "_lakehouse/datasets/trips/part-1.parquet"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").put_object(
        Bucket=bucket, Key=key, Body=body
    )
    with dropping_proxy(endpoint, DROPS) as proxy:
        files = object_store(
            {
                "backend": "s3",
                "bucket": bucket,
                "endpoint": f"127.0.0.1:{proxy.port}",
                "scheme": "http",
                "access_key": "testing",
                "secret_key": "testing",
            }
        )
        with files.open_input_file(key) as stream:
            assert stream.read() == body
        assert proxy.dropped == DROPS


def test_s3_endpoints_keep_their_port_once_the_vector_engines_are_loaded(s3_storage: dict[str, str]) -> None:
    # In a fresh interpreter, vectors first as in a server serving vectord alone: usearch
    # loaded before pyarrow's S3 client once made it connect to port 80, whatever the endpoint's.
    code = f"""
import lakehouse.vectors
from lakehouse.catalog.warehouse import warehouse_for
from lakehouse.storage.s3 import S3Credentials, S3Store

creds = S3Credentials("testing", "testing", None, "us-east-1", {s3_storage["endpoint"]!r})
store = S3Store({s3_storage["bucket"]!r}, creds)
warehouse = warehouse_for(store)
with warehouse.io().new_output(warehouse.uri("probe/00001.metadata.json")).create() as out:
    out.write(b"{{}}")
print(warehouse.io().new_input(warehouse.uri("probe/00001.metadata.json")).open().read())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "b'{}'"


def test_pyarrow_waits_as_long_to_connect_as_the_s3_store() -> None:
    from lakehouse import arrow_s3
    from lakehouse.storage import s3

    assert s3.CONNECT_TIMEOUT.total_seconds() == arrow_s3.CONNECT_SECS


def test_a_query_worker_on_s3_loads_no_settings_and_no_object_store_client() -> None:
    # The options come from a module the query workers import; they start lean.
    code = (
        "import sys, lakehouse.query.worker, lakehouse.query.files, lakehouse.arrow_s3\n"
        "print(sorted(m for m in ('pydantic', 'obstore', 'lakehouse.config') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
