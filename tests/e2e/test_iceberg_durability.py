"""The Iceberg catalog under crashes, races and upgrades, with real processes.

- data written by release 0.1 (a fixture folder it wrote) is served with the
  same versions and rows, as Iceberg tables, and converting again changes
  nothing; a `kill -9` halfway through the conversion is finished by the next start;
- two processes committing to one table at once never make two versions of
  one number nor lose an append;
- a `kill -9` while commits run leaves every version whole and readable.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from tests.support.procs import LakehouseProcess, serving, write_config

pytestmark = pytest.mark.e2e

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "release-0.1"
CATALOG = Path("objects") / "_lakehouse" / "catalog"


def config_over(root: Path, name: str = "lakehouse.toml") -> Path:
    """A config file next to `root` that serves the folder `root`."""
    return write_config(root.parent / name, {"storage": {"root": str(root)}})


def catalog(proc: LakehouseProcess) -> Any:
    from pyiceberg.catalog import load_catalog

    return load_catalog(f"lh-{uuid.uuid4().hex[:6]}", type="rest", uri=f"{proc.url}/iceberg")


def stored_manifests(root: Path) -> dict[str, dict[int, dict[str, Any]]]:
    """Every stored manifest, by dataset and version, read straight from the folder."""
    found: dict[str, dict[int, dict[str, Any]]] = {}
    for path in sorted((root / CATALOG).glob("*/*.json")):
        manifest = json.loads(path.read_text())
        found.setdefault(manifest["name"], {})[manifest["version"]] = manifest
    return found


def sql_ids(client: httpx.Client, query: str) -> list[Any]:
    answer = client.post("/v1/sql", json={"sql": query})
    assert answer.status_code == 200, answer.text
    return sorted(row[0] for row in answer.json()["rows"])


def assert_whole(proc: LakehouseProcess, name: str) -> list[dict[str, Any]]:
    """Versions 1..N without gaps; each version's snapshot holds exactly its rows, chained to the last."""
    with proc.client() as client:
        versions = client.get(f"/v1/catalog/datasets/{name}/versions").json()["versions"]
        numbers = [v["version"] for v in versions]
        assert numbers == list(range(1, len(numbers) + 1))
        table = catalog(proc).load_table(f"default.{name}")
        snapshots = {s.snapshot_id: s for s in table.metadata.snapshots}
        previous: int | None = None
        for summary in versions:
            snapshot = snapshots[summary["snapshot_id"]]
            assert snapshot.summary.additional_properties["lakehouse.version"] == str(summary["version"])
            assert snapshot.parent_snapshot_id == previous
            previous = snapshot.snapshot_id
            assert int(snapshot.summary.additional_properties["total-records"]) == summary["row_count"]
        # Reading is what counts: the first, a middle and the last snapshot, file by file.
        for summary in {id(v): v for v in (versions[0], versions[len(versions) // 2], versions[-1])}.values():
            scanned = table.scan(snapshot_id=summary["snapshot_id"]).to_arrow()
            assert scanned.num_rows == summary["row_count"]
        assert table.current_snapshot().snapshot_id == versions[-1]["snapshot_id"]
    return versions


# --- upgrade --------------------------------------------------------------------------------


def test_release_0_1_data_is_served_with_the_same_versions_and_rows(tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(FIXTURE, root)
    before = stored_manifests(root)
    with serving(config_over(root)) as proc:
        with proc.client() as client:
            for name, versions in before.items():
                served = client.get(f"/v1/catalog/datasets/{name}/versions").json()["versions"]
                assert [(v["version"], v["row_count"], v["fingerprint"]) for v in served] == [
                    (n, m["row_count"], m["fingerprint"]) for n, m in sorted(versions.items())
                ]
            assert sql_ids(client, 'SELECT id FROM "trips@1"') == [1, 2]
            assert sql_ids(client, 'SELECT id FROM "trips@3"') == [4, 5, 6]
            assert sql_ids(client, "SELECT id FROM trips") == [4, 5, 6, 7]
            assert sql_ids(client, "SELECT name FROM people") == ["Ada", "Ada", "Lin", "Lin"]
        for name in before:
            assert_whole(proc, name)
        table = catalog(proc).load_table("default.trips")
        for snapshot in table.metadata.snapshots:
            version = snapshot.summary.additional_properties["lakehouse.version"]
            with proc.client() as client:
                assert sorted(
                    table.scan(snapshot_id=snapshot.snapshot_id).to_arrow().column("id").to_pylist()
                ) == (sql_ids(client, f'SELECT id FROM "trips@{version}"'))
        upgraded = stored_manifests(root)
        proc.restart()
        # Converting again changes nothing: the same snapshots, the same metadata files.
        assert stored_manifests(root) == upgraded
        with proc.client() as client:
            ingest = client.post("/v1/ingest/trips", content=b"id,city,fare\n8,Hilo,3.5\n")
            assert ingest.status_code == 201, ingest.text
            assert ingest.json()["version"] == 5
        assert_whole(proc, "trips")


def legacy_tree(root: Path, versions: int) -> None:
    """A folder as release 0.1 would have left it: `versions` appends to `big`, manifests only."""
    with serving(config_over(root, "make.toml")) as proc, proc.client() as client:
        for index in range(versions):
            answer = client.post("/v1/ingest/big", content=f"id,label\n{index},row {index}\n".encode())
            assert answer.status_code == 201, answer.text
    for path in (root / CATALOG / "big").glob("*.json"):
        manifest = json.loads(path.read_text())
        manifest.pop("snapshot_id", None)
        manifest.pop("metadata_key", None)
        path.write_text(json.dumps(manifest))
    shutil.rmtree(root / "objects" / "_lakehouse" / "datasets" / "big" / "metadata")


@pytest.mark.slow
def test_a_kill_9_halfway_through_the_upgrade_is_finished_by_the_next_start(tmp_path: Path) -> None:
    root = tmp_path / "data"
    legacy_tree(root, 24)
    config = write_config(tmp_path / "lakehouse.toml", {"storage": {"root": str(root)}})
    proc = LakehouseProcess(config)
    try:
        proc._spawn()  # not waiting for health: the upgrade runs before the process serves
        pointers = sorted((root / CATALOG / "big").glob("*.json"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if any(json.loads(p.read_text()).get("metadata_key") for p in pointers):
                break
            time.sleep(0.002)
        proc.kill9()
        done = sum(1 for p in pointers if json.loads(p.read_text()).get("metadata_key"))
        # Oldest first: the upgraded versions are a prefix of the history.
        flags = [bool(json.loads(p.read_text()).get("metadata_key")) for p in pointers]
        assert flags == [True] * done + [False] * (len(flags) - done)
        proc.start()
        versions = assert_whole(proc, "big")
        assert len(versions) == 24
        with proc.client() as client:
            assert sql_ids(client, "SELECT id FROM big") == list(range(24))
            assert sql_ids(client, 'SELECT id FROM "big@7"') == list(range(7))
    finally:
        proc.kill9()


# --- races and crashes ----------------------------------------------------------------------


def append_until_done(
    proc: LakehouseProcess, name: str, ids: list[int], failures: list[BaseException]
) -> None:
    """Append one row per id through pyiceberg, retrying commits another writer won."""
    from pyiceberg.exceptions import CommitFailedException

    try:
        cat = catalog(proc)
        for row_id in ids:
            rows = pa.table({"id": pa.array([row_id], pa.int64()), "label": [f"row {row_id}"]})
            for _ in range(50):
                try:
                    cat.load_table(f"default.{name}").append(rows)
                    break
                except CommitFailedException:
                    continue
            else:
                raise AssertionError(f"append of {row_id} never committed")
    except BaseException as exc:
        failures.append(exc)


@pytest.mark.slow
def test_two_processes_committing_to_one_table_make_gapless_versions_and_lose_nothing(tmp_path: Path) -> None:
    root = tmp_path / "data"
    with (
        serving(config_over(root, "first.toml")) as first,
        serving(config_over(root, "second.toml")) as second,
    ):
        with first.client() as client:
            created = client.post("/v1/ingest/race", content=b"id,label\n0,seed\n")
            assert created.status_code == 201, created.text
        failures: list[BaseException] = []
        writers = [
            threading.Thread(target=append_until_done, args=(first, "race", list(range(1, 21)), failures)),
            threading.Thread(target=append_until_done, args=(second, "race", list(range(21, 41)), failures)),
        ]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(240)
        assert not failures, failures
        versions = assert_whole(second, "race")
        assert len(versions) == 41
        for proc in (first, second):
            with proc.client() as client:
                assert sql_ids(client, "SELECT id FROM race") == list(range(41))


@pytest.mark.slow
def test_a_kill_9_while_commits_run_leaves_every_version_whole(tmp_path: Path) -> None:
    root = tmp_path / "data"
    with serving(config_over(root)) as proc:
        with proc.client() as client:
            assert client.post("/v1/ingest/crash", content=b"id,label\n0,seed\n").status_code == 201
        failures: list[BaseException] = []
        writer = threading.Thread(
            target=append_until_done, args=(proc, "crash", list(range(1, 200)), failures)
        )
        writer.start()
        proc.wait_for_log("POST /iceberg/v1/namespaces/default/tables/crash 200", timeout=60)
        deadline = time.monotonic() + 60
        while proc.log().count("POST /iceberg/v1/namespaces/default/tables/crash 200") < 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        proc.kill9()
        writer.join(60)
        assert failures, "the writer should have seen the server go away"
        proc.start()
        versions = assert_whole(proc, "crash")
        with proc.client() as client:
            ids = sql_ids(client, "SELECT id FROM crash")
        # Every acknowledged append is there, in order, and nothing else.
        assert ids == list(range(len(ids))) and len(ids) == versions[-1]["row_count"]
        # And the table takes commits again.
        append_until_done(proc, "crash", [1000], failures := [])
        assert not failures
        assert len(assert_whole(proc, "crash")) == len(versions) + 1
