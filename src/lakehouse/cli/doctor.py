"""`lakehouse doctor`: check what a cold start needs and print the command that fixes each problem."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from lakehouse.cli.app import app
from lakehouse.cli.serve import ConfigOption

STYLES = {"ok": "[green]ok[/green]  ", "warn": "[yellow]warn[/yellow]", "fail": "[red]FAIL[/red]"}


@app.command()
def doctor(
    config: ConfigOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON (for CI).")] = False,
    ports: Annotated[
        bool, typer.Option(help="Check that the gateway's and services' ports are free.")
    ] = True,
) -> None:
    """Check Python, packages, DuckDB httpfs, storage, Ollama, provider keys and ports.

    Exits 0 only when every required check passes; optional ones only warn.
    """
    from lakehouse.doctor import passed, run_checks

    results = run_checks(config, ports=ports)
    healthy = passed(results)
    if as_json:
        body = {"ok": healthy, "checks": [r.to_json() for r in results]}
        typer.echo(json.dumps(body, indent=2))
    else:
        console = Console(highlight=False, soft_wrap=True)
        width = max(len(r.name) for r in results)
        for r in results:
            console.print(f"{STYLES[r.status]}  {r.name:<{width}}  {escape(r.detail)}")
            if r.fix:
                console.print(f"      {'':<{width}}  fix: [bold]{escape(r.fix)}[/bold]")
        failed = sum(r.status == "fail" for r in results)
        warned = sum(r.status == "warn" for r in results)
        summary = "ready" if healthy else f"{failed} required check(s) failed"
        console.print(f"\n{summary}; {warned} warning(s)")
    raise typer.Exit(0 if healthy else 1)
