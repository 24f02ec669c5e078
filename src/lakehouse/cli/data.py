"""`lakehouse ingest`, `sql`, `datasets` (list, delete, expire), `versions`, `indexes`, `search`, `models`.

Each talks to the gateway through `lakehouse.Client`.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer
from rich.markup import escape
from rich.table import Table

from lakehouse.cli.app import app
from lakehouse.cli.common import (
    GatewayOption,
    JsonOption,
    cell,
    console,
    err_console,
    gateway_client,
    print_json,
    usage_error,
)
from lakehouse.cli.serve import ConfigOption
from lakehouse.cli.token import TokenOption
from lakehouse.errors import NotFound

if TYPE_CHECKING:
    from lakehouse.client import Client
    from lakehouse.client.models import IngestResult


@app.command("ingest")
def ingest_command(
    file: Annotated[
        str,
        typer.Argument(
            help="The file to upload: CSV, TSV, Parquet, JSON, NDJSON or XLSX; '-' reads it from stdin."
        ),
    ],
    name: Annotated[str, typer.Option("--name", "-n", help="Dataset name, e.g. candidates.")],
    mode: Annotated[
        str, typer.Option(help="append: add the rows to the current version; replace: start over.")
    ] = "append",
    content_type: Annotated[
        str | None,
        typer.Option(
            "--content-type",
            help="The file's media type (default: from its extension, else the server sniffs).",
        ),
    ] = None,
    sheet: Annotated[str | None, typer.Option(help="The XLSX sheet to read (default: the first).")] = None,
    as_json: JsonOption = False,
    gateway: GatewayOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
) -> None:
    """Upload a file as a new version of a dataset, with a progress bar; prints the version."""
    if mode not in ("append", "replace"):
        usage_error(f"--mode must be append or replace, not {mode!r}")
    chosen: Literal["append", "replace"] = "replace" if mode == "replace" else "append"
    with gateway_client(gateway, config, token) as client:
        if file == "-":
            # Streamed from stdin in chunks, never read whole.
            result = client.ingest(
                name, sys.stdin.buffer, mode=chosen, content_type=content_type, sheet=sheet
            )
        else:
            path = Path(file)
            if not path.is_file():
                usage_error(f"no such file: {file}")
            result = _upload(client, name, path, chosen, content_type, sheet)
    if as_json:
        print_json(result)
        return
    what = "new version" if result.created else "already ingested: version"
    counts = f"{result.rows} rows, {result.row_count} in all"
    console.print(escape(f"{result.dataset} {what} {result.version} ({counts})"))


def _upload(
    client: Client,
    name: str,
    path: Path,
    mode: Literal["append", "replace"],
    content_type: str | None,
    sheet: str | None,
) -> IngestResult:
    """Stream `path` with a progress bar on stderr, then wait for the conversion."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    total = path.stat().st_size
    sent = 0
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task(escape(f"uploading {path.name}"), total=total)

        def advance(size: int) -> None:
            nonlocal sent
            sent += size
            progress.advance(task, size)
            if sent >= total:
                progress.update(task, description="converting to Parquet")

        return client.ingest(name, path, mode=mode, content_type=content_type, sheet=sheet, progress=advance)


@app.command("sql")
def sql_command(
    query: Annotated[str, typer.Argument(help="One read-only statement; '-' reads it from stdin.")],
    output: Annotated[
        Literal["table", "csv", "json"], typer.Option("--format", "-f", help="table, csv or json.")
    ] = "table",
    as_json: Annotated[bool, typer.Option("--json", help="The same as --format json.")] = False,
    max_rows: Annotated[int | None, typer.Option(help="Rows to fetch at most.", min=0)] = None,
    gateway: GatewayOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
) -> None:
    """Run SQL over the datasets: each is a view by its name, version N is "<name>@<N>"."""
    text = sys.stdin.read() if query == "-" else query
    with gateway_client(gateway, config, token) as client:
        result = client.sql_json(text, max_rows=max_rows)
    names = [c.name for c in result.columns]
    if as_json or output == "json":
        print_json(result)
    elif output == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(names)
        writer.writerows([cell(v) for v in row] for row in result.rows)
    else:
        table = Table(*(escape(n) for n in names), show_lines=False)
        for row in result.rows:
            table.add_row(*(escape(cell(v)) for v in row))
        console.print(table)
    more = ""
    if result.truncated:
        capped = max_rows is not None and result.row_count < max_rows
        more = (
            f" (truncated: the server caps a result at {result.row_count} rows; asked for {max_rows})"
            if capped
            else " (truncated: raise --max-rows)"
        )
    elapsed = f" · {result.elapsed_ms:.1f} ms" if result.elapsed_ms is not None else ""
    err_console.print(f"[dim]{result.row_count} rows{elapsed}{escape(more)}[/dim]")


datasets_app = typer.Typer(
    help="The datasets: list them (the default), delete one, or expire its old versions.",
    no_args_is_help=False,
    invoke_without_command=True,
)
app.add_typer(datasets_app, name="datasets")


@datasets_app.callback()
def datasets_command(
    ctx: typer.Context,
    as_json: JsonOption = False,
    gateway: GatewayOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
) -> None:
    """List the datasets: name, current version, rows, last update."""
    if ctx.invoked_subcommand is not None:
        return
    with gateway_client(gateway, config, token) as client:
        datasets = client.datasets()
    if as_json:
        print_json({"datasets": datasets})
        return
    if not datasets:
        err_console.print("no datasets yet: add one with `lakehouse ingest FILE --name NAME`")
        return
    table = Table("name", "version", "rows", "updated")
    for d in datasets:
        table.add_row(escape(d.name), str(d.version), str(d.row_count), escape(d.updated_at or ""))
    console.print(table)


