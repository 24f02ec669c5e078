"""The typer app every command module registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="lakehouse",
    help="Versioned SQL datasets, vector search, embeddings and an LLM router.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def root() -> None:
    """Versioned SQL datasets, vector search, embeddings and an LLM router."""
