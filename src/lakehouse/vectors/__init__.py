"""Vector indexes over usearch (HNSW), made durable by a write-ahead log and snapshots."""

from __future__ import annotations

from lakehouse.vectors.index import Hit, IndexSpec, VectorIndex
from lakehouse.vectors.items import NewItem
from lakehouse.vectors.service import TextEmbedder, VectorService

__all__ = ["Hit", "IndexSpec", "NewItem", "TextEmbedder", "VectorIndex", "VectorService"]
