"""Shared fixtures: real lakehouse processes and moto's S3 server on 127.0.0.1."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lakehouse.config import Settings, StorageConfig
from lakehouse.storage import ObjectStore, open_store
from tests.support.cluster import MODES, LakehouseCluster
from tests.support.procs import LakehouseProcess, write_config

StartLakehouse = Callable[..., LakehouseProcess]
StartCluster = Callable[..., LakehouseCluster]


@pytest.fixture
def start_lakehouse(tmp_path: Path) -> Iterator[StartLakehouse]:
    """Start `lakehouse serve [service]` processes; all are stopped after the test.

    Call as `start_lakehouse(config={...sections...}, service=None, env=None)`.
    Local storage defaults to a folder under the test's tmp_path.
    """
    procs: list[LakehouseProcess] = []

    def start(
        config: dict[str, dict[str, Any]] | None = None,
        service: str | None = None,
        env: dict[str, str] | None = None,
        name: str = "lakehouse.toml",
        port: int | None = None,
    ) -> LakehouseProcess:
        sections: dict[str, dict[str, Any]] = {"storage": {"root": str(tmp_path / "data")}}
        for section, keys in (config or {}).items():
            sections.setdefault(section, {}).update(keys)
        path = write_config(tmp_path / name, sections)
        proc = LakehouseProcess(path, service=service, env=env, port=port)
        procs.append(proc)
        return proc.start()

    yield start
    for proc in procs:
        proc.kill9()


@pytest.fixture(params=MODES)
def lakehouse_mode(request: pytest.FixtureRequest) -> str:
    """Each serve mode in turn: "embedded" (one process) and "split" (a process per service + gateway)."""
    mode: str = request.param
    return mode


@pytest.fixture
def start_cluster(lakehouse_mode: str, tmp_path: Path) -> Iterator[StartCluster]:
    """Start a whole lakehouse in the current `lakehouse_mode`; every process is killed after the test.

    Call as `start_cluster(config={...sections...}, env=None, services=None)`
    (`services`: in split mode run only these, which starts faster): the same config
    file and one storage root under tmp_path serve every process. Every process
    binds port 0; in split mode the services start first (in parallel) and the
    gateway is then given their URLs. The result is a `LakehouseCluster`: `.url`
    (the gateway, in both modes), `.client()`, `.service(name)` (that
    service's own process in split mode, the single process when embedded),
    `.kill9_all()`, `.restart_all()`, `.stop_all()`, `.log()`.
    """
    clusters: list[LakehouseCluster] = []

    def start(
        config: dict[str, dict[str, Any]] | None = None,
        env: dict[str, str] | None = None,
        services: list[str] | None = None,
    ) -> LakehouseCluster:
        cluster = LakehouseCluster(lakehouse_mode, tmp_path, config=config, env=env, services=services)
        clusters.append(cluster)
        return cluster.start_all()

    yield start
    for cluster in clusters:
        cluster.kill9_all()


@pytest.fixture
def lakehouse_cluster(start_cluster: StartCluster) -> LakehouseCluster:
    """A default-config lakehouse, run once embedded and once split; the same tests pass on both.

    Use it (or `start_cluster` for extra config) in e2e tests whose client-visible
    behaviour must not depend on the serve mode.
    """
    return start_cluster()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server on a 127.0.0.1 port of its own choosing, for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port = server.get_host_and_port()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Credentials moto accepts, set in the environment for this process and its children."""
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def s3_storage(s3_endpoint: str, s3_env: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    """`[storage]` keys for a fresh, empty moto bucket (credentials from the environment)."""
    import boto3

    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    return {
        "backend": "s3",
        "bucket": bucket,
        "endpoint": s3_endpoint,
        "secrets": str(tmp_path / "no-secrets.toml"),
    }


@pytest.fixture(params=["local", "s3"])
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings over a fresh store of each backend: a tmp folder, or a new moto bucket."""
    if request.param == "local":
        return Settings(storage=StorageConfig(backend="local", root=str(tmp_path / "data")))
    return Settings(storage=StorageConfig(**request.getfixturevalue("s3_storage")))


@pytest.fixture
async def store(store_settings: Settings) -> AsyncIterator[ObjectStore]:
    """The object store of `store_settings`, closed after the test."""
    opened = open_store(store_settings)
    try:
        yield opened
    finally:
        await opened.close()
