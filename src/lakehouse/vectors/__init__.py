"""Vector indexes over usearch (HNSW), made durable by a write-ahead log and snapshots."""

from __future__ import annotations

# Before usearch, whose extension carries its own C++ standard library and
# makes some of its symbols (the number-parsing facets among them) the whole
# process's: a library loaded after it against the system's libstdc++ then
# misreads numbers. pyarrow's AWS SDK read every S3 endpoint's port as 80, so
# Iceberg metadata on MinIO or moto could not be written. Loaded first, the
# system's C++ library keeps its own.
import pyarrow  # noqa: F401  (isort: skip)

from lakehouse.vectors.index import Hit, IndexSpec, VectorIndex
from lakehouse.vectors.items import NewItem
from lakehouse.vectors.service import TextEmbedder, VectorService

__all__ = ["Hit", "IndexSpec", "NewItem", "TextEmbedder", "VectorIndex", "VectorService"]
