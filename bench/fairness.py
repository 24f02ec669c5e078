"""Fast requests beside slow queries: small SQL, 4 KiB storage GETs and vector searches, alone and under load.

    .venv/bin/python bench/fairness.py [--requests 300] [--slow-clients 4] [--items 10000] [--rounds 1]
        [--load queries|spin] [--set queryd.workers=4 ...]

Starts a real `lakehouse serve` (local storage), ingests a 1,000-row dataset,
stores a 4 KiB object and builds a 10,000-item 384-d vector index (added in
batches). Then, one request at a time and in turn (so all three see the same
load), it times `SELECT count(*)` over the dataset, a GET of the object and a
k=10 vector search: first alone (the baseline), then while `--slow-clients`
clients each run a slow query (a cross join of two 20,000-row ranges, about
5 s alone on 2 cores, inside the sandbox and its memory limit) back to back.
`--load spin` is the control: instead of slow queries, two processes per slow
client spin the CPU outside lakehouse at the long queries' priority (nice +19),
so the ratios show what the machine itself costs the fast requests.
In-process DuckDB's own count over the dataset's Parquet file is timed in the
same loop as a reference. Prints p50 and p99 of each and the loaded/baseline
ratios (target: p50 within 1.5x, p99 within 2x); a loaded phase stops after
`--max-secs` (when small SQL queues behind the slow queries, say). `--set section.key=value`
adds a setting to the server's lakehouse.toml (to compare configurations).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.procs import LakehouseProcess, write_config
from tests.support.staffing import write_csv

SMALL_SQL = "SELECT count(*) FROM small"
SLOW_SQL = "SELECT count(*) FROM range(20000) a(x), range(20000) b(y) WHERE (x * 31 + y) % 97 = 0"
OBJECT_KEY = "bench/fairness-4k.bin"
DIM = 384
ADD_BATCH = 1000
KINDS = ("small SQL", "storage GET 4 KiB", "vector search k=10", "in-process DuckDB")


def load() -> str:
    """The 1/5/15-minute load averages."""
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def unit_vectors(count: int, rng: random.Random) -> list[list[float]]:
    """`count` random unit vectors of DIM floats (rounded, to keep the JSON short)."""
    out = []
    for _ in range(count):
        row = [rng.gauss(0.0, 1.0) for _ in range(DIM)]
        norm = sum(v * v for v in row) ** 0.5
        out.append([round(v / norm, 5) for v in row])
    return out


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of `values`, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


class SlowClients:
    """`count` threads, each sending the slow query back to back on its own connection."""

    def __init__(self, url: str, count: int) -> None:
        self._url = url
        self._stop = threading.Event()
        self._started = threading.Semaphore(0)
        self.durations: list[float] = []
        self.statuses: dict[int, int] = {}
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(count)]

    def __enter__(self) -> SlowClients:
        for thread in self._threads:
            thread.start()
        for _ in self._threads:
            self._started.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _loop(self) -> None:
        with httpx.Client(base_url=self._url, timeout=600.0) as client:
            self._started.release()
            while not self._stop.is_set():
                started = time.perf_counter()
                status = client.post("/v1/sql", json={"sql": SLOW_SQL}).status_code
                with self._lock:
                    self.durations.append(time.perf_counter() - started)
                    self.statuses[status] = self.statuses.get(status, 0) + 1


class Spinners:
    """The control: `count` processes outside lakehouse, each spinning one CPU at the slow queries' priority.

    They run `os.nice(19)` steps below this process, as a worker holding a long
    query runs below the server, so whatever the fast requests lose to them is
    the machine's own floor, not lakehouse's scheduling.
    """

    def __init__(self, count: int) -> None:
        self._count = count
        self._procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Spinners:
        spin = "import os\nos.nice(19)\nwhile True:\n    pass\n"
        self._procs = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(self._count)]
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self._procs:
            proc.kill()
        for proc in self._procs:
            proc.wait()


def measure(fns: list[Callable[[], object]], requests: int, max_secs: float = 1e9) -> list[list[float]]:
    """Milliseconds of `requests` calls of each of `fns`, called in turn, for at most `max_secs`."""
    times: list[list[float]] = [[] for _ in fns]
    deadline = time.monotonic() + max_secs
    for _ in range(requests):
        if time.monotonic() > deadline:
            break
        for fn, kept in zip(fns, times, strict=True):
            started = time.perf_counter()
            fn()
            kept.append((time.perf_counter() - started) * 1000)
    return times


def setup(client: httpx.Client, work: Path, items: int) -> list[list[float]]:
    """The dataset, the object and the vector index; returns the search queries."""
    source = write_csv(work / "small.csv", "candidates", 1000)
    with open(source, "rb") as fh:
        client.post("/v1/ingest/small", content=fh).raise_for_status()
    client.put(f"/v1/storage/objects/{OBJECT_KEY}", content=os.urandom(4096)).raise_for_status()
    client.post("/v1/vectors/index", json={"name": "fair", "dim": DIM}).raise_for_status()
    rng = random.Random(14)
    for start in range(0, items, ADD_BATCH):
        rows = unit_vectors(min(ADD_BATCH, items - start), rng)
        batch = [{"id": str(start + i), "vector": v} for i, v in enumerate(rows)]
        client.post("/v1/vectors/index/fair/add", json={"items": batch}).raise_for_status()
    return unit_vectors(64, rng)


def main() -> None:
    """Run the baseline and the loaded phase and print the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300, help="requests of each kind per phase")
    parser.add_argument("--slow-clients", type=int, default=4)
    parser.add_argument(
        "--load",
        choices=("queries", "spin"),
        default="queries",
        help="queries: slow SQL through the server; spin: the control, 2 CPU spinners per slow client",
    )
    parser.add_argument("--items", type=int, default=10_000, help="vectors in the index")
    parser.add_argument("--rounds", type=int, default=1, help="baseline + loaded pairs to run")
    parser.add_argument("--max-secs", type=float, default=120.0, help="longest a loaded phase may take")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args()
    sections: dict[str, dict[str, Any]] = {"queryd": {"timeout_secs": 300.0}}
    for item in args.set:
        name, _, value = item.partition("=")
        section, _, key = name.partition(".")
        parsed: Any = value
        for cast in (int, float):
            try:
                parsed = cast(value)
                break
            except ValueError:
                continue
        sections.setdefault(section, {})[key] = parsed
    with tempfile.TemporaryDirectory(prefix="bench-fairness-") as tmp:
        work = Path(tmp)
        sections["storage"] = {"root": str(work / "data")}
        server = LakehouseProcess(write_config(work / "lakehouse.toml", sections)).start()
        try:
            with server.client(timeout=600) as client:
                queries = setup(client, work, args.items)
                parquet = next((work / "data" / "objects" / "_lakehouse" / "datasets").rglob("*.parquet"))
                local = duckdb.connect(config={"threads": 2})
                here = f"SELECT count(*) FROM read_parquet('{parquet}')"
                turn = iter(range(10**9))

                def small_sql() -> object:
                    answer = client.post("/v1/sql", json={"sql": SMALL_SQL})
                    answer.raise_for_status()
                    return answer.json()

                def storage_get() -> object:
                    answer = client.get(f"/v1/storage/objects/{OBJECT_KEY}")
                    answer.raise_for_status()
                    return answer.content

                def vector_search() -> object:
                    body = {"vector": queries[next(turn) % len(queries)], "k": 10}
                    answer = client.post("/v1/vectors/index/fair/search", json=body)
                    answer.raise_for_status()
                    return answer.json()

                def in_process() -> object:
                    return local.execute(here).fetchall()

                fns = [small_sql, storage_get, vector_search, in_process]
                measure(fns, 20)  # warm every path (and start the workers)
                started = time.perf_counter()
                client.post("/v1/sql", json={"sql": SLOW_SQL}).raise_for_status()
                alone = time.perf_counter() - started
                settings = "; ".join(args.set) or "defaults"
                print(
                    f"server pid {server.proc.pid if server.proc else '?'}; config: {settings}; "
                    f"slow query alone {alone:.1f} s; {args.requests} requests of each kind per phase"
                )
                for round_no in range(1, args.rounds + 1):
                    before = load()
                    base = measure(fns, args.requests)
                    if args.load == "spin":
                        with Spinners(2 * args.slow_clients):
                            time.sleep(1.0)
                            loaded = measure(fns, args.requests, args.max_secs)
                        what = f"{2 * args.slow_clients} CPU spinners at nice +19 (the control)"
                    else:
                        with SlowClients(server.url, args.slow_clients) as slow:
                            time.sleep(1.0)  # let every slow query reach its worker
                            loaded = measure(fns, args.requests, args.max_secs)
                        median = statistics.median(slow.durations or [0])
                        what = (
                            f"{len(slow.durations)} slow queries finished, "
                            f"median {median:.1f} s, statuses {slow.statuses}"
                        )
                    print(
                        f"round {round_no}: load average {before} before, {load()} after; "
                        f"{len(loaded[0])} requests of each kind under load; {what}"
                    )
                    print(
                        f"  {'':20s} {'base p50':>9s} {'base p99':>9s} {'load p50':>9s} {'load p99':>9s}"
                        f" {'p50 x':>6s} {'p99 x':>6s}"
                    )
                    for kind, b, x in zip(KINDS, base, loaded, strict=True):
                        b50, b99, x50, x99 = (percentile(v, q) for v in (b, x) for q in (50, 99))
                        print(
                            f"  {kind:20s} {b50:7.2f}ms {b99:7.2f}ms {x50:7.2f}ms {x99:7.2f}ms"
                            f" {x50 / b50:5.2f}x {x99 / b99:5.2f}x"
                        )
                print("  targets: p50 within 1.5x, p99 within 2x of the baseline")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
