"""Gateway overhead in split mode: requests/s and p99 through the gateway vs the service directly.

Starts `lakehouse serve storaged` and `lakehouse serve gateway` on free ports
(local storage in a temp folder), then drives each URL with `wrk` (or, when
wrk is absent, an aiohttp load generator) and prints the ratios. Also streams
a large upload through the gateway and reports the gateway's RSS growth.

    .venv/bin/python bench/gateway.py [--seconds 5] [--connections 32] [--upload-mib 256]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.procs import LakehouseProcess, write_config

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk(url: str, seconds: float, connections: int) -> tuple[float, float]:
    """(requests/s, p99 ms) from one wrk run."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
    if "Non-2xx" in out:
        raise RuntimeError(f"{url} answered errors under load:\n{out}")
    return rps, float(value) * _UNITS[unit]


async def _aiohttp_load(url: str, seconds: float, connections: int) -> tuple[float, float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with session.get(url) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{url} answered {response.status}")
                latencies.append((time.perf_counter() - started) * 1000)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return len(latencies) / elapsed, latencies[int(len(latencies) * 0.99) - 1]


def measure(url: str, seconds: float, connections: int) -> tuple[float, float]:
    """(requests/s, p99 ms) for GET `url`, after a short warm-up."""
    if shutil.which("wrk"):
        wrk(url, 1, connections)
        return wrk(url, seconds, connections)
    asyncio.run(_aiohttp_load(url, 1, connections))
    return asyncio.run(_aiohttp_load(url, seconds, connections))


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """A memory figure of a process from /proc, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} for pid {pid}")


def upload_growth(gateway: LakehouseProcess, mib: int) -> tuple[float, float]:
    """(MiB/s, gateway peak RSS growth in MiB) for one streamed upload of `mib` MiB."""
    assert gateway.proc is not None
    pid = gateway.proc.pid
    before = rss_mib(pid)
    block = b"\x5a" * (1024 * 1024)

    def body() -> Iterator[bytes]:
        for _ in range(mib):
            yield block

    started = time.perf_counter()
    with httpx.Client(base_url=gateway.url, timeout=300) as client:
        response = client.put("/v1/storage/objects/bench/upload.bin", content=body())
        response.raise_for_status()
    elapsed = time.perf_counter() - started
    return mib / elapsed, rss_mib(pid, "VmHWM") - before


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--upload-mib", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(
            Path(tmp) / "lakehouse.toml",
            {
                "storage": {"root": str(Path(tmp) / "data"), "max_concurrent": 256},
                "log": {"level": "warning"},
            },
        )
        storaged = LakehouseProcess(config, service="storaged")
        gateway = LakehouseProcess(config, service="gateway")
        try:
            storaged.start()  # port 0; the gateway is told the port storaged got
            gateway.env["LAKEHOUSE_GATEWAY__STORAGED_URL"] = storaged.url
            gateway.start()
            with httpx.Client(base_url=storaged.url) as client:
                client.put("/v1/storage/objects/bench/small.json", content=b'{"hello": "world"}' * 50)
            rows = []
            for label, path in (
                ("GET /health", "/health"),
                ("GET 900 B object", "/v1/storage/objects/bench/small.json"),
            ):
                direct = measure(storaged.url + path, args.seconds, args.connections)
                proxied = measure(gateway.url + path, args.seconds, args.connections)
                rows.append((label, direct, proxied))
            tool = "wrk" if shutil.which("wrk") else "aiohttp"
            print(f"load: {tool}, {args.connections} connections, {args.seconds:.0f}s per run")
            header = ("request", "direct rps", "gateway rps", "ratio", "p99 direct", "p99 gateway")
            print("{:<18} {:>11} {:>12} {:>6} {:>11} {:>12}".format(*header))
            for label, (d_rps, d_p99), (g_rps, g_p99) in rows:
                print(
                    f"{label:<18} {d_rps:>11.0f} {g_rps:>12.0f} {g_rps / d_rps:>6.2f}x"
                    f" {d_p99:>9.1f}ms {g_p99:>10.1f}ms"
                )
            if args.upload_mib:
                speed, growth = upload_growth(gateway, args.upload_mib)
                print(
                    f"upload {args.upload_mib} MiB via gateway: {speed:.0f} MiB/s,"
                    f" gateway peak RSS growth {growth:.1f} MiB"
                )
        finally:
            gateway.stop()
            storaged.stop()


if __name__ == "__main__":
    main()
