"""`lakehouse chat MODEL "prompt"`: ask a model through the gateway, streaming the answer to the terminal."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console

from lakehouse.cli.app import app
from lakehouse.cli.serve import ConfigOption, settings_or_exit
from lakehouse.cli.token import TokenOption, auth_headers
from lakehouse.config import split_bind

err_console = Console(stderr=True, highlight=False)


@app.command("chat")
def chat_command(
    model: Annotated[
        str, typer.Argument(help="Model or tier name, e.g. qwen3:4b, openrouter/<v>/<m>, fast.")
    ],
    prompt: Annotated[str, typer.Argument(help="What to ask; '-' reads it from stdin.")],
    system: Annotated[
        str | None, typer.Option("--system", "-s", help="A system message to start with.")
    ] = None,
    json_format: Annotated[bool, typer.Option("--json", help="Ask the model for a JSON answer.")] = False,
    max_tokens: Annotated[int | None, typer.Option(help="Most tokens to generate.", min=1)] = None,
    gateway: Annotated[
        str | None,
        typer.Option(
            "--gateway",
            envvar="LAKEHOUSE_GATEWAY_URL",
            help="Gateway base URL (default: http://<[gateway] bind> from the config).",
        ),
    ] = None,
    config: ConfigOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait between pieces of the answer.")] = 300.0,
    token: TokenOption = None,
) -> None:
    """Chat with a model: the answer is printed as it is generated, then its token counts and latency."""
    if gateway is None:
        host, port = split_bind(settings_or_exit(config).gateway.bind)
        gateway = f"http://{host}:{port}"
    text = sys.stdin.read() if prompt == "-" else prompt
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": text}
    ]
    body: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
    if json_format:
        body["format"] = "json"
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    try:
        final = _stream(gateway.rstrip("/"), body, timeout, auth_headers(token))
    except httpx.HTTPError as exc:
        err_console.print(f"[red]error:[/red] cannot reach the lakehouse at {gateway} ({type(exc).__name__})")
        raise typer.Exit(1) from None
    if final is None:
        raise typer.Exit(1)
    err_console.print(
        f"[dim]{final['provider']} · {final['input_tokens']} in / {final['output_tokens']} out"
        f" · {final['latency_ms']:.0f} ms · {final['done_reason']}[/dim]"
    )


def _stream(
    gateway: str, body: dict[str, Any], timeout: float, headers: dict[str, str]
) -> dict[str, Any] | None:
    """Print the answer's pieces as they arrive; the closing summary, or None after printing an error."""
    with (
        httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0)) as client,
        client.stream("POST", gateway + "/v1/chat", json=body, headers=headers) as response,
    ):
        if response.status_code >= 400:
            response.read()
            _print_error(response.status_code, _json_or_none(response.text))
            return None
        for line in response.iter_lines():
            if not line.strip():
                continue
            doc = json.loads(line)
            if "error" in doc:
                sys.stdout.write("\n")
                _print_error(response.status_code, doc)
                return None
            if doc.get("done"):
                sys.stdout.write("\n")
                sys.stdout.flush()
                return dict(doc)
            sys.stdout.write(doc.get("content", ""))
            sys.stdout.flush()
    err_console.print("[red]error:[/red] the answer stopped before it was done")
    return None


def _json_or_none(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _print_error(status: int, body: Any) -> None:
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        err_console.print(f"[red]error {status} {err.get('code')}:[/red] {err.get('message')}")
    else:
        err_console.print(f"[red]error:[/red] the lakehouse answered {status} without a readable answer")
