"""Gateway overhead in split mode: requests/s and p99 through the gateway vs the service directly.

Starts `lakehouse serve storaged` and `lakehouse serve gateway` on free ports
(local storage in a temp folder), then drives each URL with `wrk` (or, when
wrk is absent, an aiohttp load generator) and prints the ratios. Also streams
a large upload through the gateway and reports the gateway's RSS growth.

`--conventions` instead measures what gzip and the metrics cost: the same app
(embedded storaged, and the split gateway in front of it) served with and
without those two middlewares, answering a 6 KiB JSON listing (gzipped) and
`/health`, runs alternating on/off; the medians' ratio is printed (target >= 0.9x).

    .venv/bin/python bench/gateway.py [--seconds 5] [--connections 32] [--upload-mib 256]
    .venv/bin/python bench/gateway.py --conventions [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


async def _aiohttp_load(
    url: str, seconds: float, connections: int, headers: dict[str, str] | None = None
) -> tuple[float, float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as session:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with session.get(url, headers=headers) as response:
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


def serve_variant(config: Path, kind: str, conventions: bool, port_file: Path) -> None:
    """Serve the storaged app ("storaged") or the split gateway ("gateway"), gzip + metrics on or off.

    Runs in a child process: binds port 0, writes the port to `port_file`, serves until killed.
    """
    import uvicorn

    from lakehouse.auth import with_auth
    from lakehouse.config import load_settings
    from lakehouse.services.app import create_app
    from lakehouse.services.compression import GzipJson
    from lakehouse.services.cors import with_cors
    from lakehouse.services.gateway import Gateway, create_gateway_app
    from lakehouse.services.http import RequestContext
    from lakehouse.services.limits import BodyLimits
    from lakehouse.services.metrics import MetricsMiddleware
    from lakehouse.services.protocol import serve_options

    settings = load_settings(config)
    app: Any
    if kind == "storaged":
        app = create_app(settings, ["storaged"], name="storaged", bind_host="127.0.0.1")
        if not conventions:
            app.user_middleware = [
                m for m in app.user_middleware if m.cls not in (GzipJson, MetricsMiddleware)
            ]
    elif conventions:
        app = create_gateway_app(settings, bind_host="127.0.0.1")
    else:  # create_gateway_app's chain without the two middlewares
        inner = with_cors(with_auth(Gateway(settings), settings, "127.0.0.1"), settings.http)
        app = RequestContext(BodyLimits(inner, settings.http), service="gateway")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port_file.write_text(str(sock.getsockname()[1]))
    served = uvicorn.Config(
        app, access_log=False, log_level="warning", lifespan="on", **serve_options(settings.http)
    )
    uvicorn.Server(served).run(sockets=[sock])


class Variant:
    """One `serve_variant` child process."""

    def __init__(self, config: Path, kind: str, conventions: bool, env: dict[str, str]) -> None:
        self.port_file = config.parent / f"{kind}-{conventions}.port"
        self.port_file.unlink(missing_ok=True)
        argv = [sys.executable, __file__, "--serve-variant", kind, "--config", str(config)]
        argv += ["--port-file", str(self.port_file)] + ([] if conventions else ["--off"])
        self.proc = subprocess.Popen(argv, env={**os.environ, **env})
        deadline = time.monotonic() + 30
        while not (self.port_file.exists() and self.port_file.read_text()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"{kind} variant did not start")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port_file.read_text()}"
        while True:
            try:
                httpx.get(self.url + "/health", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        """End the child (it is ours)."""
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def conventions_bench(seconds: float, connections: int, rounds: int) -> None:
    """Requests/s with gzip + metrics on vs off, for storaged and for the split gateway."""
    gz = {"Accept-Encoding": "gzip"}
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(
            Path(tmp) / "lakehouse.toml",
            {
                "storage": {"root": str(Path(tmp) / "data"), "max_concurrent": 256},
                "log": {"level": "warning"},
            },
        )
        upstream = Variant(config, "storaged", True, {})
        try:
            with httpx.Client(base_url=upstream.url) as client:
                for i in range(50):
                    client.put(f"/v1/storage/objects/bench/list/{i:03d}-{'k' * 40}", content=b"x")
                size = len(client.get("/v1/storage/objects?prefix=bench/list/").content)
        finally:
            upstream.stop()
        print(f"load: aiohttp, {connections} connections, {seconds:.0f}s per run, {rounds} rounds on/off")
        print(f"{'app':<9} {'request':<22} {'on rps':>8} {'off rps':>8} {'on/off':>7}")
        for kind in ("storaged", "gateway"):
            env: dict[str, str] = {}
            behind: Variant | None = None
            if kind == "gateway":
                behind = Variant(config, "storaged", True, {})
                env = {"LAKEHOUSE_GATEWAY__STORAGED_URL": behind.url}
            try:
                for label, path in (
                    (f"GET {size} B JSON list", "/v1/storage/objects?prefix=bench/list/"),
                    ("GET /health", "/health"),
                ):
                    on: list[float] = []
                    off: list[float] = []
                    for _ in range(rounds):
                        for conventions, results in ((True, on), (False, off)):
                            variant = Variant(config, kind, conventions, env)
                            try:
                                url = variant.url + path
                                asyncio.run(_aiohttp_load(url, 1, connections, gz))
                                results.append(asyncio.run(_aiohttp_load(url, seconds, connections, gz))[0])
                            finally:
                                variant.stop()
                    ratio = statistics.median(on) / statistics.median(off)
                    spread = f"on {min(on):.0f}-{max(on):.0f}, off {min(off):.0f}-{max(off):.0f}"
                    print(
                        f"{kind:<9} {label:<22} {statistics.median(on):>8.0f}"
                        f" {statistics.median(off):>8.0f} {ratio:>6.2f}x  ({spread})"
                    )
            finally:
                if behind is not None:
                    behind.stop()


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--upload-mib", type=int, default=256)
    parser.add_argument("--conventions", action="store_true", help="gzip + metrics on vs off")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve-variant", choices=["storaged", "gateway"], help=argparse.SUPPRESS)
    parser.add_argument("--config", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--off", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_variant:
        serve_variant(args.config, args.serve_variant, not args.off, args.port_file)
        return
    if args.conventions:
        conventions_bench(args.seconds, args.connections, args.rounds)
        return
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
