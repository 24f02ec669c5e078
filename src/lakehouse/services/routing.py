"""A service's routes behind the path prefixes it owns, so a request tries only its own service's routes.

FastAPI tries an app's routes one after another, and an included router
tries every one of its routes even when the path lies under another
service's prefix: a vector search in the all-in-one app used to be matched
against every storage, catalog, ingest and SQL route first. Each service
owns whole path prefixes (`services/table.py`, the same table the gateway
proxies by), so a router holding one service's routes can refuse any other
path with a single check and leave matching to FastAPI for the rest.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette._utils import get_route_path
from starlette.routing import Match
from starlette.types import Scope

from lakehouse.services.table import owns


class OwnedRouter(APIRouter):
    """The routes of one service, tried only for paths under the prefixes it owns."""

    def __init__(self, routes: APIRouter, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.include_router(routes)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """No match for a path the service does not own; FastAPI's own matching otherwise."""
        if not owns(self.prefixes, get_route_path(scope)):
            return Match.NONE, {}
        return super().matches(scope)
