"""`lakehouse token create|list|revoke`: API tokens, kept as hashes in the object store.

Also the `--token` option (else `$LAKEHOUSE_TOKEN`) every command that talks
to the gateway takes; `lakehouse.Client` turns it into the bearer header.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from lakehouse.auth.scopes import Scope
from lakehouse.auth.tokens import TokenRecord, TokenStore
from lakehouse.cli.app import app
from lakehouse.cli.common import console, err_console
from lakehouse.cli.serve import ConfigOption, settings_or_exit
from lakehouse.errors import LakehouseError

TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="LAKEHOUSE_TOKEN",
        help="API token sent as 'Authorization: Bearer <token>' (default: $LAKEHOUSE_TOKEN).",
        show_default=False,
    ),
]


token_app = typer.Typer(
    help="Create, list and revoke API tokens (the object store keeps only their hashes).",
    no_args_is_help=True,
)
app.add_typer(token_app, name="token")

T = TypeVar("T")


def _with_store(config: str | None, action: Callable[[TokenStore], Awaitable[T]]) -> T:
    """Run `action` over the configured object store; print a lakehouse error and exit 1."""
    from lakehouse.storage import open_store

    settings = settings_or_exit(config)

    async def run() -> T:
        store = open_store(settings)
        try:
            return await action(TokenStore(store))
        finally:
            await store.close()

    try:
        return asyncio.run(run())
    except LakehouseError as exc:
        err_console.print(f"[red]error:[/red] {escape(exc.code)}: {escape(exc.message)}")
        raise typer.Exit(1) from None


def _when(moment: datetime | None) -> str:
    return moment.isoformat(timespec="seconds") if moment else "never"


@token_app.command("create")
def create_command(
    name: Annotated[str, typer.Argument(help="The token's name: a-z, 0-9, '_', '.', '-' (up to 63).")],
    scope: Annotated[
        str,
        typer.Option(
            "--scope", help="read (GET, SQL, search, chat), write (+ changes) or admin (+ deletes)."
        ),
    ] = "read",
    expires_days: Annotated[
        float | None, typer.Option("--expires-days", help="Days until the token expires (default: never).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object holding the token.")] = False,
    config: ConfigOption = None,
) -> None:
    """Mint a token; it is printed once, as the last line, and only its hash is stored."""
    try:
        wanted = Scope.parse(scope)
    except ValueError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    if expires_days is not None and not expires_days > 0:
        err_console.print("[red]error:[/red] --expires-days must be positive")
        raise typer.Exit(2)
    token, record = _with_store(config, lambda tokens: tokens.create(name, wanted, expires_days=expires_days))
    if as_json:
        print(json.dumps({**record.public(), "token": token}))
        return
    print(f"created token {record.name!r}: scope {record.scope.label}, expires {_when(record.expires_at)}")
    print("Keep it now: it cannot be shown again. Send it as 'Authorization: Bearer <token>'.")
    print(token)


@token_app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array.")] = False,
    config: ConfigOption = None,
) -> None:
    """Every token's name, scope, creation and expiry (never the tokens themselves)."""
    records: list[TokenRecord] = _with_store(config, lambda tokens: tokens.list())
    if as_json:
        rows: list[dict[str, Any]] = [{**r.public(), "expired": r.expired()} for r in records]
        print(json.dumps(rows))
        return
    if not records:
        err_console.print("no tokens yet: create one with `lakehouse token create NAME --scope read`")
        return
    table = Table("name", "scope", "created", "expires")
    for record in records:
        expires = _when(record.expires_at) + (" (expired)" if record.expired() else "")
        table.add_row(escape(record.name), record.scope.label, _when(record.created_at), expires)
    console.print(table)


@token_app.command("revoke")
def revoke_command(
    name: Annotated[str, typer.Argument(help="The token to revoke.")],
    config: ConfigOption = None,
) -> None:
    """Delete a token; every process refuses it within 5 seconds, without a restart."""
    _with_store(config, lambda tokens: tokens.revoke(name))
    print(f"revoked token {name!r}")
