"""`/v1/ask` in split mode: chatd reaches catalogd, queryd and vectord at `[gateway] <service>_url`.

Tokens are on, so every service checks the caller's token again on the
calls the ask tools make; the index follows the dataset (`"source"`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from lakehouse.auth import Scope
from tests.fakes.ollama import run_fake_ollama
from tests.fakes.scripted import Results, ScriptedModel, Turn, run_scripted_model
from tests.support.procs import LakehouseProcess, serving, write_config
from tests.support.tokens import mint

pytestmark = pytest.mark.e2e

PEOPLE_CSV = (
    b"id,name,city,rate,notes\n"
    b"1,Ada,Oslo,22.5,CDL-A driver; night shifts\n"
    b"2,Bo,Lima,31.0,OSHA-30 site lead\n"
    b"3,Cy,Oslo,19.0,forklift and warehouse\n"
)
BACKENDS = ("catalogd", "queryd", "ingestd", "vectord")
START_SECS = 90.0


def start_each(procs: Iterable[LakehouseProcess]) -> None:
    """Start processes in parallel (re-raising the first failure)."""
    items = list(procs)
    with ThreadPoolExecutor(len(items)) as pool:
        for future in [pool.submit(p.start, START_SECS) for p in items]:
            future.result()


def poll(check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait until `check()` holds."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, dict[str, str], ScriptedModel]]:
    """A split lakehouse (each service its own process, a gateway in front), its tokens and the model."""
    workdir = tmp_path_factory.mktemp("ask-split")
    root = workdir / "data"
    with run_scripted_model() as model, run_fake_ollama({"nomic-embed-text": 16}) as ollama:
        config = write_config(
            workdir / "lakehouse.toml",
            {
                "storage": {"root": str(root)},
                "auth": {"required": True},
                "chatd": {"ollama_url": model.url},
                "embedd": {"ollama_url": ollama.url},
                "ingestd": {"tmp_dir": str(workdir / "spool")},
                "vectord": {"sync_interval_secs": 1},
            },
        )
        tokens = {"read": mint(root, "reader", Scope.READ), "write": mint(root, "writer", Scope.WRITE)}
        backends = {name: LakehouseProcess(config, service=name) for name in BACKENDS}
        try:
            start_each(backends.values())  # in parallel, so not one `serving()` after another
            urls = {f"LAKEHOUSE_GATEWAY__{n.upper()}_URL": p.url for n, p in backends.items()}
            with (
                serving(config, timeout=START_SECS, service="chatd", env=urls) as chatd,
                serving(
                    config,
                    timeout=START_SECS,
                    service="gateway",
                    env={**urls, "LAKEHOUSE_GATEWAY__CHATD_URL": chatd.url},
                ) as gateway,
            ):
                yield gateway.url, tokens, model
        finally:
            for proc in backends.values():
                proc.kill9()


def test_ask_reaches_sql_and_a_linked_index_through_the_services(
    split: tuple[str, dict[str, str], ScriptedModel],
) -> None:
    url, tokens, model = split
    write = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tokens['write']}"}, timeout=60)
    read = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {tokens['read']}"}, timeout=60)
    with write, read:
        ingested = write.post("/v1/ingest/people", content=PEOPLE_CSV, headers={"content-type": "text/csv"})
        assert ingested.status_code == 201, ingested.text
        source = {
            "dataset": "people",
            "id_column": "id",
            "text_columns": ["notes"],
            "metadata_columns": ["city", "rate"],
        }
        created = write.post(
            "/v1/vectors/index",
            json={"name": "people_notes", "dim": 16, "model": "nomic-embed-text", "source": source},
        )
        assert created.status_code == 201, created.text
        poll(lambda: read.get("/v1/vectors/index/people_notes").json().get("synced_version") == 1)

        def checked(results: Results) -> None:
            count, found = results
            assert count["rows"] == [[2]]
            assert [h["id"] for h in found["hits"]] == ["3"]

        model.play(
            Turn(
                calls=[
                    ("sql", {"query": "SELECT count(*) FROM people WHERE city = 'Oslo'"}),
                    (
                        "search",
                        {"index": "people_notes", "query": "warehouse", "filter": {"rate": {"$lt": 20}}},
                    ),
                ]
            ),
            Turn(answer="Two in Oslo; Cy (3) charges under 20.", check=checked),
        )
        answer = read.post(
            "/v1/ask",
            json={
                "question": "Who in Oslo is cheap?",
                "model": "qwen3:4b",
                "datasets": ["people"],
                "indexes": ["people_notes"],
            },
        )
        assert answer.status_code == 200, answer.text
        assert model.failures == []
        assert answer.json()["citations"] == [
            {
                "type": "sql",
                "sql": "SELECT count(*) FROM people WHERE city = 'Oslo'",
                "datasets": [{"dataset": "people", "version": 1}],
            },
            {"type": "search", "index": "people_notes", "ids": ["3"], "dataset": "people", "version": 1},
        ]
        anonymous = httpx.post(f"{url}/v1/ask", json={"question": "Who?", "model": "qwen3:4b"})
        assert anonymous.status_code == 401
