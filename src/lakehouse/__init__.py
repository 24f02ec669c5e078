"""lakehouse: versioned SQL datasets, vector search, embeddings and an LLM router."""

__version__ = "0.1.0"
