"""Run every `bench/` script (what `make bench` does) and refresh docs/BENCHMARKS.md.

    .venv/bin/python bench/run_all.py [--only sql,vectors] [--no-write]

Each script runs in turn with its defaults, its output streamed to the
terminal. The section `## Latest make bench run` at the end of
docs/BENCHMARKS.md is then replaced with the date, each command, its exit
status and its output. The sections above it, written by hand from chosen
runs, are left alone. Exits non-zero when any script failed.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
DOC = ROOT / "docs" / "BENCHMARKS.md"
HEADING = "## Latest make bench run"


def scripts(only: set[str] | None) -> list[Path]:
    """The bench scripts to run, by name, this one excluded."""
    mine = Path(__file__).name
    found = sorted(p for p in BENCH.glob("*.py") if p.name != mine and not p.name.startswith("_"))
    return [p for p in found if only is None or p.stem in only]


def run(script: Path) -> tuple[int, str, float]:
    """Run one script, echoing its output; its exit code, output and wall time."""
    command = [sys.executable, str(script.relative_to(ROOT))]
    print(f"\n$ {' '.join(command)}", flush=True)
    started = time.perf_counter()
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        lines.append(line)
    return proc.wait(), "".join(lines), time.perf_counter() - started


def section(results: list[tuple[Path, int, str, float]]) -> str:
    """The refreshed section of docs/BENCHMARKS.md."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        HEADING,
        "",
        f"Written by `make bench` ({when}; Python {platform.python_version()}, "
        f"{platform.machine()}). Raw output of each script with its defaults; the sections above "
        "discuss chosen runs.",
        "",
    ]
    for script, code, text, secs in results:
        status = "ok" if code == 0 else f"exit {code}"
        out += [f"### {script.stem}", "", f"`python bench/{script.name}`: {status}, {secs:.0f} s", ""]
        out += ["```", text.rstrip(), "```", ""]
    return "\n".join(out)


def refresh(doc: Path, body: str) -> None:
    """Replace (or append) the latest-run section, keeping everything before it."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    head = text.split(f"\n{HEADING}\n", 1)[0].rstrip("\n")
    doc.write_text(f"{head}\n\n{body}")


def main() -> int:
    """Run the scripts, refresh the document, report failures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", help="comma-separated script names (e.g. sql,vectors)")
    parser.add_argument("--no-write", action="store_true", help="leave docs/BENCHMARKS.md as it is")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    chosen = scripts(only)
    if not chosen:
        print(f"no bench script matches {args.only!r}", file=sys.stderr)
        return 2
    results = [(script, *run(script)) for script in chosen]
    if not args.no_write:
        refresh(DOC, section(results))
        print(f"\nrefreshed {DOC.relative_to(ROOT)}")
    failed = [script.stem for script, code, _, _ in results if code != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
