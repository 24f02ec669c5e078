"""`lakehouse.Client` over every route family against a real `lakehouse serve`, errors typed."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pytest

from lakehouse import Client
from lakehouse.auth import Scope
from lakehouse.errors import (
    AlreadyExists,
    DimMismatch,
    ForbiddenStatement,
    InsufficientScope,
    InvalidName,
    LakehouseError,
    NotFound,
    ProviderNotRegistered,
    ReservedKey,
    SchemaDrift,
    SqlError,
    Unauthorized,
    Unavailable,
)
from tests.fakes.ollama import FakeOllama
from tests.support.procs import closed_url, serving, write_config
from tests.support.tokens import mint

pytestmark = pytest.mark.e2e

PEOPLE = b"id,name,score,joined\n1,Ada,1.5,2024-01-02\n2,Bo,2.5,2024-03-04\n"


def test_ingest_a_path_bytes_and_a_file_then_sql_as_an_arrow_table(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_bytes(PEOPLE)
    first = client.ingest("people", path)
    assert first.created and first.version == 1 and first.rows == 2
    assert [c.name for c in first.columns] == ["id", "name", "score", "joined"]
    again = client.ingest("people", path)
    assert not again.created and again.version == 1
    second = client.ingest("people", b"id,name,score,joined\n3,Cy,3.5,2024-05-06\n")
    assert second.created and second.version == 2 and second.row_count == 3
    third = client.ingest("people", io.BytesIO(b"id,name,score,joined\n4,Di,4.5,2024-07-08\n"))
    assert third.version == 3

    table = client.sql("SELECT * FROM people ORDER BY id")
    assert isinstance(table, pa.Table)
    assert table.num_rows == 4
    assert table.schema.field("id").type == pa.int64()
    assert table.schema.field("name").type == pa.string()
    assert table.schema.field("score").type == pa.float64()
    assert table.schema.field("joined").type == pa.date32()
    assert table.column("name").to_pylist() == ["Ada", "Bo", "Cy", "Di"]
    assert client.sql('SELECT * FROM "people@1"').num_rows == 2
    assert client.sql("SELECT * FROM people", max_rows=1).num_rows == 1

    answer = client.sql_json("SELECT id FROM people ORDER BY id", max_rows=2)
    assert answer.rows == [[1], [2]] and answer.truncated is True


def test_catalog_listing_versions_manifests_and_register(client: Client) -> None:
    client.ingest("pets", b"name,legs\ncat,4\n")
    client.ingest("pets", b"name,legs\nhen,2\n")
    assert "pets" in [d.name for d in client.datasets()]
    assert [v.version for v in client.versions("pets")] == [1, 2]
    manifest = client.dataset("pets", version=1)
    assert manifest.version == 1 and manifest.row_count == 1
    assert [(c.name, c.type) for c in manifest.columns] == [("name", "VARCHAR"), ("legs", "BIGINT")]
    copied = client.register(
        "pets_copy",
        [c.model_dump() for c in manifest.columns],
        [{"key": o.key, "rows": o.rows} for o in manifest.objects],
        manifest.row_count,
    )
    assert copied.name == "pets_copy" and copied.version == 1
    client.delete_dataset("pets_copy")
    with pytest.raises(NotFound):
        client.dataset("pets_copy")


def test_errors_come_back_as_their_classes_with_code_and_message(client: Client) -> None:
    client.ingest("drifty", b"a,b\n1,2\n")
    with pytest.raises(SqlError) as sql_error:
        client.sql("SELECT no_such_column FROM drifty")
    assert sql_error.value.status == 400 and sql_error.value.code == "sql_error"
    assert "no_such_column" in sql_error.value.message
    with pytest.raises(SqlError):
        client.sql_json("SELEC 1")
    with pytest.raises(ForbiddenStatement) as forbidden:
        client.sql("CREATE TABLE t (a INT)")
    assert forbidden.value.code == "forbidden_statement"
    with pytest.raises(NotFound) as missing:
        client.dataset("nobody")
    assert missing.value.status == 404 and "nobody" in missing.value.message
    with pytest.raises(SchemaDrift) as drift:
        client.ingest("drifty", b"x,y\n1,2\n")
    assert drift.value.status == 409
    assert {c["name"] for c in drift.value.detail["added"]} == {"x", "y"}
    with pytest.raises(InvalidName):
        client.ingest("Bad-Name", b"a\n1\n")
    with pytest.raises(ReservedKey):
        client.put("_lakehouse/auth/tokens/x", b"no")
    with pytest.raises(ProviderNotRegistered):
        client.chat("kimi/k2", [{"role": "user", "content": "hi"}])
    # Every one is a LakehouseError, and the names on a path cannot reach another route.
    with pytest.raises(LakehouseError):
        client.dataset("../storage/objects")


def test_storage_put_get_head_list_delete(client: Client, tmp_path: Path) -> None:
    stored = client.put("notes/a.txt", b"hello")
    assert stored.size == 5 and stored.etag
    big = tmp_path / "b.bin"
    big.write_bytes(b"x" * 3_000_000)
    assert client.put("notes/b.bin", big).size == 3_000_000
    assert client.get("notes/a.txt") == b"hello"
    assert client.head("notes/a.txt")["content-length"] == "5"
    listed = client.list_objects("notes/")
    assert [o.key for o in listed.objects] == ["notes/a.txt", "notes/b.bin"]
    client.delete("notes/a.txt")
    with pytest.raises(NotFound):
        client.get("notes/a.txt")


def test_vectors_embeddings_chat_and_providers(client: Client, ollama: FakeOllama) -> None:
    info = client.create_index("docs", dim=3)
    assert info.name == "docs" and info.dim == 3 and info.count == 0
    with pytest.raises(AlreadyExists):
        client.create_index("docs", dim=3)
    added = client.add(
        "docs",
        [
            {"id": "a", "vector": [1.0, 0.0, 0.0], "metadata": {"kind": "fruit"}},
            {"id": "b", "vector": [0.0, 1.0, 0.0], "metadata": {"kind": "stone"}},
        ],
    )
    assert added.added == 2 and added.count == 2
    with pytest.raises(DimMismatch):
        client.add("docs", [{"id": "c", "vector": [1.0]}])
    assert [h.id for h in client.search("docs", vector=[0.9, 0.1, 0.0], k=1)] == ["a"]
    hits = client.search("docs", vector=[0.9, 0.1, 0.0], k=1, filter={"kind": "stone"})
    assert [h.id for h in hits] == ["b"] and hits[0].metadata == {"kind": "stone"}
    assert "docs" in [i.name for i in client.indexes()]
    assert client.index("docs").count == 2
    client.delete_item("docs", "a")
    assert client.index("docs").count == 1
    client.delete_index("docs")
    with pytest.raises(NotFound):
        client.index("docs")

    embedded = client.embed(["apples", "pears"])
    assert embedded.dim == 4 and len(embedded.vectors) == 2
    answer = client.chat("qwen3:4b", [{"role": "user", "content": "say hi"}])
    assert answer.provider == "ollama" and answer.content
    pieces = list(client.chat_stream("qwen3:4b", [{"role": "user", "content": "say hi"}]))
    assert pieces[-1]["done"] is True and pieces[-1]["content"] == answer.content
    providers = client.providers()
    assert providers.default == "ollama" and [p.name for p in providers.providers] == ["ollama"]
    assert client.health().service == "gateway"


def test_a_server_that_is_down_raises_unavailable_with_the_start_hint() -> None:
    url = closed_url()
    with Client(url) as client, pytest.raises(Unavailable) as down:
        client.datasets()
    assert url in down.value.message
    assert "start it with `lakehouse serve`" in down.value.message
    assert down.value.status == 503


def test_url_and_token_default_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAKEHOUSE_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("LAKEHOUSE_TOKEN", "lh_from_env")
    with Client() as client:
        assert client.url == "http://127.0.0.1:9"
        assert client._http.headers["authorization"] == "Bearer lh_from_env"


def test_tokens_with_auth_on(tmp_path: Path) -> None:
    root = tmp_path / "data"
    config = write_config(
        tmp_path / "lakehouse.toml", {"storage": {"root": str(root)}, "auth": {"required": True}}
    )
    reader = mint(root, "reader", Scope.READ)
    writer = mint(root, "writer", Scope.WRITE)
    with serving(config) as proc:
        with Client(proc.url, token="") as anonymous, pytest.raises(Unauthorized) as refused:
            anonymous.datasets()
        assert refused.value.status == 401 and refused.value.code == "unauthorized"
        with Client(proc.url, token=reader) as client:
            assert client.datasets() == []
            with pytest.raises(InsufficientScope) as scoped:
                client.ingest("nope", b"a\n1\n")
            assert scoped.value.status == 403
        with Client(proc.url, token=writer) as client:
            assert client.ingest("ok", b"a\n1\n").created
            assert client.sql("SELECT a FROM ok").column("a").to_pylist() == [1]
