"""What `lakehouse serve` loads before it answers, and what it leaves for later.

A start has under a second to reach a healthy `/health` (issue 14), so the
modules only some commands or some requests need stay out of it: the CLI
does not load the client its other commands use, pyiceberg waits for the
first request that writes or reads an Iceberg table (`catalog.iceberg`),
aiohttp for the first call to a model provider, httpx for the first ask,
bm25s (with scipy) for the first keyword index built. Once listening, a start
loads them on one background thread (`warm_up`), and a request that comes
first imports what it needs on a worker thread, never on the event loop.
Each check runs in a fresh interpreter, so no other test's imports count.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.procs import write_config

# Needed by a request or a command, never by a start.
LEFT_FOR_LATER = (
    "pyiceberg",
    "lakehouse.catalog.tables",
    "lakehouse.client",
    "rich.progress",
    "aiohttp",  # calls to model providers
    "yarl",
    "dotenv",  # reading a provider's key file
    "httpx",  # the ask tools' calls, and httpx's own command line with it:
    "click",
    "pygments",
    "bm25s",  # building a keyword index
    "scipy",
    "pyarrow.parquet",  # reading a dataset into a linked index
)
# What `warm_up` imports once listening, for every service.
WARMED = ("pyiceberg", "aiohttp", "httpx", "bm25s")


def loaded_after(code: str) -> set[str]:
    """The modules in `sys.modules` (and their top-level packages) once `code` has run."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    names = json.loads(done.stdout.strip().splitlines()[-1])
    return set(names) | {n.split(".")[0] for n in names}


def test_the_cli_loads_no_client_no_web_framework_and_no_iceberg() -> None:
    loaded = loaded_after("import lakehouse.cli")
    for name in (*LEFT_FOR_LATER, "fastapi", "uvicorn", "httpx", "numpy"):
        assert name not in loaded


def test_serving_every_service_on_an_empty_folder_starts_without_pyiceberg(tmp_path: Path) -> None:
    config = write_config(tmp_path / "lakehouse.toml", {"storage": {"root": str(tmp_path / "data")}})
    # What `lakehouse serve` does up to listening: the app, then each service's start-up hook.
    loaded = loaded_after(
        f"""
import asyncio, importlib
import lakehouse.cli
from lakehouse.config import load_settings
from lakehouse.services.app import create_app
from lakehouse.services.table import SERVICES

app = create_app(load_settings({str(config)!r}), name="gateway", bind_host="127.0.0.1")

async def start() -> None:
    deps = app.state.deps
    try:
        for spec in SERVICES.values():
            hook = getattr(importlib.import_module(spec.module), "startup", None)
            if hook is not None:
                await hook(deps)
    finally:
        await deps.aclose()

asyncio.run(start())
"""
    )
    assert "lakehouse.services.vectord" in loaded  # the app really was built
    for name in LEFT_FOR_LATER:
        assert name not in loaded


def test_once_listening_the_warm_up_loads_what_requests_need_on_its_own_thread() -> None:
    loaded = loaded_after(
        """
import threading
from lakehouse.services.app import warm_up
from lakehouse.services.table import SERVICES

warm_up(SERVICES)
for thread in threading.enumerate():
    if thread.name == "lakehouse-warm-up":
        thread.join(60)
"""
    )
    for name in WARMED:
        assert name in loaded


