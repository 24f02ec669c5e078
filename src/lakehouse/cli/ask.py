"""`lakehouse ask "question" --model M`: a model answers from the data, each tool step printed as it runs."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from lakehouse.cli.app import app
from lakehouse.cli.common import GatewayOption, console, err_console, gateway_client, print_json
from lakehouse.cli.serve import ConfigOption
from lakehouse.cli.token import TokenOption

if TYPE_CHECKING:
    from lakehouse.client import models as m

SHOWN = 160  # characters of a step's input or output printed


@app.command("ask")
def ask_command(
    question: Annotated[str, typer.Argument(help="The question; '-' reads it from stdin.")],
    model: Annotated[
        str, typer.Option("--model", "-m", help="A model that can call tools, e.g. qwen3:4b or kimi/<m>.")
    ],
    dataset: Annotated[
        list[str] | None,
        typer.Option("--dataset", "-d", help="A dataset it may read (repeat; default: every dataset)."),
    ] = None,
    index: Annotated[
        list[str] | None, typer.Option("--index", "-i", help="An index it may search (repeat).")
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option(help="Tool rounds at most (1-20; default 6).", min=1, max=20)
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole answer as one JSON object (no streaming).")
    ] = False,
    gateway: GatewayOption = None,
    config: ConfigOption = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait between steps.")] = 600.0,
    token: TokenOption = None,
) -> None:
    """Ask a question of the data: the model lists datasets, reads schemas, runs SQL and searches indexes.

    Each step is printed on stderr as it runs; the answer goes to stdout, then its citations.
    """
    from lakehouse.client import models as m

    text = sys.stdin.read() if question == "-" else question
    with gateway_client(gateway, config, token, timeout=timeout) as client:
        if as_json:
            print_json(client.ask(text, model, dataset, index, max_steps))
            return
        status = err_console.status(escape(f"asking {model} (a local model may be loading)"))
        status.start()
        try:
            for event in client.ask_stream(text, model, dataset, index, max_steps):
                status.stop()
                if isinstance(event, m.AskStep):
                    _print_step(event)
                    status.start()
                else:
                    _print_answer(event)
        finally:
            status.stop()


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= SHOWN else text[: SHOWN - 1] + "…"


def _print_step(step: m.AskStep) -> None:
    error = step.output.get("error")
    if isinstance(error, dict):
        outcome = f"[red]{escape(str(error.get('code')))}[/red]: {escape(_short(error.get('message', '')))}"
    elif "rows" in step.output:
        outcome = f"{len(step.output['rows'])} rows" + (
            " (more left out)" if step.output.get("truncated") else ""
        )
    elif "hits" in step.output:
        outcome = f"{len(step.output['hits'])} hits: " + escape(
            _short([h.get("id") for h in step.output["hits"]])
        )
    else:
        outcome = escape(_short(step.output))
    arguments = (
        step.input.get("query") if isinstance(step.input, dict) and "query" in step.input else step.input
    )
    err_console.print(f"[dim]→ {escape(step.tool)}[/dim] {escape(_short(arguments))} [dim]·[/dim] {outcome}")


def _print_answer(answer: m.AskAnswer) -> None:
    console.print(escape(answer.answer), soft_wrap=True)
    for citation in answer.citations:
        err_console.print(f"[dim]cites {escape(_citation(citation))}[/dim]")
    finish = " · out of steps" if answer.finish == "max_steps" else ""
    err_console.print(
        f"[dim]{escape(str(answer.provider))} · {len(answer.steps)} steps · "
        f"{float(answer.elapsed_ms or 0):.0f} ms{finish}[/dim]"
    )


def _citation(citation: dict[str, Any]) -> str:
    if citation.get("type") == "sql":
        read = ", ".join(f"{d.get('dataset')}@{d.get('version')}" for d in citation.get("datasets") or [])
        ids = f" rows {_short(citation['row_ids'])}" if citation.get("row_ids") else ""
        return f"SQL over {read or 'no dataset'}{ids}: {_short(citation.get('sql', ''))}"
    source = f" ({citation['dataset']}@{citation.get('version')})" if citation.get("dataset") else ""
    return f"index {citation.get('index')}{source} items {_short(citation.get('ids', []))}"
