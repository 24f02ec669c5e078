"""Resources the routes depend on, built from Settings once per app.

Each resource is built on first use inside the app's lifespan and closed when
the app stops; nothing is created at import time. Routes receive them through
the `DepsDep` alias.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request

from lakehouse.config import Settings

if TYPE_CHECKING:
    from lakehouse.catalog import Catalog
    from lakehouse.ingest import Ingester
    from lakehouse.providers.chat import ChatRouter
    from lakehouse.providers.embeddings import Embedder
    from lakehouse.query import QueryEngine
    from lakehouse.storage.access import StorageAccess
    from lakehouse.storage.base import ObjectStore
    from lakehouse.vectors import VectorService


class Deps:
    """The settings and the lazily built resources of one app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._built: dict[str, Any] = {}

    def _get(self, name: str) -> Any:
        return self._built.get(name)

    @property
    def store(self) -> ObjectStore:
        """The object store shared by every service."""
        if "store" not in self._built:
            from lakehouse.storage import open_store

            self._built["store"] = open_store(self.settings)
        return self._built["store"]  # type: ignore[no-any-return]

    @property
    def storage(self) -> StorageAccess:
        """The storage API's rules (key checks, caps) over the object store."""
        if "storage" not in self._built:
            from lakehouse.storage.access import StorageAccess

            self._built["storage"] = StorageAccess(self.settings.storage, self.store)
        return self._built["storage"]  # type: ignore[no-any-return]

    @property
    def catalog(self) -> Catalog:
        """The dataset catalog over the object store."""
        if "catalog" not in self._built:
            from lakehouse.catalog import Catalog

            self._built["catalog"] = Catalog(self.store)
        return self._built["catalog"]  # type: ignore[no-any-return]

    @property
    def ingester(self) -> Ingester:
        """CSV ingest into the catalog."""
        if "ingester" not in self._built:
            from lakehouse.ingest import Ingester

            self._built["ingester"] = Ingester(self.settings, self.store, self.catalog)
        return self._built["ingester"]  # type: ignore[no-any-return]

    @property
    def query(self) -> QueryEngine:
        """The sandboxed DuckDB engine."""
        if "query" not in self._built:
            from lakehouse.query import QueryEngine

            self._built["query"] = QueryEngine(self.settings, self.store, self.catalog)
        return self._built["query"]  # type: ignore[no-any-return]

    @property
    def embedder(self) -> Embedder:
        """Text to vectors through the configured providers."""
        if "embedder" not in self._built:
            from lakehouse.providers.embeddings import Embedder

            self._built["embedder"] = Embedder(self.settings)
        return self._built["embedder"]  # type: ignore[no-any-return]

    @property
    def vectors(self) -> VectorService:
        """The HNSW indexes."""
        if "vectors" not in self._built:
            from lakehouse.vectors import VectorService

            self._built["vectors"] = VectorService(
                self.settings, self.store, self.embedder, catalog=lambda: self.catalog
            )
        return self._built["vectors"]  # type: ignore[no-any-return]

    @property
    def chat(self) -> ChatRouter:
        """The chat provider router."""
        if "chat" not in self._built:
            from lakehouse.providers.chat import ChatRouter

            self._built["chat"] = ChatRouter(self.settings)
        return self._built["chat"]  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Close every built resource, most dependent first."""
        for name in reversed(list(self._built)):
            closer = getattr(self._built[name], "close", None)
            if closer is not None:
                result = closer()
                if hasattr(result, "__await__"):
                    await result
        self._built.clear()


def deps_of(request: Request) -> Deps:
    """The Deps of the app serving `request`."""
    deps: Deps = request.app.state.deps
    return deps


async def get_deps(request: Request) -> Deps:
    """The app's Deps, for `Depends` (async: FastAPI runs a sync dependency in a worker thread)."""
    return deps_of(request)


DepsDep = Annotated[Deps, Depends(get_deps)]
