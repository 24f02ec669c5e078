"""A bounded schemathesis pass over the OpenAPI document of a live `lakehouse serve`.

Every operation gets a handful of generated requests (a few hundred in all):
none may answer 500, and every error must have the contract's shape. Chat and
embeddings point at 127.0.0.1 ports where nothing listens, so they answer 503
provider_unavailable instead of reaching the network.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from lakehouse.services.app import full_openapi
from tests.support.procs import LakehouseProcess, closed_url, serving, write_config

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CODE = re.compile(r"^[a-z][a-z0-9_]*$")
# 5xx answers the contract allows: a provider or upstream that is down, slow or busy.
ALLOWED_5XX = {"provider_unavailable", "upstream_error", "upstream_timeout", "busy", "unavailable"}
# Bounded for `make test`; set LAKEHOUSE_FUZZ_EXAMPLES for a deeper run.
EXAMPLES_PER_OPERATION = int(os.environ.get("LAKEHOUSE_FUZZ_EXAMPLES", "8"))


@pytest.fixture(scope="module")
def lakehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LakehouseProcess]:
    """One lakehouse for the whole module, with providers pointed at dead local ports."""
    root = tmp_path_factory.mktemp("fuzz")
    dead = closed_url()
    config = write_config(
        root / "lakehouse.toml",
        {
            "storage": {"root": str(root / "data"), "max_object_bytes": 1024 * 1024},
            "queryd": {"timeout_secs": 2.0},
            "embedd": {"ollama_url": dead, "timeout_secs": 2.0},
            "chatd": {"ollama_url": dead, "timeout_secs": 2.0},
        },
    )
    with serving(config) as proc:
        yield proc


# The operations come from the same routers the live server mounts (checked below), so
# the test ids name each operation; the requests all go to the live process.
SCHEMA = schemathesis.openapi.from_dict(full_openapi())
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


def test_the_live_server_documents_the_same_operations(lakehouse: LakehouseProcess) -> None:
    with lakehouse.client() as client:
        live = client.get("/openapi.json").json()
    assert sorted(live["paths"]) == sorted(SCHEMA.raw_schema["paths"])


@pytest.mark.parametrize("operation", OPERATIONS, ids=[op.label for op in OPERATIONS])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_no_500s_and_every_error_in_the_contract_shape(
    operation: Any, mode: GenerationMode, lakehouse: LakehouseProcess
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=True,
    )
    def check(case: Any) -> None:
        response = case.call(base_url=lakehouse.url, timeout=30)
        where = f"{case.method} {case.formatted_path} -> {response.status_code}: {response.content[:300]!r}"
        assert response.status_code != 500, where
        assert "x-request-id" in {k.lower() for k in response.headers}, where
        if response.status_code < 400 or case.method == "HEAD":
            return
        body = response.json()
        assert isinstance(body, dict) and isinstance(body.get("error"), dict), where
        if case.formatted_path.startswith("/iceberg/"):
            # The Iceberg REST error shape, which Iceberg clients parse.
            assert body["error"].get("code") == response.status_code, where
            assert isinstance(body["error"].get("type"), str) and body["error"]["type"].endswith(
                "Exception"
            ), where
            assert isinstance(body["error"].get("message"), str) and body["error"]["message"], where
            return
        assert CODE.match(str(body["error"].get("code"))), where
        assert isinstance(body["error"].get("message"), str) and body["error"]["message"], where
        if response.status_code >= 500:
            assert body["error"]["code"] in ALLOWED_5XX, where

    try:
        check()
    except Unsatisfiable:
        pytest.skip("the operation takes no input that could be made invalid")
