"""Fixtures of the end-to-end client tests: one open `lakehouse serve` per module and a `Client` of it.

A module that wants the fake Ollama's embedding model at another dimension
overrides `ollama_dim`; a module that defines its own `ollama`, `lakehouse`
or `client` fixture keeps it (a module's fixture wins over this file's).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lakehouse import Client
from tests.fakes.ollama import FakeOllama, run_fake_ollama
from tests.support.procs import LakehouseProcess, serving, write_config


@pytest.fixture(scope="module")
def ollama_dim() -> int:
    """The dimension of the fake Ollama's `nomic-embed-text`."""
    return 4


@pytest.fixture(scope="module")
def ollama(ollama_dim: int) -> Iterator[FakeOllama]:
    """A fake Ollama for embeddings and chat, shared by the module."""
    with run_fake_ollama({"nomic-embed-text": ollama_dim}) as fake:
        yield fake


@pytest.fixture(scope="module")
def lakehouse(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, ollama: FakeOllama
) -> Iterator[LakehouseProcess]:
    """One open lakehouse for the module (loopback: no token needed), embedding and chatting with `ollama`."""
    root = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])
    config = write_config(
        root / "lakehouse.toml",
        {
            "storage": {"root": str(root / "data")},
            "embedd": {"ollama_url": ollama.url},
            "chatd": {"ollama_url": ollama.url},
        },
    )
    with serving(config) as proc:
        yield proc


@pytest.fixture
def client(lakehouse: LakehouseProcess) -> Iterator[Client]:
    """A `Client` of the module's lakehouse."""
    with Client(lakehouse.url, token="") as c:
        yield c
