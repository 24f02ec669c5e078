"""A hostile client's second look at auth, storage and the catalog, against real processes.

Each test here is an attack that once worked (or is worth keeping as a
regression test):

- a read token deleting vector items whose id holds a `/` (the route takes the
  rest of the path, the scope rule only one segment), embedded and split;
- storage listings naming token records in `next`, on the local and S3 backends;
- register accepting token records and manifests as a dataset's objects (an
  existence oracle for token names, and their bytes behind a dataset);
- a version over another dataset's file breaking when that dataset is deleted;
- clients that start big downloads and never read holding every storage slot.
"""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from lakehouse.auth.scopes import rule_for
from lakehouse.services.table import SERVICES
from tests.support.cluster import MODES, LakehouseCluster
from tests.support.procs import LAKEHOUSE, LakehouseProcess, serving, write_config
from tests.support.rawhttp import closed_by_server, connect, exchange, request_bytes

pytestmark = pytest.mark.e2e

AUTH_ON = {"auth": {"required": True}}


def create_token(config: Path, name: str, scope: str) -> str:
    """`lakehouse token create NAME --scope SCOPE`: the token is the last line printed."""
    done = subprocess.run(
        [LAKEHOUSE, "token", "create", name, "--scope", scope, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # On S3 the process sometimes aborts (SIGABRT) while exiting, after the token is stored
    # and printed (obstore's runtime at interpreter exit): not what these tests are about.
    assert done.returncode in (0, -signal.SIGABRT), done
    token = done.stdout.strip().splitlines()[-1].strip()
    assert token.startswith("lh_"), done
    return token


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for `token`."""
    return {"Authorization": f"Bearer {token}"}


def _register(c: httpx.Client, name: str, key: str) -> httpx.Response:
    return c.post(
        "/v1/catalog/register",
        json={
            "name": name,
            "schema": [{"name": "v", "type": "INTEGER"}],
            "objects": [{"key": key, "rows": 1}],
            "row_count": 1,
        },
    )


# --- vector items whose id holds a slash ------------------------------------------------------


@pytest.fixture(scope="module", params=MODES)
def vectors_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """A lakehouse with auth on (only vectord behind the gateway in split mode), and its tokens."""
    cluster = LakehouseCluster(
        request.param, tmp_path_factory.mktemp(f"items-{request.param}"), AUTH_ON, services=["vectord"]
    )
    try:
        cluster.start_all()
        tokens = {s: create_token(cluster.config_path, f"t-{s}", s) for s in ("read", "write")}
        yield cluster, tokens
    finally:
        cluster.stop_all()


@pytest.mark.parametrize("target", ["a/b", "a%2Fb", "a/b/"])
def test_a_read_token_cannot_delete_an_item_whose_id_holds_a_slash(vectors_cluster: Any, target: str) -> None:
    cluster, tokens = vectors_cluster
    item = target.replace("%2F", "/")
    with cluster.client(headers=bearer(tokens["write"])) as c:
        index = f"docs{len(target)}"  # one index per case
        made = c.post("/v1/vectors/index", json={"name": index, "dim": 2})
        assert made.status_code == 201, made.text
        added = c.post(f"/v1/vectors/index/{index}/add", json={"items": [{"id": item, "vector": [1.0, 0.0]}]})
        assert added.status_code == 200, added.text
    # Sent as is: no client normalisation of the target.
    head = request_bytes("DELETE", f"/v1/vectors/index/{index}/items/{target}", bearer(tokens["read"]))
    answer = exchange(cluster.url, head)
    assert answer.status == 403 and answer.code() == "insufficient_scope", answer
    with cluster.client(headers=bearer(tokens["read"])) as c:
        hits = c.post(f"/v1/vectors/index/{index}/search", json={"vector": [1.0, 0.0], "k": 5}).json()["hits"]
    assert item in [hit["id"] for hit in hits]
    with cluster.client(headers=bearer(tokens["write"])) as c:
        assert c.delete(f"/v1/vectors/index/{index}/items/{item}").status_code == 204


def _spanning_routes() -> Iterator[tuple[str, str, dict[str, str]]]:
    """(method, path format, {param: "a/b"}) of every route with a parameter that may span segments."""

    def walk(routes: list[Any]) -> Iterator[Route]:
        for route in routes:
            if isinstance(route, Route):
                yield route
            yield from walk(getattr(route, "routes", []))

    for spec in SERVICES.values():
        for route in walk(list(spec.router().routes)):
            spanning = {
                name: "a/b"
                for name, convertor in route.param_convertors.items()
                if re.fullmatch(convertor.regex, "a/b")
            }
            for method in route.methods or () if spanning else ():
                yield method, route.path_format, spanning


def test_every_parameter_that_spans_segments_is_ruled_as_such() -> None:
    """A route taking the rest of the path needs the same scope whatever that rest holds."""
    found = list(_spanning_routes())
    assert ("DELETE", "/v1/vectors/index/{name}/items/{item_id}", {"item_id": "a/b"}) in found
    assert ("PUT", "/v1/storage/objects/{key}", {"key": "a/b"}) in found
    for method, path_format, spanning in found:
        one = re.sub(r"\{[^}]+\}", "x", path_format)
        many = path_format
        for name, value in spanning.items():
            many = many.replace("{" + name + "}", value)
        many = re.sub(r"\{[^}]+\}", "x", many)
        ruled = rule_for(method, one)
        assert ruled is not None, f"{method} {path_format} has no rule"
        for sample in (many, many + "/", many.replace("a/b", "a/b/c/d")):
            assert rule_for(method, sample) == ruled, f"{method} {sample} is ruled unlike {method} {one}"


# --- listings never name a token record -------------------------------------------------------


@pytest.fixture(params=["local", "s3"])
def storage_sections(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """`[storage]` for the local backend or a fresh moto bucket."""
    if request.param == "s3":
        return dict(request.getfixturevalue("s3_storage"))
    return {"root": str(tmp_path / "data")}


@pytest.fixture
def lakehouse(storage_sections: dict[str, Any], tmp_path: Path) -> Iterator[tuple[LakehouseProcess, Path]]:
    """One embedded `lakehouse serve` with auth on over the given storage."""
    config = write_config(tmp_path / "lakehouse.toml", {"storage": storage_sections, **AUTH_ON})
    with serving(config, timeout=90) as proc:
        yield proc, config


def _pages(c: httpx.Client, prefix: str, limit: int, after: str | None = None) -> Iterator[dict[str, Any]]:
    while True:
        params: dict[str, Any] = {"prefix": prefix, "limit": limit}
        if after is not None:
            params["after"] = after
        answer = c.get("/v1/storage/objects", params=params)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        yield page
        after = page["next"]
        if after is None:
            return


def test_listings_never_name_a_token_record(lakehouse: tuple[LakehouseProcess, Path]) -> None:
    proc, config = lakehouse
    names = ["alpha-admin", "beta-etl", "gamma-ci"]
    tokens = {name: create_token(config, name, "admin") for name in names}
    admin = tokens["alpha-admin"]
    with proc.client(headers=bearer(admin)) as c:
        for key in ("_a.txt", "a.txt", "z.txt"):
            assert c.put(f"/v1/storage/objects/{key}", content=b"x").status_code == 201
        # Manifests and pinned files beside the token records under _lakehouse/.
        body = {
            "name": "d",
            "schema": [{"name": "v", "type": "INTEGER"}],
            "objects": [{"key": "a.txt", "rows": 1}],
        }
        assert c.post("/v1/catalog/register", json={**body, "row_count": 1}).status_code == 201
        everything = c.get("/v1/storage/objects", params={"limit": 10000}).json()
        keys = [o["key"] for o in everything["objects"]]
        assert keys and not any(k.startswith("_lakehouse/auth") for k in keys)
        assert any(k.startswith("_lakehouse/catalog/") for k in keys)
        for prefix, after in [("", None), ("_lakehouse/", None), ("_lakehouse/", "_lakehouse/auth/tokens/a")]:
            for limit in (1, 2):
                pages = list(_pages(c, prefix, limit, after))
                seen = [o["key"] for page in pages for o in page["objects"]]
                wanted = [k for k in keys if k.startswith(prefix) and (after is None or k > after)]
                assert seen == wanted, (prefix, limit, after)
                said = json.dumps(pages)
                assert "_lakehouse/auth" not in said and not any(name in said for name in names)
        for prefix in ("_lakehouse/auth/", "_lakehouse/auth/tokens/", "_lakehouse/auth/tokens/beta"):
            page = c.get("/v1/storage/objects", params={"prefix": prefix, "limit": 1}).json()
            assert page == {"objects": [], "truncated": False, "next": None}


# --- register over the lakehouse's own keys ---------------------------------------------------


def test_register_refuses_keys_the_lakehouse_keeps_that_are_not_dataset_files(
    lakehouse: tuple[LakehouseProcess, Path],
) -> None:
    proc, config = lakehouse
    writer = create_token(config, "writer", "write")
    with proc.client(headers=bearer(writer)) as c:
        assert c.put("/v1/storage/objects/u.bin", content=b"1").status_code == 201
        assert _register(c, "real", "u.bin").status_code == 201
        answers = {
            key: _register(c, "grab", key)
            for key in (
                "_lakehouse/auth/tokens/writer.json",  # exists
                "_lakehouse/auth/tokens/nobody.json",  # does not
                "_lakehouse/catalog/real/0000000001.json",
                "_lakehouse",
            )
        }
        for key, answer in answers.items():
            assert answer.status_code == 403, (key, answer.text)
            assert answer.json()["error"]["code"] == "reserved_key"
            assert "size" not in answer.text and "missing" not in answer.text
        # Whether a token record exists is not told apart from whether it does not.
        texts = [answers[k].text.replace(k, "K") for k in list(answers)[:2]]
        assert texts[0] == texts[1]
        assert c.get("/v1/catalog/datasets/grab").status_code == 404


def test_a_version_over_another_datasets_file_survives_deleting_that_dataset(
    lakehouse: tuple[LakehouseProcess, Path],
) -> None:
    proc, config = lakehouse
    writer = create_token(config, "writer", "write")
    admin = create_token(config, "boss", "admin")
    with proc.client(headers=bearer(writer)) as c:
        assert c.put("/v1/storage/objects/u.bin", content=b"source bytes").status_code == 201
        source = _register(c, "source", "u.bin").json()
        theirs = source["objects"][0]["key"]
        assert theirs.startswith("_lakehouse/datasets/source/")
        borrowed = _register(c, "borrower", theirs)
        assert borrowed.status_code == 201, borrowed.text
        mine = borrowed.json()["objects"][0]["key"]
        assert mine.startswith("_lakehouse/datasets/borrower/")
    with proc.client(headers=bearer(admin)) as c:
        assert c.delete("/v1/catalog/datasets/source").status_code == 204
        assert c.get(f"/v1/storage/objects/{theirs}").status_code == 404
        assert c.get(f"/v1/storage/objects/{mine}").content == b"source bytes"
        assert c.get("/v1/catalog/datasets/borrower").json()["objects"][0]["key"] == mine


# --- downloads that are never read ------------------------------------------------------------


def test_clients_that_stop_reading_downloads_do_not_hold_the_storage_cap(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "lakehouse.toml",
        {
            "storage": {"root": str(tmp_path / "data"), "max_concurrent": 2},
            "http": {"idle_timeout_secs": 2},
        },
    )
    stalled: list[socket.socket] = []
    with serving(config, timeout=90) as proc, proc.client() as c:
        try:
            big = b"\x5a" * (48 * 1024 * 1024)
            assert c.put("/v1/storage/objects/big.bin", content=big).status_code == 201
            assert c.put("/v1/storage/objects/small.txt", content=b"ok").status_code == 201
            for _ in range(2):
                sock = connect(proc.url)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                sock.sendall(request_bytes("GET", "/v1/storage/objects/big.bin"))
                # Its answer has begun (so it holds a slot); then it reads nothing more.
                assert sock.recv(16).startswith(b"HTTP/1.1 200")
                stalled.append(sock)
            # Both slots are taken by clients that read nothing...
            assert c.get("/v1/storage/objects/small.txt").status_code == 503
            # ...and given back once the stall passes idle_timeout_secs.
            deadline = time.monotonic() + 30
            while (answer := c.get("/v1/storage/objects/small.txt")).status_code == 503:
                assert time.monotonic() < deadline, "stalled downloads still hold every storage slot"
                time.sleep(0.2)
            assert answer.status_code == 200 and answer.content == b"ok"
            assert all(closed_by_server(sock, within=15) for sock in stalled), proc.log()[-3000:]
            assert c.get("/health").status_code == 200
        finally:
            for sock in stalled:
                sock.close()
