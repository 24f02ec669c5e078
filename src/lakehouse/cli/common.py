"""What every command that talks to the gateway shares: its options, its client, its error output.

Errors print as `error: <code>: <message>` on stderr with rich markup escaped,
so text such as `[gateway]` shows literally; a lakehouse that cannot be
reached adds how to start it. Exit codes: 0 done, 1 refused or unreachable,
2 bad usage or config.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from lakehouse.cli.serve import settings_or_exit
from lakehouse.config import split_bind
from lakehouse.errors import LakehouseError, Unavailable

if TYPE_CHECKING:
    # The client (httpx, numpy, its models) loads when a command talks to the gateway, not for `serve`.
    from lakehouse.client import Client

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

GatewayOption = Annotated[
    str | None,
    typer.Option(
        "--gateway",
        envvar=["LAKEHOUSE_GATEWAY_URL", "LAKEHOUSE_URL"],
        help=escape("Gateway base URL (default: http://<[gateway] bind> from the config)."),
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")]


def gateway_url(gateway: str | None, config: str | None) -> str:
    """The gateway's base URL: the option (or its env vars), else the config's bind address."""
    if gateway is None:
        host, port = split_bind(settings_or_exit(config).gateway.bind)
        # A gateway listening on every interface is reached on loopback.
        host = "127.0.0.1" if host in ("0.0.0.0", "::", "[::]") else host
        gateway = f"http://{host}:{port}"
    return gateway.rstrip("/")


@contextmanager
def gateway_client(
    gateway: str | None, config: str | None, token: str | None, timeout: float = 600.0
) -> Iterator[Client]:
    """A client of the gateway; a lakehouse error inside the block prints and exits 1."""
    from lakehouse.client import Client

    # An empty --token means none, not $LAKEHOUSE_TOKEN (typer already read the env var).
    client = Client(gateway_url(gateway, config), token=token or "", timeout=timeout)
    try:
        yield client
    except LakehouseError as exc:
        fail(exc)
    finally:
        client.close()


def fail(exc: LakehouseError) -> NoReturn:
    """Print a lakehouse error (code, message, detail) on stderr and exit 1."""
    from lakehouse.client import START_HINT

    if isinstance(exc, Unavailable) and START_HINT in exc.message:
        err_console.print(f"[red]error:[/red] {escape(exc.message)}")
        raise typer.Exit(1)
    detail = {k: v for k, v in exc.detail.items() if k != "url"}
    extra = f" {json.dumps(detail, ensure_ascii=False, default=str)}" if detail else ""
    err_console.print(f"[red]error:[/red] {escape(exc.code)}: {escape(exc.message)}{escape(extra)}")
    raise typer.Exit(1)


def usage_error(message: str) -> NoReturn:
    """Print a usage problem and exit 2."""
    err_console.print(f"[red]error:[/red] {escape(message)}")
    raise typer.Exit(2)


def print_json(value: Any) -> None:
    """One JSON document on stdout (models by their wire names)."""
    typer.echo(json.dumps(_plain(value), ensure_ascii=False, default=str))


def _plain(value: Any) -> Any:
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def cell(value: Any) -> str:
    """A value as a table or CSV cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)
