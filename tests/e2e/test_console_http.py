"""The console is served by the gateway in both serve modes, open without a token, from the package."""

from __future__ import annotations

import pytest

from lakehouse.console.assets import assets
from tests.conftest import StartCluster

pytestmark = pytest.mark.e2e


def test_the_gateway_serves_the_console_in_every_mode(start_cluster: StartCluster) -> None:
    cluster = start_cluster(config={"auth": {"required": True}}, services=[])
    with cluster.client() as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert "default-src 'self'" in page.headers["content-security-policy"]
        assert '<script type="module" src="/console/js/app.js">' in page.text
        for name, asset in assets().items():
            if name == "index.html":  # the page is served at / only
                continue
            answer = client.get(f"/console/{name}")
            assert answer.status_code == 200, name
            assert answer.content == asset.body
        assert client.head("/console/js/app.js").headers["etag"] == assets()["js/app.js"].etag
        missing = client.get("/console/js/nope.js")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        # The API behind it still needs a token.
        assert client.get("/v1/catalog/datasets").status_code == 401
