"""Start-up: seconds from starting `lakehouse serve` to listening and to `GET /health` 200.

Each round makes an empty data folder, starts `lakehouse serve` (every
service in one process) on a free port, reads stderr until the
`lakehouse all listening on <url>` line, then polls `/health` over a raw
HTTP/1.1 connection (so the poller's own start-up does not count) until it
answers 200, and stops the server. Prints each round and the medians, with
the CPU seconds the server process had used by then and by listening
(steadier than wall time when other work shares the machine; the query
workers it spawns are other processes and not counted; CPU after listening
includes the warm-up thread's imports). The target is a healthy server in
under 1 s.

    .venv/bin/python bench/startup.py [--runs 7] [--import-times]

`--import-times` also prints the slowest imports of one start
(`python -X importtime`), the first place to look when the figure moves.

The package's bytecode is compiled first (`compileall`): an installed wheel
ships it, and a source tree run with `PYTHONDONTWRITEBYTECODE=1` would
otherwise compile every changed module on every start (about 0.2 s here).
"""

from __future__ import annotations

import argparse
import compileall
import http.client
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAKEHOUSE = Path(sys.executable).with_name("lakehouse")
LISTENING = re.compile(rb"listening on http://127\.0\.0\.1:(\d+)")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds process `pid` has used so far (Linux; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def one_start(
    folder: Path, extra_env: dict[str, str] | None = None
) -> tuple[float, float, float, float, bytes]:
    """One start on an empty folder: seconds to listening and to healthy, CPU seconds by each, stderr."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data"
    config = folder / "lakehouse.toml"
    config.write_text(f'[gateway]\nbind = "127.0.0.1:0"\n[storage]\nroot = "{data}"\n')
    env = {**os.environ, **(extra_env or {})}
    began = time.perf_counter()
    proc = subprocess.Popen(
        [str(LAKEHOUSE), "serve", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stderr is not None
    seen = b""
    try:
        while True:
            line = proc.stderr.readline()
            seen += line
            found = LISTENING.search(line)
            if found:
                break
            if not line:
                raise RuntimeError(f"lakehouse serve exited before listening:\n{seen.decode()}")
        listening = time.perf_counter() - began
        cpu_listening = cpu_seconds(proc.pid)
        port = int(found.group(1))
        while True:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            try:
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(0.002)
        healthy = time.perf_counter() - began
        cpu = cpu_seconds(proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return listening, healthy, cpu_listening, cpu, seen


def import_times(folder: Path, top: int) -> list[tuple[int, str]]:
    """The `top` slowest imports (cumulative microseconds, module) of one start."""
    *_, seen = one_start(folder, {"PYTHONPROFILEIMPORTTIME": "1"})
    rows: list[tuple[int, str]] = []
    for line in seen.decode(errors="replace").splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, module = line.split("|", 2)
            if cumulative.strip().isdigit():
                rows.append((int(cumulative), module.rstrip()))
    return sorted(rows, reverse=True)[:top]


def main() -> None:
    """Run the rounds and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--import-times", action="store_true", help="also print the slowest imports")
    args = parser.parse_args()
    listening: list[float] = []
    healthy: list[float] = []
    cpu: list[float] = []
    cpu_listening: list[float] = []
    import lakehouse

    compileall.compile_dir(str(Path(lakehouse.__file__).parent), quiet=1)
    with tempfile.TemporaryDirectory(prefix="lh-startup-") as tmp:
        one_start(Path(tmp) / "warm")  # not counted: fills the OS page cache
        for run in range(args.runs):
            folder = Path(tmp) / f"run{run}"
            to_listen, to_health, used_listening, used, _ = one_start(folder)
            listening.append(to_listen)
            healthy.append(to_health)
            cpu_listening.append(used_listening)
            cpu.append(used)
            print(
                f"run {run + 1}: listening {to_listen:.3f} s, healthy {to_health:.3f} s, "
                f"cpu {used:.2f} s ({used_listening:.2f} s by listening)",
                flush=True,
            )
        print(
            f"median of {args.runs}: listening {statistics.median(listening):.3f} s, "
            f"healthy {statistics.median(healthy):.3f} s (best {min(healthy):.3f} s), "
            f"cpu {statistics.median(cpu):.2f} s ({statistics.median(cpu_listening):.2f} s by listening)"
        )
        if args.import_times:
            folder = Path(tmp) / "imports"
            print("slowest imports of one start (cumulative ms):")
            for micros, module in import_times(folder, 25):
                print(f"  {micros / 1000:8.1f}  {module}")


if __name__ == "__main__":
    main()
