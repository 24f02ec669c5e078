"""`lakehouse chat MODEL "prompt"`: ask a model through the gateway, streaming the answer to the terminal."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.markup import escape

from lakehouse.cli.app import app
from lakehouse.cli.common import GatewayOption, err_console, gateway_client, print_json
from lakehouse.cli.serve import ConfigOption
from lakehouse.cli.token import TokenOption


@app.command("chat")
def chat_command(
    model: Annotated[
        str, typer.Argument(help="Model or tier name, e.g. qwen3:4b, openrouter/<v>/<m>, fast.")
    ],
    prompt: Annotated[str, typer.Argument(help="What to ask; '-' reads it from stdin.")],
    system: Annotated[
        str | None, typer.Option("--system", "-s", help="A system message to start with.")
    ] = None,
    json_mode: Annotated[
        bool, typer.Option("--json-mode", help="Ask the model for a JSON answer (format: json).")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole answer as one JSON object (no streaming).")
    ] = False,
    max_tokens: Annotated[int | None, typer.Option(help="Most tokens to generate.", min=1)] = None,
    gateway: GatewayOption = None,
    config: ConfigOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait between pieces of the answer.")] = 300.0,
    token: TokenOption = None,
) -> None:
    """Chat with a model: the answer is printed as it is generated, then its token counts and latency."""
    text = sys.stdin.read() if prompt == "-" else prompt
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": text}
    ]
    opts: dict[str, Any] = {}
    if json_mode:
        opts["format"] = "json"
    if max_tokens is not None:
        opts["max_tokens"] = max_tokens
    with gateway_client(gateway, config, token, timeout=timeout) as client:
        if as_json:
            print_json(client.chat(model, messages, **opts))
            return
        final = _stream(client.chat_stream(model, messages, **opts), model)
    if final is None:
        err_console.print("[red]error:[/red] the answer stopped before it was done")
        raise typer.Exit(1)
    err_console.print(
        f"[dim]{escape(str(final.get('provider')))} · {final.get('input_tokens')} in / "
        f"{final.get('output_tokens')} out · {float(final.get('latency_ms') or 0):.0f} ms"
        f" · {escape(str(final.get('done_reason')))}[/dim]"
    )


def _stream(pieces: Any, model: str) -> dict[str, Any] | None:
    """Print the pieces as they come; the closing summary, or None when the stream ended early.

    Until the first piece, a spinner says the model may be loading (a local
    model's first answer can take seconds).
    """
    status = err_console.status(escape(f"waiting for {model} (a local model may be loading)"))
    status.start()
    started = False
    try:
        for piece in pieces:
            if not started:
                status.stop()
                started = True
            if piece.get("done"):
                sys.stdout.write("\n")
                sys.stdout.flush()
                return dict(piece)
            sys.stdout.write(str(piece.get("content", "")))
            sys.stdout.flush()
    except BaseException:
        if started:
            sys.stdout.write("\n")
        raise
    finally:
        status.stop()
    return None
