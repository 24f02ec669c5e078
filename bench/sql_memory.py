"""The memory bound of `/v1/sql`: peak RSS of a real `lakehouse serve` and its query workers.

    .venv/bin/python bench/sql_memory.py [--memory-limit 1GB] [--timeout 5] [--at-once 1]

Starts a server with `[queryd] memory_limit` and `timeout_secs` as given,
sends `SELECT length(repeat('x', 2000000000))` (`--at-once` copies in
parallel) and samples the resident memory of the server process and all its
children every 10 ms until every answer is in. Prints the peak (target under
2.5 GiB with memory_limit "1GB"), each answer's status and time (target
within the timeout plus 2 s), and that a plain query still works afterwards.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.procs import LakehouseProcess, write_config

HUGE = "SELECT length(repeat('x', 2000000000))"
PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and every process whose parent chain reaches it."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            statm = Path(f"/proc/{entry}/statm").read_text().split()
        except OSError:
            continue
        parents[int(entry)] = int(stat[1])
        rss[int(entry)] = int(statm[1]) * PAGE
    total = 0
    for proc, size in rss.items():
        walk = proc
        while walk not in (0, 1) and walk != pid:
            walk = parents.get(walk, 0)
        if walk == pid:
            total += size
    return total


def main() -> None:
    """Run the measurement and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memory-limit", default="1GB")
    parser.add_argument("--timeout", type=float, default=5.0)
    parser.add_argument("--at-once", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sql-memory-") as tmp:
        work = Path(tmp)
        config = write_config(
            work / "lakehouse.toml",
            {
                "storage": {"root": str(work / "data")},
                "queryd": {
                    "memory_limit": args.memory_limit,
                    "timeout_secs": args.timeout,
                    "workers": max(2, args.at_once),
                },
            },
        )
        server = LakehouseProcess(config).start()
        try:
            assert server.proc is not None
            pid = server.proc.pid
            with server.client(timeout=120) as client:
                client.post("/v1/sql", json={"sql": "SELECT 1"}).raise_for_status()  # workers up
            idle = tree_rss(pid)
            answers: list[tuple[int, float, str]] = []

            def ask() -> None:
                with server.client(timeout=120) as client:
                    started = time.monotonic()
                    answer = client.post("/v1/sql", json={"sql": HUGE})
                    message = answer.json().get("error", {}).get("message", "") if answer.status_code else ""
                    first = message.splitlines()[0] if message else ""
                    answers.append((answer.status_code, time.monotonic() - started, first[:100]))

            askers = [threading.Thread(target=ask) for _ in range(args.at_once)]
            peak = idle
            for asker in askers:
                asker.start()
            while any(a.is_alive() for a in askers):
                peak = max(peak, tree_rss(pid))
                time.sleep(0.01)
            with server.client(timeout=120) as client:
                after = client.post("/v1/sql", json={"sql": "SELECT 42"}).json()["rows"]
            gib = 2**30
            print(
                f"memory_limit {args.memory_limit}, timeout {args.timeout:g} s, {args.at_once} at once; "
                f"server + workers RSS idle {idle / gib:.2f} GiB, "
                f"peak {peak / gib:.2f} GiB (target < 2.5 GiB)"
            )
            for status, seconds, message in answers:
                print(f"  answer {status} in {seconds:.2f} s (target < {args.timeout + 2:g} s): {message}")
            print(f"  next query: {after}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
