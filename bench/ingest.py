"""CSV ingest through `lakehouse serve` vs DuckDB's and polars' own CSV -> Parquet on the same file.

    .venv/bin/python bench/ingest.py [--rows 1000000 4000000] [--rounds 5] [--data DIR]

Generates the staffing candidates CSV (1,000,000 rows by default) in a temp
folder (or in `--data`, kept and reused across runs), starts a real
`lakehouse serve` (local storage) per size, then each round runs, one after
the other on the same file:

- DuckDB in this process: `COPY (SELECT * FROM read_csv(...)) TO ... (FORMAT parquet, COMPRESSION zstd)`;
- polars (when installed): `scan_csv(...).sink_parquet(..., compression="zstd")`;
- the file streamed from disk to `POST /v1/ingest/<name>` (one new dataset a round).

Prints each round, the medians, the ratio of the medians (target <= 1.0x
DuckDB COPY alone), the server's own phase timings from its log, and the
server's peak RSS (VmHWM; target < 1 GiB). Check `uptime` first: the figures
mean little on a loaded machine.

`--polars-agreement` instead runs the ingest tests' CSVs (and a few more)
through today's converter and through polars told DuckDB's sniffed types, and
prints where they disagree (why polars is not the converter).
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.procs import LakehouseProcess, write_config
from tests.support.staffing import csv_bytes, write_csv

MIB = 1024 * 1024
# The ingester's log line: "ingested <name> v<N>: ... spool 0.31 s, convert 0.95 s, ...".
_PHASES = re.compile(r"ingested (\S+) v\d+: .*?\((.*)\)")


def peak_rss_mib(pid: int) -> float:
    """VmHWM (peak resident set) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise KeyError("VmHWM")


def cpu_secs(pid: int | None = None) -> float:
    """CPU seconds (user + system) used so far by this process, or by process `pid`."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def duckdb_copy(source: Path, target: Path) -> float:
    """Seconds DuckDB alone takes to turn the CSV into zstd Parquet."""
    started = time.perf_counter()
    with duckdb.connect() as conn:
        conn.execute(
            f"COPY (SELECT * FROM read_csv('{source}')) TO '{target}' (FORMAT parquet, COMPRESSION zstd)"
        )
    return time.perf_counter() - started


def polars_sink() -> Callable[[Path, Path], float] | None:
    """polars' `scan_csv().sink_parquet()` timer, or None when polars is not installed."""
    try:
        import polars as pl
    except ImportError:
        return None

    def run(source: Path, target: Path) -> float:
        started = time.perf_counter()
        pl.scan_csv(source).sink_parquet(target, compression="zstd")
        return time.perf_counter() - started

    return run


def upload(url: str, source: Path, name: str) -> tuple[float, dict[str, object]]:
    """Seconds to ingest the CSV over HTTP (streamed from disk), and the answer."""

    def chunks() -> Iterator[bytes]:
        with open(source, "rb") as fh:
            while data := fh.read(MIB):
                yield data

    started = time.perf_counter()
    answer = httpx.post(
        f"{url}/v1/ingest/{name}",
        params={"mode": "replace"},
        content=chunks(),
        headers={"content-type": "text/csv"},
        timeout=1200,
    )
    elapsed = time.perf_counter() - started
    answer.raise_for_status()
    return elapsed, answer.json()


def source_csv(folder: Path, rows: int) -> Path:
    """The candidates CSV of `rows` rows in `folder`, generated unless already there."""
    path = folder / f"candidates-{rows}.csv"
    if not path.exists():
        started = time.perf_counter()
        partial = path.with_suffix(".partial")
        write_csv(partial, "candidates", rows)
        partial.rename(path)
        print(f"generated {rows} rows in {time.perf_counter() - started:.1f} s")
    return path


def bench_size(work: Path, source: Path, rows: int, rounds: int) -> None:
    """All rounds at one size against one fresh server; prints rounds, medians and ratios."""
    size = source.stat().st_size
    print(f"\n== {rows} rows, {size / MIB:.0f} MiB; load average {os.getloadavg()[0]:.2f} ==")
    polars = polars_sink()
    root = work / f"data-{rows}"
    config = write_config(work / f"lakehouse-{rows}.toml", {"storage": {"root": str(root)}})
    server = LakehouseProcess(config).start()
    times: dict[str, list[float]] = {"duckdb": [], "polars": [], "lakehouse": []}
    # CPU seconds: DuckDB and polars in this process; the server's, and this client's, for an upload.
    cpu: dict[str, list[float]] = {"duckdb": [], "polars": [], "lakehouse": [], "client": []}
    try:
        assert server.proc is not None
        pid = server.proc.pid
        base_rss = peak_rss_mib(pid)
        for round_no in range(1, rounds + 1):
            before = cpu_secs()
            times["duckdb"].append(duckdb_copy(source, work / "direct.parquet"))
            cpu["duckdb"].append(cpu_secs() - before)
            if polars is not None:
                before = cpu_secs()
                times["polars"].append(polars(source, work / "polars.parquet"))
                cpu["polars"].append(cpu_secs() - before)
            # The same bytes again would be answered "already ingested": one dataset per round.
            before, before_server = cpu_secs(), cpu_secs(pid)
            served, answer = upload(server.url, source, f"bench_{round_no}")
            cpu["client"].append(cpu_secs() - before)
            cpu["lakehouse"].append(cpu_secs(pid) - before_server)
            assert answer["rows"] == rows, answer
            times["lakehouse"].append(served)
            raw = times["duckdb"][-1]
            line = f"round {round_no}: duckdb COPY {raw:.2f} s"
            if polars is not None:
                line += f" | polars sink {times['polars'][-1]:.2f} s"
            line += f" | lakehouse {served:.2f} s ({size / MIB / served:.0f} MiB/s) | {served / raw:.2f}x"
            print(line, flush=True)
        peak = peak_rss_mib(pid)
        phases = _PHASES.findall(server.log())
    finally:
        server.stop()
        for leftover in (work / "direct.parquet", work / "polars.parquet"):
            leftover.unlink(missing_ok=True)
    medians = {k: statistics.median(v) for k, v in times.items() if v}
    print(f"median of {rounds}: " + " | ".join(f"{k} {v:.2f} s" for k, v in medians.items()))
    cpus = {k: statistics.median(v) for k, v in cpu.items() if v}
    print("median CPU seconds: " + " | ".join(f"{k} {v:.2f}" for k, v in cpus.items()))
    ratio = medians["lakehouse"] / medians["duckdb"]
    print(f"lakehouse / duckdb COPY: {ratio:.2f}x (target <= 1.0x)")
    if "polars" in medians:
        print(f"lakehouse / polars sink: {medians['lakehouse'] / medians['polars']:.2f}x")
    for name, timing in phases:
        print(f"  server {name}: {timing}")
    print(f"server peak RSS {peak:.0f} MiB (at start {base_rss:.0f} MiB; target < 1024 MiB)")
    print(f"load average after {os.getloadavg()[0]:.2f}")


