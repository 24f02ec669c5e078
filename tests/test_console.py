"""The web console as HTTP: the page at `/` and its assets, open without a token, nothing else served."""

from __future__ import annotations

import re
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lakehouse.config import AuthConfig, Settings, StorageConfig
from lakehouse.console.assets import assets
from lakehouse.services.app import create_app

IMPORT = re.compile(r"""^import\s.*?from\s+"\./([\w-]+\.js)";""", re.MULTILINE | re.DOTALL)


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    """The embedded app with tokens required, as a remote deployment runs it."""
    settings = Settings(storage=StorageConfig(root=str(tmp_path)), auth=AuthConfig(required=True))
    return TestClient(create_app(settings))


def test_the_page_and_its_assets_need_no_token(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    for ref in re.findall(r'(?:src|href)="(/console/[^"]+)"', page.text):
        asset = client.get(ref)
        assert asset.status_code == 200, ref
    assert client.get("/v1/catalog/datasets").status_code == 401


def test_every_module_the_scripts_import_is_served(client: TestClient) -> None:
    scripts = {name for name in assets() if name.endswith(".js")}
    assert "js/app.js" in scripts
    for name in scripts:
        answer = client.get(f"/console/{name}")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/javascript")
        for imported in IMPORT.findall(answer.text):
            assert f"js/{imported}" in scripts, f"{name} imports {imported}, which is not shipped"


def test_no_script_builds_html_from_text() -> None:
    for name, asset in assets().items():
        if name.endswith(".js"):
            text = asset.body.decode()
            assert not re.search(r"\.(innerHTML|outerHTML)\b|insertAdjacentHTML|document\.write", text), name


def test_unknown_or_escaping_paths_are_contract_404s(client: TestClient) -> None:
    escaping = "/console/%2e%2e/%2e%2e/pyproject.toml"
    for path in ("/console/nope.js", escaping, "/console/index.html", "/console/"):
        answer = client.get(path)
        assert answer.status_code == 404, path
        assert answer.json()["error"]["code"] == "not_found"


def test_an_unchanged_asset_answers_304(client: TestClient) -> None:
    first = client.get("/console/js/api.js")
    again = client.get("/console/js/api.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


def test_the_wheel_carries_every_console_file() -> None:
    root = Path(__file__).resolve().parents[1]
    config = tomllib.loads((root / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["lakehouse.console"]
    for name in assets():
        assert any(fnmatch(f"static/{name}", p) for p in patterns), f"{name} is left out of the wheel"