def test_a_warm_up_waits_until_replayed_vectors_are_in_the_graph(tmp_path: Path) -> None:
    # Imports hold the interpreter: next to a replay they kept the index from answering longer.
    vectord = {"snapshot_every": 10**9, "snapshot_interval_secs": 10**6}
    config = write_config(
        tmp_path / "lakehouse.toml", {"storage": {"root": str(tmp_path / "data")}, "vectord": vectord}
    )
    fill = f"""
import asyncio, os
import numpy as np
from lakehouse.config import load_settings
from lakehouse.services.app import create_app
from lakehouse.vectors import NewItem

async def fill() -> None:
    app = create_app(load_settings({str(config)!r}), bind_host="127.0.0.1")
    async with app.router.lifespan_context(app):
        service = app.state.deps.vectors
        await service.create("people", 32)
        rows = np.random.default_rng(0).normal(size=(6000, 32)).astype(np.float32)
        for start in range(0, 6000, 1000):
            batch = [NewItem(str(i), rows[i].tolist()) for i in range(start, start + 1000)]
            await service.add("people", batch)
        os._exit(0)  # a crash: the acknowledged adds are in the log alone, nothing snapshotted

asyncio.run(fill())
"""
    filled = subprocess.run([sys.executable, "-c", fill], capture_output=True, text=True, timeout=120)
    assert filled.returncode == 0, filled.stderr
    restart = f"""
import asyncio, json, logging, sys, threading
from lakehouse.config import load_settings
from lakehouse.services.app import create_app, warm_up
from lakehouse.services.table import SERVICES

events = []

class Linked(logging.Handler):  # the log line of a finished link of replayed vectors
    def emit(self, record):
        if "pending vectors linked" in record.getMessage():
            events.append("linked")

class Watch:  # the warm-up's first import, and what the index was doing then
    def find_spec(self, name, path=None, target=None):
        if name == "pyiceberg" and threading.current_thread().name == "lakehouse-warm-up":
            events.append(app.state.deps.vectors.info("people"))
        return None

logging.getLogger("lakehouse").addHandler(Linked())
logging.getLogger("lakehouse").setLevel(logging.INFO)
sys.meta_path.insert(0, Watch())
app = create_app(load_settings({str(config)!r}), bind_host="127.0.0.1")

async def restart() -> None:
    async with app.router.lifespan_context(app):
        warm_up(SERVICES, app.state.deps)
        deadline = asyncio.get_running_loop().time() + 60
        while len(events) < 2 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)

asyncio.run(restart())
print(json.dumps(events))
"""
    done = subprocess.run([sys.executable, "-c", restart], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    events = json.loads(done.stdout.strip().splitlines()[-1])
    assert events[0] == "linked"  # the restart replayed the log and linked it, and only then:
    assert len(events) == 2
    assert events[1]["state"] == "ready" and events[1]["count"] == 6000
    assert not events[1].get("unindexed")


def test_a_first_provider_call_or_ask_imports_its_http_client_off_the_event_loop(tmp_path: Path) -> None:
    # A request that comes before the warm-up has run must not import on the loop's thread.
    config = write_config(tmp_path / "lakehouse.toml", {"storage": {"root": str(tmp_path / "data")}})
    code = f"""
import asyncio, json, sys, threading

importers = {{}}

class Watch:
    def find_spec(self, name, path=None, target=None):
        if name in ("aiohttp", "httpx"):
            importers.setdefault(name, threading.current_thread() is threading.main_thread())
        return None

sys.meta_path.insert(0, Watch())

from lakehouse.ask.backend import connect
from lakehouse.config import load_settings
from lakehouse.providers.chat import ChatRouter

async def first_calls() -> None:
    router = ChatRouter(load_settings({str(config)!r}))
    session = await router.http()
    assert not session.closed
    await router.close()
    lakehouse = connect(catalog, frozenset({{"catalogd"}}), {{"queryd": "", "vectord": ""}}, {{}}, 5.0)
    try:
        print("datasets:", await lakehouse.datasets())
    finally:
        await lakehouse.aclose()

async def catalog(scope, receive, send) -> None:  # an in-process catalogd holding one dataset
    body = json.dumps({{"datasets": [{{"name": "trips"}}]}}).encode()
    headers = [(b"content-type", b"application/json")]
    await send({{"type": "http.response.start", "status": 200, "headers": headers}})
    await send({{"type": "http.response.body", "body": body}})

asyncio.run(first_calls())
print(json.dumps(importers))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert "datasets: [{'name': 'trips'}]" in lines  # the ask's call really was made
    on_main_thread = json.loads(lines[-1])
    assert on_main_thread == {"aiohttp": False, "httpx": False}


def test_threads_needing_pyiceberg_at_once_all_get_it_whole() -> None:
    # One gate (`iceberg.load`): threads entering pyiceberg through different modules at once
    # would otherwise risk a deadlock or a half-initialised module.
    code = """
import threading
from lakehouse.catalog.iceberg import field_ids_sql, iceberg_schema
from lakehouse.catalog.manifest import Column

columns = [Column("id", "BIGINT"), Column("tags", "VARCHAR[]")]
results, errors = [], []

def use(i: int) -> None:
    try:
        if i % 3 == 0:
            results.append(field_ids_sql(columns))
        elif i % 3 == 1:
            results.append(len(iceberg_schema(columns).fields))
        else:
            from lakehouse.catalog import iceberg
            iceberg.load()
            from pyiceberg.table import CommitTableRequest
            results.append(CommitTableRequest.__name__)
    except BaseException as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=use, args=(i,)) for i in range(9)]
for t in threads:
    t.start()
for t in threads:
    t.join()
assert not errors, errors
assert len(results) == 9
assert "FIELD_IDS {'id': 1, 'tags': {__duckdb_field_id: 2, 'element': 3}}" in results
"""
    loaded = loaded_after(code)
    assert "pyiceberg" in loaded
