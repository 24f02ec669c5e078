"""lakehouse: versioned SQL datasets, vector search, embeddings and an LLM router."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "__version__"]

if TYPE_CHECKING:
    from lakehouse.client import Client


def __getattr__(name: str) -> Any:
    """`lakehouse.Client`, imported on first use so `import lakehouse` stays light."""
    if name == "Client":
        from lakehouse.client import Client

        return Client
    raise AttributeError(f"module 'lakehouse' has no attribute {name!r}")
