"""Vector indexes over usearch (HNSW), made durable by a write-ahead log and snapshots."""

from __future__ import annotations

from lakehouse.vectors.index import Hit, IndexSpec, VectorIndex
from lakehouse.vectors.service import NewItem, TextEmbedder, VectorService

__all__ = ["Hit", "IndexSpec", "NewItem", "TextEmbedder", "VectorIndex", "VectorService"]
