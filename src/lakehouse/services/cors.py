"""CORS from `[http] cors_origins`: none by default, so no CORS headers at all unless configured.

Starlette's CORSMiddleware answers preflights itself (the token check lets an
OPTIONS with Access-Control-Request-Method through without a token) and adds
the allow headers only for a listed origin; any other origin gets none.
"""

from __future__ import annotations

from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from lakehouse.config import HttpConfig

ALLOW_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"]
ALLOW_HEADERS = [
    "Authorization",
    "Content-Type",
    "X-Request-ID",
    "Range",
    "If-Match",
    "If-None-Match",
    "If-Range",
]
EXPOSE_HEADERS = [
    "X-Request-ID",
    "ETag",
    "Content-Range",
    "Content-Length",
    "Accept-Ranges",
    "Last-Modified",
    "Retry-After",
]
MAX_AGE_SECS = 600


def cors_options(http: HttpConfig) -> dict[str, Any]:
    """Keyword arguments for CORSMiddleware from `[http] cors_origins`."""
    return {
        "allow_origins": list(http.cors_origins),
        "allow_methods": ALLOW_METHODS,
        "allow_headers": ALLOW_HEADERS,
        "expose_headers": EXPOSE_HEADERS,
        "max_age": MAX_AGE_SECS,
    }


def with_cors(app: ASGIApp, http: HttpConfig) -> ASGIApp:
    """`app` behind CORS when origins are configured; `app` itself otherwise."""
    if not http.cors_origins:
        return app
    return CORSMiddleware(app, **cors_options(http))
