"""HTTP conventions through real `lakehouse serve` processes: ranged reads by DuckDB, gzip, CORS,
`/metrics` and an offline `/docs`, in embedded and split mode."""

from __future__ import annotations

import gzip
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prometheus_client.parser import text_string_to_metric_families

from lakehouse.auth import Scope
from lakehouse.query.sandbox import httpfs_path
from tests.conftest import StartLakehouse
from tests.e2e.test_auth_http import mint
from tests.fakes.ollama import FakeOllama, run_fake_ollama
from tests.support.procs import LakehouseProcess, serving, write_config

pytestmark = pytest.mark.e2e

OBJECTS = "/v1/storage/objects"
ALLOWED = "http://app.example"
OBJECT_ROUTE = "/v1/storage/objects/{key}"


@pytest.fixture(scope="module")
def ollama() -> Iterator[FakeOllama]:
    """A fake Ollama for the streamed chat checks."""
    with run_fake_ollama() as fake:
        yield fake


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, ollama: FakeOllama) -> Iterator[LakehouseProcess]:
    """One all-in-one process allowing one CORS origin."""
    root = tmp_path_factory.mktemp("conventions")
    sections = {"storage": {"root": str(root / "data")}, "chatd": {"ollama_url": ollama.url}}
    config = write_config(root / "lakehouse.toml", sections)
    with config.open("a") as fh:  # a list, which write_config does not write
        fh.write(f'\n[http]\ncors_origins = ["{ALLOWED}"]\n')
    with serving(config) as proc:
        yield proc


