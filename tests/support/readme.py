"""The README's fenced code blocks, split the way a reader pastes them, and run as written.

`blocks()` reads each fenced block with the `##` section it sits in.
`shell_commands()` splits a shell block into the commands a shell would run one
by one (backslash continuations, quotes spanning lines and heredocs stay in
their command), each with the comments written above it and beside it.
`run_shell()` runs a block's commands in order in one bash (`set -e -o
pipefail`, so the first failing command stops it) and hands back each
command's own stdout and stderr. `run_python()` runs a Python block the way
the interactive interpreter would, keeping the value of each bare expression.
"""

from __future__ import annotations

import ast
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FENCE = re.compile(r"^```(\w*)\s*$")
HEREDOC = re.compile(r"<<-?\s*(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\1")
# Printed between commands on stdout and stderr so each command's output can be told apart.
MARK = "\x1ereadme-command-"
SPLIT = re.compile(rf"\n?{MARK}(\d+)\n")


@dataclass(frozen=True)
class Block:
    """One fenced code block: its language, text, section and first line in the file."""

    section: str
    lang: str
    text: str
    line: int


@dataclass(frozen=True)
class Command:
    """One shell command as written (possibly several lines) and the comments about it."""

    text: str
    comments: tuple[str, ...]

    def describe(self) -> str:
        """The command with its comments, as it reads in the README."""
        return "\n".join([*(f"# {c}" for c in self.comments), self.text])


@dataclass
class Ran:
    """What one command printed."""

    command: Command
    stdout: str
    stderr: str


@dataclass
class ShellFailure(AssertionError):
    """A command of a block exited non-zero; `ran` holds it last, with its output."""

    returncode: int
    ran: list[Ran] = field(default_factory=list)

    def __str__(self) -> str:
        if not self.ran:
            return f"the block failed before its first command (exit {self.returncode})"
        last = self.ran[-1]
        return (
            f"exit {self.returncode} from:\n{last.command.describe()}\n"
            f"--- stdout\n{last.stdout}\n--- stderr\n{last.stderr}"
        )


def blocks(readme: Path) -> list[Block]:
    """Every fenced block of `readme`, in order, with its `##` section."""
    found: list[Block] = []
    section = ""
    lang: str | None = None
    body: list[str] = []
    start = 0
    for number, line in enumerate(readme.read_text().splitlines(), 1):
        fence = FENCE.match(line)
        if lang is None:
            if line.startswith("## "):
                section = line[3:].strip()
            elif fence:
                lang, body, start = fence.group(1), [], number + 1
        elif fence and not fence.group(1):
            found.append(Block(section, lang, "\n".join(body) + "\n", start))
            lang = None
        else:
            body.append(line)
    return found


def _scan(line: str, quote: str | None) -> tuple[str | None, bool, list[str], str | None]:
    """Scan one line from inside `quote` (or none).

    Returns the quote still open at its end, whether it ends in a line
    continuation, the heredoc terminators it opens, and its trailing comment.
    """
    terms: list[str] = []
    i = 0
    while i < len(line):
        ch = line[i]
        if quote == "'":
            quote = None if ch == "'" else quote
        elif quote == '"':
            if ch == "\\":
                i += 1
            elif ch == '"':
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "\\":
            if i == len(line) - 1:
                return quote, True, terms, None
            i += 1
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return quote, False, terms, line[i + 1 :].strip()
        elif line.startswith("<<", i):
            heredoc = HEREDOC.match(line, i)
            if heredoc:
                terms.append(heredoc.group(2))
                i = heredoc.end() - 1
        i += 1
    return quote, False, terms, None


def shell_commands(text: str) -> list[Command]:
    """The commands of a shell block, in order, each with its comments (a blank line drops them)."""
    commands: list[Command] = []
    comments: list[str] = []
    lines: list[str] = []
    quote: str | None = None
    continued = False
    heredocs: list[str] = []

    def finish() -> None:
        commands.append(Command("\n".join(lines), tuple(comments)))
        lines.clear()
        comments.clear()

    for line in text.splitlines():
        if heredocs:
            lines.append(line)
            if line.strip() == heredocs[0]:
                heredocs.pop(0)
                if not heredocs and not continued and quote is None:
                    finish()
            continue
        if not lines and quote is None:
            stripped = line.strip()
            if not stripped:
                comments.clear()
                continue
            if stripped.startswith("#"):
                comments.append(stripped[1:].strip())
                continue
        lines.append(line)
        quote, continued, terms, trailing = _scan(line, quote)
        heredocs.extend(terms)
        if trailing:
            comments.append(trailing)
        if quote is None and not continued and not heredocs:
            finish()
    if lines:
        raise ValueError(f"the block ends inside a command:\n{chr(10).join(lines)}")
    return commands


def _outputs(text: str, count: int) -> list[str]:
    """Each command's part of a stream the marks divide (missing parts are empty)."""
    parts = SPLIT.split(text)
    found = [""] * count
    for index, chunk in zip(parts[1::2], parts[2::2], strict=True):
        found[int(index)] = chunk
    return found


def run_shell(
    commands: list[Command], cwd: Path, env: Mapping[str, str], timeout: float = 120.0
) -> list[Ran]:
    """Run the commands in order in one bash; what each printed.

    Raises:
        ShellFailure: a command exited non-zero (the commands run so far, that one last).
    """
    script = ["set -e -o pipefail"]
    for index, command in enumerate(commands):
        script.append(f"printf '\\n{MARK}{index}\\n'; printf '\\n{MARK}{index}\\n' >&2")
        script.append(command.text)
    done = subprocess.run(
        ["bash", "-c", "\n".join(script) + "\n"],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    stdouts = _outputs(done.stdout, len(commands))
    stderrs = _outputs(done.stderr, len(commands))
    reached = [int(i) for i in SPLIT.findall(done.stdout)]
    count = max(reached) + 1 if reached else 0
    ran = [Ran(commands[i], stdouts[i], stderrs[i]) for i in range(count)]
    if done.returncode != 0:
        raise ShellFailure(done.returncode, ran)
    return ran


def run_python(code: str, namespace: dict[str, Any]) -> list[tuple[str, Any]]:
    """Run `code` statement by statement, as pasted into `python`; each bare expression's comment and value.

    The comment is the text after `#` on the expression's last line ("" when none).
    """
    lines = code.splitlines()
    values: list[tuple[str, Any]] = []
    for node in ast.parse(code).body:
        if isinstance(node, ast.Expr):
            value = eval(compile(ast.Expression(node.value), "README.md", "eval"), namespace)
            end = lines[(node.end_lineno or node.lineno) - 1]
            values.append((end.split("#", 1)[1].strip() if "#" in end else "", value))
        else:
            exec(compile(ast.Module([node], type_ignores=[]), "README.md", "exec"), namespace)
    return values