# CSVs the ingest tests use, and ones where polars was seen to read otherwise than DuckDB.
AGREEMENT_CASES: dict[str, bytes] = {
    "staffing placements": csv_bytes("placements", 2000),
    "staffing candidates": csv_bytes("candidates", 2000),
    "semicolon, decimal comma": b"city;amount\nLyon;1,50\nGent;2,75\n",
    "quoted delimiters": b'id,name,price,note\n1,Ada,9.5,"a,b;c|d"\n2,Bo,7.25,"1,5"\n',
    "ragged long": b"a,b\n1,2\n3,4,5\n",
    "ragged short": b"a,b\n1,2\n3\n",
    "unterminated quote": b'a,b\n1,"open\n',
    "not UTF-8": b"a,b\n1,\xff\xfe\n",
    "late type change": b"n\n" + b"1\n" * 30000 + b"n/a\n",
    "late short row": b"a,b\n" + b"1,2\n" * 30000 + b"1\n",
    "blank line inside": b"a,b\n1,2\n\n3,4\n",
    'quoted empty ""': b'a,b\n1,""\n2,\n',
    "month-first dates": b"a\n12/31/2020\n01/02/2021\n",
    "t/f booleans": b"a\nt\nf\n",
}


def polars_agreement() -> None:
    """Each case through today's converter and through polars given DuckDB's sniffed types; prints both."""
    import polars as pl

    from lakehouse.errors import LakehouseError
    from lakehouse.ingest import csv_reader
    from lakehouse.ingest.convert import to_parquet

    types: dict[str, Any] = {"BIGINT": pl.Int64, "DOUBLE": pl.Float64, "VARCHAR": pl.String}
    types |= {"DATE": pl.Date, "BOOLEAN": pl.Boolean, "TIMESTAMP": pl.Datetime("us")}
    read = "SELECT COLUMNS(*)::VARCHAR FROM read_parquet('{}')"
    with tempfile.TemporaryDirectory(prefix="bench-polars-") as tmp, duckdb.connect() as conn:
        source, ours, theirs = Path(tmp) / "in.csv", Path(tmp) / "ours.parquet", Path(tmp) / "theirs.parquet"
        for case, data in AGREEMENT_CASES.items():
            source.write_bytes(data)
            try:
                to_parquet(source, ours, threads=0, memory_limit="512MB", dataset="t", declared="csv")
                today: str | list[Any] = conn.execute(read.format(ours)).fetchall()
            except LakehouseError as exc:
                today = f"{exc.code} at line {exc.detail.get('line')}"
            delimiter = csv_reader.detect_delimiter(source)
            try:
                sniffed = conn.execute(
                    f"DESCRIBE SELECT * FROM {csv_reader.reader_sql(source, delimiter)}"
                ).fetchall()
                schema = {str(row[0]): types[str(row[1])] for row in sniffed}
                pl.scan_csv(source, separator=delimiter, schema=schema).sink_parquet(theirs)
                other: str | list[Any] = conn.execute(read.format(theirs)).fetchall()
            except Exception as exc:  # any refusal would fall back to today's path
                other = f"refused ({type(exc).__name__})"
            if today == other:
                verdict = "same"
            elif isinstance(other, str):
                verdict = "polars refuses: a fallback to DuckDB would keep today's answer"
            elif isinstance(today, str):
                verdict = f"DIFFERENT: today {today}, polars reads {len(other)} rows"
            else:
                verdict = f"DIFFERENT rows: today {today[:3]}, polars {other[:3]}"
            print(f"{case:26s} {verdict}")


def main() -> None:
    """Run the comparison at each size and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--data", type=Path, help="keep the generated CSVs here and reuse them")
    parser.add_argument(
        "--polars-agreement", action="store_true", help="only compare polars' reading with today's"
    )
    args = parser.parse_args()
    if args.polars_agreement:
        polars_agreement()
        return
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        data = args.data or work
        data.mkdir(parents=True, exist_ok=True)
        for rows in args.rows:
            bench_size(work, source_csv(data, rows), rows, args.rounds)


if __name__ == "__main__":
    main()