@datasets_app.command("delete")
def delete_command(
    name: Annotated[str, typer.Argument(help="The dataset to delete.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    gateway: GatewayOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
) -> None:
    """Delete a dataset: every version, every file, its SQL views (needs an admin token)."""
    if not yes and not typer.confirm(f"Delete dataset {name} and every version of it?"):
        raise typer.Exit(1)
    with gateway_client(gateway, config, token) as client:
        client.delete_dataset(name)
    err_console.print(f"deleted dataset {escape(name)}")


@datasets_app.command("expire")
def expire_command(
    name: Annotated[str, typer.Argument(help="The dataset.")],
    keep_last: Annotated[
        int | None, typer.Option("--keep-last", min=1, help="Keep this many newest versions.")
    ] = None,
    older_than: Annotated[
        str | None, typer.Option("--older-than", help="Expire versions created before this ISO 8601 time.")
    ] = None,
    as_json: JsonOption = False,
    gateway: GatewayOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
) -> None:
    """Remove old versions (never the current one) and the files only they used (admin)."""
    if (keep_last is None) == (older_than is None):
        usage_error("give exactly one of --keep-last or --older-than")
    with gateway_client(gateway, config, token) as client:
        result = client.expire(name, keep_last=keep_last, older_than=older_than)
    if as_json:
        print_json(result)
        return
    if not result.expired:
        err_console.print("nothing to expire")
        return
    shown = ", ".join(str(v) for v in result.expired)
    err_console.print(f"expired version(s) {shown} of {escape(name)}; freed {result.bytes_freed} bytes")


@app.command("versions")
def versions_command(
    name: Annotated[str, typer.Argument(help="The dataset.")],
    as_json: JsonOption = False,
    gateway: GatewayOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
) -> None:
    """A dataset's versions, oldest first: each is the SQL view "<name>@<N>"."""
    with gateway_client(gateway, config, token) as client:
        versions = client.versions(name)
    if as_json:
        print_json({"versions": versions})
        return
    table = Table("version", "rows", "created", "fingerprint")
    for v in versions:
        created = escape(v.created_at or "")
        table.add_row(str(v.version), str(v.row_count), created, (v.fingerprint or "")[:12])
    console.print(table)


@app.command("indexes")
def indexes_command(
    as_json: JsonOption = False,
    gateway: GatewayOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
) -> None:
    """List the vector indexes: name, dimension, metric, items, embedding model."""
    with gateway_client(gateway, config, token) as client:
        indexes = client.indexes()
    if as_json:
        print_json({"indexes": indexes})
        return
    if not indexes:
        err_console.print("no vector indexes yet")
        return
    table = Table("name", "dim", "metric", "count", "model")
    for i in indexes:
        table.add_row(escape(i.name), str(i.dim), escape(i.metric), str(i.count), escape(i.model or ""))
    console.print(table)


@app.command("search")
def search_command(
    index: Annotated[str, typer.Argument(help="The index to search.")],
    text: Annotated[str, typer.Argument(help="What to look for, e.g. 'forklift operator CDL-A'.")],
    k: Annotated[int, typer.Option("--k", "-k", help="How many hits.")] = 10,
    mode: Annotated[
        str, typer.Option(help="vector (by meaning), keyword (BM25: exact terms) or hybrid (both, fused).")
    ] = "vector",
    filter_json: Annotated[
        str | None,
        typer.Option("--filter", help='Metadata filter as JSON, e.g. \'{"hourly_rate": {"$lt": 25}}\'.'),
    ] = None,
    as_json: JsonOption = False,
    gateway: GatewayOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
) -> None:
    """Search a vector index by meaning, keyword or both; each hit says which ranking found it."""
    if mode not in ("vector", "keyword", "hybrid"):
        usage_error(f"--mode must be vector, keyword or hybrid, not {mode!r}")
    where = None
    if filter_json is not None:
        try:
            where = json.loads(filter_json)
        except ValueError as exc:
            usage_error(f"--filter is not JSON: {exc}")
    with gateway_client(gateway, config, token) as client:
        hits = client.search(index, text=text, k=k, filter=where, mode=mode)
    if as_json:
        print_json({"hits": hits})
        return
    if not hits:
        err_console.print("no hits")
        return
    table = Table("id", "score", "found by", "metadata")
    for hit in hits:
        found = ", ".join(f"{by} #{hit.ranks[by]}" for by in hit.found_by if by in hit.ranks)
        meta = json.dumps(hit.metadata, ensure_ascii=False)
        table.add_row(escape(hit.id), f"{hit.score:.4f}", escape(found), escape(meta))
    console.print(table)


@app.command("models")
def models_command(
    as_json: JsonOption = False,
    gateway: GatewayOption = None,
    config: ConfigOption = None,
    token: TokenOption = None,
) -> None:
    """List the models the gateway offers: tiers, default models, each provider's models."""
    with gateway_client(gateway, config, token) as client:
        try:
            models = client.models()
        except NotFound:
            err_console.print(
                f"[red]error:[/red] the lakehouse at {escape(client.url)} has no /v1/models "
                "(an older server: upgrade it to list models)"
            )
            raise typer.Exit(1) from None
    if as_json:
        print_json({"object": "list", "data": models})
        return
    table = Table("id", "owned by")
    for model in models:
        table.add_row(escape(model.id), escape(model.owned_by or ""))
    console.print(table)
