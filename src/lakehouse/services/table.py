"""The services, their config sections and the paths each one owns."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Only for annotations: the CLI reads this table without loading FastAPI.
    from fastapi import APIRouter

    from lakehouse.config import Settings


@dataclass(frozen=True)
class ServiceSpec:
    """One service: its name, the path prefixes it owns, and its router module."""

    name: str
    prefixes: tuple[str, ...]
    module: str

    def router(self) -> APIRouter:
        """The service's APIRouter (imported on first use)."""
        router: APIRouter = importlib.import_module(self.module).router
        return router

    def owned_router(self) -> APIRouter:
        """The service's routes, tried only for the paths it owns: what an app serving it includes."""
        from lakehouse.services.routing import OwnedRouter

        return OwnedRouter(self.router(), self.prefixes)

    def bind(self, settings: Settings) -> str:
        """The service's own `host:port` from `[<service>] bind`."""
        bind: str = getattr(settings, self.name).bind
        return bind

    def upstream(self, settings: Settings) -> str:
        """The URL the gateway proxies this service's paths to in split mode."""
        url: str = getattr(settings.gateway, f"{self.name}_url")
        return url.rstrip("/")


SERVICES: dict[str, ServiceSpec] = {
    spec.name: spec
    for spec in (
        ServiceSpec("storaged", ("/v1/storage",), "lakehouse.services.storaged"),
        ServiceSpec("catalogd", ("/v1/catalog", "/iceberg"), "lakehouse.services.catalogd"),
        ServiceSpec("ingestd", ("/v1/ingest",), "lakehouse.services.ingestd"),
        ServiceSpec("queryd", ("/v1/sql",), "lakehouse.services.queryd"),
        ServiceSpec("vectord", ("/v1/vectors",), "lakehouse.services.vectord"),
        ServiceSpec("embedd", ("/v1/embed", "/v1/embeddings"), "lakehouse.services.embedd"),
        ServiceSpec("chatd", ("/v1/chat", "/v1/models", "/v1/ask"), "lakehouse.services.chatd"),
    )
}


def owns(prefixes: tuple[str, ...], path: str) -> bool:
    """Whether `path` is one of `prefixes` or lies under one, at a segment boundary."""
    return any(path == prefix or path.startswith(prefix + "/") for prefix in prefixes)


def service_for_path(path: str) -> ServiceSpec | None:
    """The service owning `path`, by prefix at a segment boundary."""
    for spec in SERVICES.values():
        if owns(spec.prefixes, path):
            return spec
    return None
