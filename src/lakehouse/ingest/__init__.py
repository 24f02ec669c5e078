"""ingestd's domain: uploads (CSV, TSV, Parquet, JSON, NDJSON, XLSX) into versioned Parquet datasets."""

from __future__ import annotations

from lakehouse.ingest.ingester import Ingester, IngestResult, Mode

__all__ = ["IngestResult", "Ingester", "Mode"]
