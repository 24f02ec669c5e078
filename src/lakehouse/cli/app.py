"""The typer app every command module registers on: `-h`/`--help`, `--version`, shell completion."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from typer.core import TyperOption

from lakehouse import __version__

_display_type_rich = TyperOption.display_type_rich


def _flag_without_type(self: TyperOption, ctx: Any) -> str | None:
    """No `<bool>` label beside flags (`--json`, `--help`): they take no value."""
    return None if self.is_flag else _display_type_rich(self, ctx)


TyperOption.display_type_rich = _flag_without_type  # type: ignore[method-assign,assignment]

app = typer.Typer(
    name="lakehouse",
    help="Versioned SQL datasets, vector search, embeddings and an LLM router.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"lakehouse {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", "-V", help="Print the version and exit.", callback=_print_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Versioned SQL datasets, vector search, embeddings and an LLM router."""
