"""`/v1/sql` of a real `lakehouse serve` vs in-process DuckDB on the same Parquet file.

    .venv/bin/python bench/sql.py [--rows 1000000] [--repeat 50]

Ingests the staffing candidates CSV (1,000,000 rows by default), then times
`SELECT count(*)`, a `GROUP BY` and a point lookup through HTTP (keep-alive
client, JSON answers) and in-process (DuckDB over the dataset's Parquet file
in the store's folder), alternating the two so both see the same machine
load. Prints the p50 of each and the added latency (target < 5 ms). Then
fetches a 100,000-row result as an Arrow IPC stream over HTTP and
in-process (`to_arrow_table`), and prints both rates and their ratio (target
>= 0.5x).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.procs import LakehouseProcess, write_config
from tests.support.staffing import write_csv

QUERIES = {
    "count(*)": "SELECT count(*) FROM {t}",
    "group by": "SELECT city, count(*), avg(hourly_rate) FROM {t} GROUP BY city ORDER BY city",
    "point lookup": "SELECT * FROM {t} WHERE candidate_id = 777777",
}
ARROW_SQL = "SELECT * FROM {t} LIMIT 100000"
ARROW = "application/vnd.apache.arrow.stream"


def p50s_ms(fns: list[Callable[[], object]], repeat: int) -> list[float]:
    """Median wall time of each of `fns` in milliseconds, run in turn so they share the load."""
    for fn in fns:
        fn()
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for fn, kept in zip(fns, times, strict=True):
            started = time.perf_counter()
            fn()
            kept.append((time.perf_counter() - started) * 1000)
    return [statistics.median(kept) for kept in times]


def main() -> None:
    """Run the comparison and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sql-") as tmp:
        work = Path(tmp)
        source = write_csv(work / "candidates.csv", "candidates", args.rows)
        config = write_config(work / "lakehouse.toml", {"storage": {"root": str(work / "data")}})
        server = LakehouseProcess(config).start()
        try:
            with server.client(timeout=600) as client:
                with open(source, "rb") as fh:
                    client.post("/v1/ingest/candidates", content=fh).raise_for_status()
                parquet = next((work / "data" / "objects" / "_lakehouse" / "datasets").rglob("*.parquet"))
                local = duckdb.connect(config={"threads": 2})
                here = f"read_parquet('{parquet}')"
                load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
                print(f"{args.rows} rows; p50 of {args.repeat} runs each, in turn; load average {load}")
                for label, template in QUERIES.items():
                    body = {"sql": template.format(t="candidates")}
                    sql_here = template.format(t=here)

                    def over_http(body: dict[str, str] = body) -> object:
                        answer = client.post("/v1/sql", json=body)
                        answer.raise_for_status()
                        return answer.json()

                    def in_process(sql: str = sql_here) -> object:
                        return local.execute(sql).fetchall()

                    http_ms, local_ms = p50s_ms([over_http, in_process], args.repeat)
                    print(
                        f"  {label:13s} in-process {local_ms:7.2f} ms | /v1/sql {http_ms:7.2f} ms | "
                        f"added {http_ms - local_ms:6.2f} ms (target < 5 ms)"
                    )

                def arrow_http() -> int:
                    with client.stream(
                        "POST",
                        "/v1/sql",
                        json={"sql": ARROW_SQL.format(t="candidates")},
                        headers={"accept": ARROW},
                    ) as answer:
                        answer.raise_for_status()
                        table = pa.ipc.open_stream(answer.read()).read_all()
                    return table.num_rows

                def arrow_here() -> int:
                    return int(local.execute(ARROW_SQL.format(t=here)).to_arrow_table().num_rows)

                assert arrow_http() == arrow_here() == min(100_000, args.rows)
                http_ms, local_ms = p50s_ms([arrow_http, arrow_here], max(5, args.repeat // 5))
                rows = min(100_000, args.rows)
                http_rate, local_rate = rows / http_ms * 1000, rows / local_ms * 1000
                print(
                    f"  arrow 100k    in-process {local_rate / 1e6:6.2f} M rows/s | over HTTP "
                    f"{http_rate / 1e6:6.2f} M rows/s | ratio {http_rate / local_rate:.2f}x (target >= 0.5x)"
                )
        finally:
            server.stop()


if __name__ == "__main__":
    main()
