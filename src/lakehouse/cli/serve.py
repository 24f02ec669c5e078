"""`lakehouse serve`: every service in one process, or one service on its own port."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from lakehouse.cli.app import app
from lakehouse.config import ConfigError, Settings, load_settings, split_bind
from lakehouse.services.table import SERVICES

if TYPE_CHECKING:
    from starlette.types import ASGIApp

    from lakehouse.services.deps import Deps

err_console = Console(stderr=True)

ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config", "-c", help="lakehouse.toml to read (else $LAKEHOUSE_CONFIG, else ./lakehouse.toml)."
    ),
]


def settings_or_exit(config: str | None) -> Settings:
    """Load the settings, or print the problem and exit with status 2."""
    try:
        return load_settings(config)
    except ConfigError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


def configure_logging(level: str) -> None:
    """One line per event on stderr: time, level, logger, message."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        force=True,
    )


def _bind_host(address: str) -> str:
    """The host part of `address`, which decides whether `[auth] required = "auto"` asks for tokens."""
    try:
        return split_bind(address)[0]
    except ConfigError:
        return address  # reported below; treated as beyond loopback meanwhile


def _warm_up_for(service: str | None, deps: Deps | None) -> Callable[[], None] | None:
    """What to import once listening: what requests to the services served here will need."""
    if service == "gateway":
        return None  # the split-mode gateway only proxies
    from lakehouse.services.app import warm_up

    served = list(SERVICES) if service is None else [service]
    return lambda: warm_up(served, deps)


@app.command()
def serve(
    service: Annotated[
        str | None,
        typer.Argument(
            help="Run only this service (" + ", ".join(["gateway", *SERVICES]) + "); all when omitted."
        ),
    ] = None,
    config: ConfigOption = None,
    bind: Annotated[str | None, typer.Option(help="host:port to listen on, overriding the config.")] = None,
) -> None:
    """Serve the lakehouse: all services on the gateway's port, or one service alone."""
    settings = settings_or_exit(config)
    configure_logging(settings.log.level)
    asgi: ASGIApp
    deps: Deps | None = None  # the services' own, when this process serves them
    if service is None:
        from lakehouse.services.app import create_app

        address = bind or settings.gateway.bind
        asgi = create_app(settings, name="gateway", bind_host=_bind_host(address))
        deps = asgi.state.deps
    elif service == "gateway":
        from lakehouse.services.gateway import create_gateway_app

        address = bind or settings.gateway.bind
        asgi = create_gateway_app(settings, bind_host=_bind_host(address))
    elif service in SERVICES:
        from lakehouse.services.app import create_app

        address = bind or SERVICES[service].bind(settings)
        asgi = create_app(settings, [service], name=service, bind_host=_bind_host(address))
        deps = asgi.state.deps
    else:
        err_console.print(
            f"[red]error:[/red] unknown service {service!r}; choose from gateway, {', '.join(SERVICES)}"
        )
        raise typer.Exit(2)
    try:
        host, port = split_bind(address)
    except ConfigError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    import uvicorn

    from lakehouse.cli.listen import bind_socket

    # Bound here, so port 0 works and the port actually got is reported once serving.
    try:
        sock = bind_socket(host, port)
    except OSError as exc:
        err_console.print(f"[red]error:[/red] cannot listen on {escape(address)}: {escape(str(exc))}")
        raise typer.Exit(1) from None
    from lakehouse.services.protocol import serve_options

    served = uvicorn.Config(
        asgi,
        host=host,
        port=port,
        access_log=False,
        log_level=settings.log.level,
        lifespan="on",
        **serve_options(settings.http),  # header, head-time and connection limits of [http]
    )
    from lakehouse.cli.banner import BannerServer

    server = BannerServer(
        served,
        label=service or "all",
        settings=settings,
        service=service,
        on_listening=_warm_up_for(service, deps),
    )
    server.run(sockets=[sock])
    if not server.started:
        raise typer.Exit(3)
