"""The console's files as HTTP answers: the page at `/`, its assets under `/console/`.

Only files that exist in the package's `static/` folder, with a known type,
are ever served: the listing is taken once, so no request path reaches the
filesystem. The page carries a Content-Security-Policy that allows scripts,
styles and connections to this origin only, so the console cannot load
anything from elsewhere, nor run inline script, even if some text slipped past
its DOM rendering.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from importlib.resources.abc import Traversable

from fastapi import FastAPI, Request
from fastapi.responses import Response

from lakehouse.errors import NotFound

PREFIX = "/console/"
INDEX = "index.html"
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
_COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidate each load (cheap with the ETag): a new release is picked up at once.
    "Cache-Control": "no-cache",
}


@dataclass(frozen=True)
class Asset:
    """One file of the console, read once."""

    body: bytes
    media_type: str
    etag: str


def _walk(folder: Traversable, prefix: str) -> dict[str, Asset]:
    found: dict[str, Asset] = {}
    for entry in folder.iterdir():
        name = prefix + entry.name
        if entry.is_dir():
            found.update(_walk(entry, name + "/"))
            continue
        media = TYPES.get("." + entry.name.rsplit(".", 1)[-1]) if "." in entry.name else None
        if media is None:
            continue
        body = entry.read_bytes()
        found[name] = Asset(body, media, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return found


@cache
def assets() -> dict[str, Asset]:
    """Every servable file of the console by its path under `static/` (e.g. `js/app.js`)."""
    return _walk(files("lakehouse.console") / "static", "")


def is_console_path(path: str) -> bool:
    """Whether `path` is the console's: the page (`/`) or anything under `/console/`."""
    return path == "/" or path.startswith(PREFIX)


def console_response(path: str, if_none_match: str | None = None) -> Response:
    """The answer to `GET path` for a console path: the file, or 304 when the ETag still matches.

    Raises:
        NotFound: not one of the console's files.
    """
    name = INDEX if path == "/" else path.removeprefix(PREFIX)
    asset = assets().get(name) if name != INDEX or path == "/" else None
    if asset is None:
        raise NotFound(f"the console has no file {name!r}")
    headers = {**_COMMON_HEADERS, "ETag": asset.etag}
    if asset.media_type.startswith("text/html"):
        headers["Content-Security-Policy"] = CSP
    if if_none_match is not None and asset.etag in (tag.strip() for tag in if_none_match.split(",")):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


def add_console_routes(app: FastAPI) -> None:
    """`GET`/`HEAD` of `/` and `/console/{asset}` on `app`, left out of the OpenAPI document."""

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def console_page(request: Request) -> Response:
        return console_response("/", request.headers.get("if-none-match"))

    @app.api_route("/console/{asset:path}", methods=["GET", "HEAD"], include_in_schema=False)
    async def console_asset(asset: str, request: Request) -> Response:
        return console_response(PREFIX + asset, request.headers.get("if-none-match"))
