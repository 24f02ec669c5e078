"""`/docs` that works offline: Swagger UI's page and its assets, served by the process itself.

The assets are the Swagger UI build that the `fastapi-offline` package ships
(Apache-2.0 Swagger UI, MIT package); they are served under `/docs/...`, which
the token check leaves open like `/docs` itself.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response

from lakehouse.errors import NotFound

ASSETS = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "favicon.png": "image/png",
}
_cache: dict[str, bytes] = {}
# Swagger UI's OAuth2 landing page (FastAPI's own), for "Authorize" flows from the page.
OAUTH2_REDIRECT = "/docs/oauth2-redirect"


def docs_page(title: str, openapi_url: str = "/openapi.json") -> HTMLResponse:
    """The Swagger UI page, loading its script and style from this process."""
    return get_swagger_ui_html(
        openapi_url=openapi_url,
        title=title,
        swagger_js_url="/docs/swagger-ui-bundle.js",
        swagger_css_url="/docs/swagger-ui.css",
        swagger_favicon_url="/docs/favicon.png",
        oauth2_redirect_url=OAUTH2_REDIRECT,
    )


def asset_response(name: str) -> Response:
    """One Swagger UI asset, read once and kept.

    Raises:
        NotFound: not one of the assets.
    """
    media = ASSETS.get(name)
    if media is None:
        raise NotFound(f"no docs asset {name!r}")
    data = _cache.get(name)
    if data is None:
        data = _cache[name] = (files("fastapi_offline") / "static" / name).read_bytes()
    return Response(data, media_type=media, headers={"Cache-Control": "public, max-age=86400"})


def add_docs_routes(app: FastAPI, title: str) -> None:
    """`GET /docs` and `GET /docs/{asset}` on `app` (left out of the OpenAPI document)."""

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return docs_page(title)

    @app.get(OAUTH2_REDIRECT, include_in_schema=False)
    async def docs_oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/docs/{asset}", include_in_schema=False)
    async def docs_asset(asset: str) -> Response:
        return asset_response(asset)
