"""CSV ingest through `lakehouse serve` vs DuckDB's own CSV -> Parquet COPY on the same file.

    .venv/bin/python bench/ingest.py [--rows 1000000] [--rounds 2]

Generates the staffing candidates CSV (1,000,000 rows by default) in a temp
folder, then for each round: DuckDB in this process runs
`COPY (SELECT * FROM read_csv(...)) TO ... (FORMAT parquet, COMPRESSION zstd)`,
and the same file is uploaded to `POST /v1/ingest/<name>?mode=replace` of a
real `lakehouse serve` (local storage). Prints both times, their ratio
(target <= 1.5x) and the server's peak RSS (target < 1 GiB).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.procs import LakehouseProcess, write_config
from tests.support.staffing import write_csv

MIB = 1024 * 1024


def peak_rss_mib(pid: int) -> float:
    """VmHWM (peak resident set) of a process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise KeyError("VmHWM")


def duckdb_copy(source: Path, target: Path) -> float:
    """Seconds DuckDB alone takes to turn the CSV into zstd Parquet."""
    started = time.perf_counter()
    with duckdb.connect() as conn:
        conn.execute(
            f"COPY (SELECT * FROM read_csv('{source}')) TO '{target}' (FORMAT parquet, COMPRESSION zstd)"
        )
    return time.perf_counter() - started


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


def main() -> None:
    """Run the comparison and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        source = work / "candidates.csv"
        started = time.perf_counter()
        write_csv(source, "candidates", args.rows)
        size = source.stat().st_size
        print(f"generated {args.rows} rows, {size / MIB:.0f} MiB in {time.perf_counter() - started:.1f} s")
        config = write_config(work / "lakehouse.toml", {"storage": {"root": str(work / "data")}})
        server = LakehouseProcess(config).start()
        try:
            assert server.proc is not None
            base_rss = peak_rss_mib(server.proc.pid)
            for round_no in range(1, args.rounds + 1):
                raw = duckdb_copy(source, work / "direct.parquet")
                # The same bytes again would be answered "already ingested": one dataset per round.
                served, answer = upload(server.url, source, f"bench_{round_no}")
                assert answer["rows"] == args.rows, answer
                print(
                    f"round {round_no}: duckdb COPY {raw:.2f} s ({size / MIB / raw:.0f} MiB/s) | "
                    f"lakehouse ingest {served:.2f} s ({size / MIB / served:.0f} MiB/s) | "
                    f"ratio {served / raw:.2f}x (target <= 1.5x)"
                )
            peak = peak_rss_mib(server.proc.pid)
            print(f"server peak RSS {peak:.0f} MiB (at start {base_rss:.0f} MiB; target < 1024 MiB)")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