def metric_samples(client: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of `/metrics`, parsed by prometheus-client's own parser, by (name, labels)."""
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        assert family.name.startswith("lakehouse_"), family.name
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def sample(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    """One sample's value (0 when it has not appeared yet)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def parquet_bytes(rows: int = 200_000) -> bytes:
    """A Parquet file of three columns in many row groups, so a filtered projection reads little of it."""
    table = pa.table(
        {
            "id": pa.array(range(rows), pa.int64()),
            "bucket": pa.array([i // 20_000 for i in range(rows)], pa.int64()),
            "payload": pa.array([f"row-{i:08d}-" + "x" * 40 for i in range(rows)]),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=20_000, compression="none")
    return sink.getvalue()


def duckdb_reads(url: str) -> tuple[int, int]:
    """DuckDB's httpfs reading rows of one row group at `url`: (rows, total payload length)."""
    con = duckdb.connect()
    try:
        con.execute(f"LOAD '{httpfs_path()}'")
        con.execute("SET enable_http_metadata_cache = false")
        got = con.execute(
            "SELECT count(*), sum(length(payload)) FROM read_parquet(?) WHERE id BETWEEN 61000 AND 61099",
            [url],
        ).fetchone()
        assert got is not None
        return int(got[0]), int(got[1])
    finally:
        con.close()


@pytest.fixture(params=["local", "s3"])
def backend_server(request: pytest.FixtureRequest, start_lakehouse: StartLakehouse) -> LakehouseProcess:
    """An all-in-one process over each backend."""
    if request.param == "local":
        return start_lakehouse()
    s3_storage: dict[str, Any] = request.getfixturevalue("s3_storage")
    return start_lakehouse(config={"storage": s3_storage}, env=request.getfixturevalue("s3_env"))


def test_duckdb_httpfs_reads_a_parquet_object_with_ranges_not_whole(backend_server: LakehouseProcess) -> None:
    data = parquet_bytes()
    with backend_server.client() as client:
        assert client.put(f"{OBJECTS}/lake/t.parquet", content=data).status_code == 201
        before = metric_samples(client)
    assert duckdb_reads(f"{backend_server.url}{OBJECTS}/lake/t.parquet") == (100, 100 * 53)
    with backend_server.client() as client:
        after = metric_samples(client)
    ranged = sample(after, "lakehouse_http_requests_total", method="GET", route=OBJECT_ROUTE, status="206")
    whole = sample(after, "lakehouse_http_requests_total", method="GET", route=OBJECT_ROUTE, status="200")
    assert (
        ranged
        - sample(before, "lakehouse_http_requests_total", method="GET", route=OBJECT_ROUTE, status="206")
        >= 2
    )
    assert whole == sample(
        before, "lakehouse_http_requests_total", method="GET", route=OBJECT_ROUTE, status="200"
    )
    sent = sample(after, "lakehouse_storage_bytes_sent_total") - sample(
        before, "lakehouse_storage_bytes_sent_total"
    )
    assert 0 < sent < len(data) / 3, (sent, len(data))
    # The server's own request log says the same: only 206 answers for the object's GETs.
    log = backend_server.log()
    gets = re.findall(rf"GET {OBJECTS}/lake/t\.parquet (\d+)", log)
    assert gets and set(gets) == {"206"}, gets


def test_json_over_1_kib_is_gzipped_small_and_binary_answers_are_not(server: LakehouseProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for i in range(40):
            client.put(f"{OBJECTS}/gz/{i:03d}-{'k' * 40}", content=b"{" + b'"a": 1, ' * 300 + b'"b": 2}')
        listing = client.get(OBJECTS, params={"prefix": "gz/"}, headers={"Accept-Encoding": "gzip"})
        assert listing.headers["content-encoding"] == "gzip"
        assert int(listing.headers["content-length"]) < len(listing.content)  # httpx decoded it
        assert len(listing.json()["objects"]) == 40
        plain = client.get(OBJECTS, params={"prefix": "gz/"}, headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers
        assert plain.json() == listing.json()
        small = client.get("/health", headers={"Accept-Encoding": "gzip"})
        assert "content-encoding" not in small.headers
        obj = client.get(f"{OBJECTS}/gz/000-{'k' * 40}", headers={"Accept-Encoding": "gzip"})
        assert "content-encoding" not in obj.headers
        assert obj.headers["content-length"] == str(len(obj.content)) and len(obj.content) > 1024
        arrow = client.post(
            "/v1/sql",
            json={"sql": "SELECT i, repeat('x', 50) AS s FROM range(1000) t(i)"},
            headers={"Accept": "application/vnd.apache.arrow.stream", "Accept-Encoding": "gzip"},
        )
        assert arrow.status_code == 200, arrow.text
        assert arrow.headers["content-type"].startswith("application/vnd.apache.arrow")
        assert "content-encoding" not in arrow.headers
        assert pa.ipc.open_stream(arrow.content).read_all().num_rows == 1000


def test_raw_gzip_bytes_are_valid_gzip(server: LakehouseProcess) -> None:
    with (
        httpx.Client(base_url=server.url, timeout=30) as client,
        client.stream("GET", "/openapi.json", headers={"Accept-Encoding": "gzip"}) as response,
    ):
        raw = b"".join(response.iter_raw())
    assert response.headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(raw))["openapi"].startswith("3.")


def test_streamed_chat_is_not_gzipped_and_arrives_in_pieces(
    server: LakehouseProcess, ollama: FakeOllama
) -> None:
    ollama.reset()
    ollama.reply = "one two three four"
    ollama.chunk_delay = 0.1
    body = {"model": "qwen3:4b", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        with client.stream(
            "POST", "/v1/chat/completions", json=body, headers={"Accept-Encoding": "gzip"}
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert "content-encoding" not in response.headers
            reads = [chunk for chunk in response.iter_raw() if chunk]
        assert len(reads) >= 3  # one network read per event, not one buffered answer
        events = b"".join(reads).decode()
        assert events.rstrip().endswith("data: [DONE]")
        with client.stream("POST", "/v1/chat", json=body, headers={"Accept-Encoding": "gzip"}) as ndjson:
            assert "content-encoding" not in ndjson.headers
            assert len([c for c in ndjson.iter_raw() if c]) >= 3


def test_cors_preflight_for_an_allowed_origin_and_none_for_others(server: LakehouseProcess) -> None:
    preflight = {
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "authorization, content-type, x-request-id",
    }
    with httpx.Client(base_url=server.url, timeout=30) as client:
        ok = client.options(f"{OBJECTS}/a/b", headers={"Origin": ALLOWED, **preflight})
        assert ok.status_code == 200, ok.text
        assert ok.headers["access-control-allow-origin"] == ALLOWED
        assert "PUT" in ok.headers["access-control-allow-methods"]
        allowed_headers = ok.headers["access-control-allow-headers"].lower()
        assert {"authorization", "content-type", "x-request-id"} <= {
            h.strip() for h in allowed_headers.split(",")
        }
        other = client.options(f"{OBJECTS}/a/b", headers={"Origin": "http://evil.example", **preflight})
        assert "access-control-allow-origin" not in other.headers
        assert other.status_code >= 400
        simple = client.get("/health", headers={"Origin": ALLOWED})
        assert simple.headers["access-control-allow-origin"] == ALLOWED
        exposed = {h.strip().lower() for h in simple.headers["access-control-expose-headers"].split(",")}
        assert {"x-request-id", "etag", "content-range"} <= exposed
        assert (
            "access-control-allow-origin"
            not in client.get("/health", headers={"Origin": "http://evil.example"}).headers
        )


def test_no_cors_headers_without_configured_origins(start_lakehouse: StartLakehouse) -> None:
    proc = start_lakehouse()
    with proc.client() as client:
        got = client.get("/health", headers={"Origin": ALLOWED})
        assert not any(h.startswith("access-control-") for h in got.headers)
        preflight = client.options(
            "/health", headers={"Origin": ALLOWED, "Access-Control-Request-Method": "GET"}
        )
        assert "access-control-allow-origin" not in preflight.headers


def test_metrics_count_requests_by_route_template(server: LakehouseProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        before = metric_samples(client)
        for i in range(3):
            client.put(f"{OBJECTS}/m/{i}", content=b"x")
        client.get(f"{OBJECTS}/m/absent")
        client.get("/no/such/route/1")
        client.get("/no/such/route/2")
        client.post("/v1/sql", json={"sql": "SELECT 1"})
        after = metric_samples(client)
    put = {"method": "PUT", "route": OBJECT_ROUTE, "status": "201"}
    assert (
        sample(after, "lakehouse_http_requests_total", **put)
        - sample(before, "lakehouse_http_requests_total", **put)
        == 3
    )
    missing = {"method": "GET", "route": OBJECT_ROUTE, "status": "404"}
    assert sample(after, "lakehouse_http_requests_total", **missing) >= 1
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert (
        sample(after, "lakehouse_http_requests_total", **unmatched)
        - sample(before, "lakehouse_http_requests_total", **unmatched)
        == 2
    )
    routes = {dict(labels).get("route") for name, labels in after if name == "lakehouse_http_requests_total"}
    assert not any(r and "/m/" in r for r in routes), routes  # templates, never raw paths
    assert sample(after, "lakehouse_errors_total", code="not_found") >= 3
    assert sample(after, "lakehouse_sql_queries_total", status="200") >= 1
    assert (
        sample(after, "lakehouse_http_request_duration_seconds_count", method="PUT", route=OBJECT_ROUTE) >= 3
    )
    assert ("lakehouse_sql_timeouts_total", frozenset()) in after


def test_metrics_need_a_token_when_auth_is_on(start_lakehouse: StartLakehouse, tmp_path: Path) -> None:
    proc = start_lakehouse(config={"auth": {"required": True}})
    token = mint(tmp_path / "data", "metrics-reader", Scope.READ)
    with proc.client() as client:
        assert client.get("/metrics").status_code == 401
        client.get("/v1/storage/objects", headers={"Authorization": "Bearer lh_" + "x" * 43})
        samples = metric_samples(
            httpx.Client(base_url=proc.url, headers={"Authorization": f"Bearer {token}"})
        )
    assert sample(samples, "lakehouse_token_auth_failures_total", code="unauthorized") >= 2
    # Refused before routing, yet labelled by the route template it was aimed at.
    refused = {"method": "GET", "route": "/v1/storage/objects", "status": "401"}
    assert sample(samples, "lakehouse_http_requests_total", **refused) == 1


def test_docs_load_their_assets_from_the_process(server: LakehouseProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        assert not re.search(r"https?://", page.text), "the docs page names an external URL"
        assets = re.findall(r"""(?:src|href)=['"]([^'"]+)['"]""", page.text)
        assert any(a.endswith(".js") for a in assets) and any(a.endswith(".css") for a in assets)
        for asset in assets:
            got = client.get(asset)
            assert got.status_code == 200, asset
            assert len(got.content) > 100
        assert client.get("/docs/nope.js").status_code == 404


def test_split_mode_gateway_has_metrics_docs_and_passes_gzip_through(start_lakehouse: StartLakehouse) -> None:
    storaged = start_lakehouse(service="storaged")
    gateway = start_lakehouse(
        config={"gateway": {"storaged_url": storaged.url}}, service="gateway", name="gateway.toml"
    )
    with httpx.Client(base_url=gateway.url, timeout=30) as client:
        for i in range(40):
            client.put(f"{OBJECTS}/split/{i:03d}-{'k' * 40}", content=b"x")
        with client.stream("GET", OBJECTS, headers={"Accept-Encoding": "gzip"}) as response:
            raw = b"".join(response.iter_raw())
        assert response.headers["content-encoding"] == "gzip"  # once: the upstream's, passed through
        assert len(json.loads(gzip.decompress(raw))["objects"]) == 40
        data = bytes(range(256)) * 8
        client.put(f"{OBJECTS}/split/r", content=data)
        ranged = client.get(f"{OBJECTS}/split/r", headers={"Range": "bytes=-10"})
        assert ranged.status_code == 206 and ranged.content == data[-10:]
        gateway_metrics = metric_samples(client)
        assert (
            sample(
                gateway_metrics,
                "lakehouse_http_requests_total",
                method="PUT",
                route=OBJECT_ROUTE,
                status="201",
            )
            == 41
        )
        page = client.get("/docs")
        assert page.status_code == 200 and not re.search(r"https?://", page.text)
        assert client.get("/docs/swagger-ui-bundle.js").status_code == 200
    with httpx.Client(base_url=storaged.url, timeout=30) as client:
        service_metrics = metric_samples(client)
    assert (
        sample(
            service_metrics, "lakehouse_http_requests_total", method="PUT", route=OBJECT_ROUTE, status="201"
        )
        == 41
    )
