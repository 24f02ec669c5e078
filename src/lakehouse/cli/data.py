"""`lakehouse ingest FILE --name N` and `lakehouse sql "SELECT ..."`, through the gateway."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from lakehouse.cli.app import app
from lakehouse.cli.serve import ConfigOption, settings_or_exit
from lakehouse.cli.token import TokenOption, auth_headers
from lakehouse.config import split_bind

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)
CHUNK = 1024 * 1024

GatewayOption = Annotated[
    str | None,
    typer.Option(
        "--gateway",
        envvar="LAKEHOUSE_GATEWAY_URL",
        help="Gateway base URL (default: http://<[gateway] bind> from the config).",
    ),
]


def gateway_url(gateway: str | None, config: str | None) -> str:
    """The gateway's base URL: the option, else the config's bind address."""
    if gateway is None:
        host, port = split_bind(settings_or_exit(config).gateway.bind)
        gateway = f"http://{host}:{port}"
    return gateway.rstrip("/")


@app.command("ingest")
def ingest_command(
    file: Annotated[Path, typer.Argument(help="The CSV file to upload.", exists=True, dir_okay=False)],
    name: Annotated[str, typer.Option("--name", "-n", help="Dataset name, e.g. candidates.")],
    mode: Annotated[
        str, typer.Option(help="append: add the rows to the current version; replace: start over.")
    ] = "append",
    gateway: GatewayOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
) -> None:
    """Upload a CSV as a new version of a dataset, with a progress bar; prints the version."""
    if mode not in ("append", "replace"):
        err_console.print(f"[red]error:[/red] --mode must be append or replace, not {mode!r}")
        raise typer.Exit(2)
    url = f"{gateway_url(gateway, config)}/v1/ingest/{name}"
    size = file.stat().st_size
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task(f"uploading {file.name}", total=size)

        def chunks() -> Iterator[bytes]:
            with open(file, "rb") as fh:
                while data := fh.read(CHUNK):
                    progress.advance(task, len(data))
                    yield data
            progress.update(task, description="converting to Parquet")

        answer = _call(
            "POST",
            url,
            params={"mode": mode},
            content=chunks(),
            headers={"content-type": "text/csv", "content-length": str(size), **auth_headers(token)},
        )
    body = answer.json()
    what = "new version" if body["created"] else "already ingested: version"
    counts = f"{body['rows']} rows, {body['row_count']} in all"
    console.print(f"{body['dataset']} {what} {body['version']} ({counts})")


@app.command("sql")
def sql_command(
    query: Annotated[str, typer.Argument(help="One read-only statement; '-' reads it from stdin.")],
    output: Annotated[
        Literal["table", "csv", "json"], typer.Option("--format", "-f", help="table, csv or json.")
    ] = "table",
    max_rows: Annotated[int | None, typer.Option(help="Rows to fetch at most.", min=0)] = None,
    gateway: GatewayOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
) -> None:
    """Run SQL over the datasets: each is a view by its name, version N is "<name>@<N>"."""
    text = sys.stdin.read() if query == "-" else query
    body: dict[str, Any] = {"sql": text}
    if max_rows is not None:
        body["max_rows"] = max_rows
    url = f"{gateway_url(gateway, config)}/v1/sql"
    result = _call("POST", url, json=body, headers=auth_headers(token)).json()
    names = [c["name"] for c in result["columns"]]
    if output == "json":
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
    elif output == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([_cell(v) for v in row] for row in result["rows"])
    else:
        table = Table(*names, show_lines=False)
        for row in result["rows"]:
            table.add_row(*(_cell(v) for v in row))
        console.print(table)
    more = " (truncated: raise --max-rows)" if result["truncated"] else ""
    err_console.print(f"[dim]{result['row_count']} rows · {result['elapsed_ms']:.1f} ms{more}[/dim]")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _call(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request; prints the contract's error and exits 1 on failure."""
    try:
        with httpx.Client(timeout=httpx.Timeout(600.0, connect=10.0)) as client:
            answer = client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        err_console.print(f"[red]error:[/red] cannot reach the lakehouse at {url} ({type(exc).__name__})")
        raise typer.Exit(1) from None
    if answer.status_code >= 400:
        try:
            error = answer.json()["error"]
            detail = {k: v for k, v in error.items() if k not in ("code", "message")}
            extra = f" {json.dumps(detail, ensure_ascii=False)}" if detail else ""
            err_console.print(f"[red]error:[/red] {error['code']}: {error['message']}{extra}")
        except (ValueError, KeyError, TypeError):
            err_console.print(f"[red]error:[/red] HTTP {answer.status_code}: {answer.text[:500]}")
        raise typer.Exit(1)
    return answer
