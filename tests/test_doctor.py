"""`lakehouse doctor` run as a real command against configs that pass and that fail."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.fakes.server import serve_in_thread
from tests.support.procs import LAKEHOUSE, closed_url, serving, write_config

SERVICE_SECTIONS = ("gateway", "storaged", "catalogd", "ingestd", "queryd", "vectord", "embedd", "chatd")


def base_sections(tmp_path: Path) -> dict[str, dict[str, Any]]:
    """A config that passes every required check: local folder, free ports, no real keys."""
    sections: dict[str, dict[str, Any]] = {
        # Port 0 is always free to bind: the port check passes without picking a port.
        name: {"bind": "127.0.0.1:0"}
        for name in SERVICE_SECTIONS
    }
    sections["storage"] = {"root": str(tmp_path / "data")}
    sections["embedd"]["ollama_url"] = closed_url()
    for provider in ("ollama_cloud", "openrouter", "opencode", "kimi"):
        sections["chatd"][f"{provider}_key_env"] = f"LH_DOCTOR_TEST_{provider.upper()}_KEY"
        sections["chatd"][f"{provider}_key_file"] = str(tmp_path / f"{provider}.env")
    return sections


def run_doctor(
    tmp_path: Path, sections: dict[str, dict[str, Any]], env: dict[str, str] | None = None, *args: str
) -> subprocess.CompletedProcess[str]:
    """`lakehouse doctor --config <file> [args]` as a subprocess."""
    config = write_config(tmp_path / "lakehouse.toml", sections)
    return subprocess.run(
        [LAKEHOUSE, "doctor", "--config", str(config), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=tmp_path,
        timeout=60,
    )


def doctor_json(
    tmp_path: Path, sections: dict[str, dict[str, Any]], env: dict[str, str] | None = None
) -> tuple[int, dict[str, dict[str, Any]], dict[str, Any]]:
    """Exit code, the checks by name, and the whole JSON report."""
    done = run_doctor(tmp_path, sections, env, "--json")
    report = json.loads(done.stdout)
    return done.returncode, {c["name"]: c for c in report["checks"]}, report


@pytest.fixture
def fake_ollama_tags() -> Iterator[str]:
    """A tiny Ollama stand-in answering `/api/tags` with one pulled model."""

    async def tags(request: Request) -> JSONResponse:
        return JSONResponse({"models": [{"name": "nomic-embed-text:latest", "size": 274302450}]})

    with serve_in_thread(Starlette(routes=[Route("/api/tags", tags)])) as server:
        yield server.url


def test_a_ready_machine_passes_and_keys_are_never_printed(tmp_path: Path, fake_ollama_tags: str) -> None:
    sections = base_sections(tmp_path)
    sections["embedd"]["ollama_url"] = fake_ollama_tags
    (tmp_path / "kimi.env").write_text("LH_DOCTOR_TEST_KIMI_KEY=kimi-from-file-456\n")
    env = {"LH_DOCTOR_TEST_OPENROUTER_KEY": "sk-or-secret-123"}
    done = run_doctor(tmp_path, sections, env, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["ok"] is True
    for name in ("config", "python", "packages", "duckdb_httpfs", "storage", "port:gateway", "port:queryd"):
        assert checks[name]["status"] == "ok", checks[name]
    assert checks["ollama"]["status"] == "ok"
    assert checks["embed_model"]["status"] == "ok"
    assert checks["key:openrouter"]["status"] == "ok"
    assert checks["key:kimi"]["status"] == "ok"
    assert checks["key:opencode"]["status"] == "warn"
    assert "LH_DOCTOR_TEST_OPENCODE_KEY" in checks["key:opencode"]["fix"]
    assert "sk-or-secret-123" not in done.stdout and "kimi-from-file-456" not in done.stdout
    assert not list((tmp_path / "data").rglob("*doctor*")), "the storage probe was left behind"


def test_optional_checks_warn_without_failing(tmp_path: Path) -> None:
    code, checks, report = doctor_json(tmp_path, base_sections(tmp_path))
    assert code == 0 and report["ok"] is True
    assert checks["ollama"]["status"] == "warn" and checks["ollama"]["required"] is False
    assert checks["ollama"]["fix"].startswith("ollama serve")


def test_a_model_not_pulled_names_the_pull_command(tmp_path: Path, fake_ollama_tags: str) -> None:
    sections = base_sections(tmp_path)
    sections["embedd"].update(ollama_url=fake_ollama_tags, default_model="mxbai-embed-large")
    code, checks, _ = doctor_json(tmp_path, sections)
    assert code == 0
    assert checks["embed_model"]["status"] == "warn"
    assert checks["embed_model"]["fix"] == "ollama pull mxbai-embed-large"


def test_an_unwritable_storage_folder_fails(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    sections = base_sections(tmp_path)
    sections["storage"]["root"] = str(blocker / "data")
    code, checks, report = doctor_json(tmp_path, sections)
    assert code == 1 and report["ok"] is False
    assert checks["storage"]["status"] == "fail"
    assert str(blocker / "data") in checks["storage"]["detail"]
    assert checks["storage"]["fix"].startswith("mkdir -p ")


def test_a_port_in_use_fails_with_the_command_to_find_its_owner(tmp_path: Path) -> None:
    sections = base_sections(tmp_path)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        sections["gateway"]["bind"] = f"127.0.0.1:{port}"
        code, checks, _ = doctor_json(tmp_path, sections)
    assert code == 1
    assert checks["port:gateway"]["status"] == "fail"
    assert f"sport = :{port}" in checks["port:gateway"]["fix"]
    assert checks["port:storaged"]["status"] == "ok"


def test_its_own_running_lakehouse_on_the_port_is_ok_not_in_use(tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    config = write_config(served / "lakehouse.toml", {"storage": {"root": str(tmp_path / "data")}})
    with serving(config) as proc:
        sections = base_sections(tmp_path)
        sections["gateway"]["bind"] = f"127.0.0.1:{proc.port}"
        sections["queryd"]["bind"] = f"127.0.0.1:{proc.port}"  # the gateway is not queryd
        code, checks, _ = doctor_json(tmp_path, sections)
    assert code == 0, checks
    assert checks["port:gateway"]["status"] == "ok"
    assert "the lakehouse is already serving here" in checks["port:gateway"]["detail"]
    assert checks["port:queryd"]["status"] == "warn"
    assert f"sport = :{proc.port}" in checks["port:queryd"]["fix"]


def test_developer_extras_are_not_reported(tmp_path: Path) -> None:
    _, checks, _ = doctor_json(tmp_path, base_sections(tmp_path))
    assert "extra:dev" not in checks


def test_an_unknown_config_key_fails_and_stops_the_other_checks(tmp_path: Path) -> None:
    sections = base_sections(tmp_path)
    sections["queryd"]["max_rowz"] = 5
    code, checks, _ = doctor_json(tmp_path, sections)
    assert code == 1
    assert list(checks) == ["config"]
    assert "queryd.max_rowz" in checks["config"]["detail"]


def test_human_output_prints_each_fix(tmp_path: Path) -> None:
    sections = base_sections(tmp_path)
    sections["storage"]["root"] = str(tmp_path / "lakehouse.toml" / "data")
    done = run_doctor(tmp_path, sections)
    assert done.returncode == 1
    assert "FAIL" in done.stdout and "fix: mkdir -p " in done.stdout
    assert "required check(s) failed" in done.stdout


@pytest.mark.s3
def test_s3_bad_endpoint_fails(tmp_path: Path, s3_env: dict[str, str]) -> None:
    sections = base_sections(tmp_path)
    sections["storage"] = {
        "backend": "s3",
        "endpoint": closed_url(),
        "secrets": str(tmp_path / "no-secrets.toml"),
    }
    code, checks, _ = doctor_json(tmp_path, sections, s3_env)
    assert code == 1
    assert checks["s3_secrets"]["status"] == "ok"
    assert checks["storage"]["status"] == "fail"
    assert "aws s3 mb s3://lakehouse" in checks["storage"]["fix"]


@pytest.mark.s3
def test_s3_bucket_missing_then_present(tmp_path: Path, s3_endpoint: str, s3_env: dict[str, str]) -> None:
    bucket = f"doctor-{uuid.uuid4().hex[:12]}"
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('[s3.primary]\naccess_key_id = "testing"\nsecret_access_key = "testing"\n')
    sections = base_sections(tmp_path)
    sections["storage"] = {
        "backend": "s3",
        "endpoint": s3_endpoint,
        "bucket": bucket,
        "secrets": str(secrets),
    }
    code, checks, _ = doctor_json(tmp_path, sections)
    assert code == 1 and checks["storage"]["status"] == "fail"
    assert f"aws s3 mb s3://{bucket} --endpoint-url {s3_endpoint}" in checks["storage"]["fix"]

    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    code, checks, _ = doctor_json(tmp_path, sections)
    assert code == 0, checks
    assert checks["s3_secrets"]["status"] == "ok" and secrets.name in checks["s3_secrets"]["detail"]
    assert checks["storage"]["status"] == "ok"


@pytest.mark.s3
def test_s3_secrets_file_without_keys_fails(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text("[s3.primary]\nregion = 'us-east-1'\n")
    sections = base_sections(tmp_path)
    sections["storage"] = {"backend": "s3", "endpoint": "http://127.0.0.1:9", "secrets": str(secrets)}
    code, checks, _ = doctor_json(tmp_path, sections)
    assert code == 1
    assert checks["s3_secrets"]["status"] == "fail"
    assert "access_key_id" in checks["s3_secrets"]["detail"]
    assert "storage" not in checks
