"""PUT and GET of a large object through `lakehouse serve` vs the store library directly.

    .venv/bin/python bench/storage.py [--mib 200] [--rounds 2] [--backends local,s3]

For each backend (local folder; S3 through a moto server this script starts)
it prints MiB/s for the direct ObjectStore calls and for HTTP through a real
`lakehouse serve` process, their ratio (target >= 0.7x), and the server's peak
RSS growth during each transfer (target < 64 MiB).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.procs import LAKEHOUSE

from lakehouse.config import Settings, StorageConfig
from lakehouse.storage import open_store

MIB = 1024 * 1024
CHUNK = MIB
TIMEOUT = aiohttp.ClientTimeout(total=600)


def proc_kib(pid: int, field: str) -> int:
    """A `Vm*` field of /proc/<pid>/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


class PeakRss:
    """Peak RSS growth of a process across a block: resets VmHWM, reads it after."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.growth_mib = 0.0

    def __enter__(self) -> PeakRss:
        # Writing 5 to clear_refs resets the peak (VmHWM) to the current RSS.
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        self.base = proc_kib(self.pid, "VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        self.growth_mib = (proc_kib(self.pid, "VmHWM") - self.base) / 1024


def file_chunks(path: Path) -> Iterator[bytes]:
    """A file in 1 MiB chunks."""
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            yield chunk


async def afile_chunks(path: Path) -> AsyncIterator[bytes]:
    """A file in 1 MiB chunks, as an async stream."""
    for chunk in file_chunks(path):
        yield chunk


def timed(fn: Callable[[], Coroutine[Any, Any, None]]) -> float:
    """Seconds one run of the coroutine function took, on a fresh event loop."""
    started = time.perf_counter()
    asyncio.run(fn())
    return time.perf_counter() - started


# `lakehouse serve` and uvicorn each print the port they got on stderr.
LISTENING = re.compile(rb"(?:listening on|running on) http://127\.0\.0\.1:(\d+)")


class Server:
    """A server process on port 0, ready once it has said its port and `/health` answers."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [arg.replace("{port}", "0") for arg in argv],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        self.url = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not self.url:
                self.log.seek(0)
                found = LISTENING.search(self.log.read())
                self.url = f"http://127.0.0.1:{int(found.group(1))}" if found else ""
            try:
                if self.url and httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{argv[0]} did not start")

    @classmethod
    def lakehouse(cls, workdir: Path, storage: dict[str, Any], env: dict[str, str]) -> Server:
        """`lakehouse serve` with the given `[storage]` section."""
        lines = ["[storage]"]
        for key, value in storage.items():
            lines.append(f"{key} = {value!r}" if isinstance(value, int) else f'{key} = "{value}"')
        lines.append("[log]\nlevel = 'warning'")
        config = workdir / "lakehouse.toml"
        config.write_text("\n".join(lines) + "\n")
        return cls([LAKEHOUSE, "serve", "--config", str(config), "--bind", "127.0.0.1:{port}"], env)

    @classmethod
    def bare(cls, workdir: Path, size: int) -> Server:
        """A bare uvicorn + Starlette app that discards PUT bodies and streams zeros on GET."""
        (workdir / "bare_app.py").write_text(BARE_APP)
        argv = [sys.executable, "-m", "uvicorn", "bare_app:app", "--app-dir", str(workdir)]
        # info, so uvicorn says which port it got; no access log.
        argv += ["--port", "{port}", "--log-level", "info", "--no-access-log"]
        return cls(argv, {"BARE_SIZE": str(size)})

    def stop(self) -> None:
        """Stop the process."""
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


BARE_APP = """
import os
from starlette.applications import Starlette
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

SIZE = int(os.environ["BARE_SIZE"])
BLOCK = bytes(1024 * 1024)


async def put(request):
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
    return JSONResponse({"size": size}, status_code=201)


async def get(request):
    async def body():
        for _ in range(SIZE // len(BLOCK)):
            yield BLOCK

    return StreamingResponse(body(), headers={"Content-Length": str(SIZE)})


async def health(request):
    return JSONResponse({"status": "ok"})


app = Starlette(routes=[
    Route("/health", health),
    Route("/v1/storage/objects/{key:path}", put, methods=["PUT"]),
    Route("/v1/storage/objects/{key:path}", get, methods=["GET"]),
])
"""


async def served_put(url: str, blob: Path) -> None:
    """PUT the file to the storage route at `url` (a file body: Content-Length, streamed)."""
    async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
        with open(blob, "rb") as fh:
            async with session.put(f"{url}/v1/storage/objects/bench/served.bin", data=fh) as resp:
                resp.raise_for_status()


async def served_get(url: str) -> None:
    """GET the object back from `url`, discarding the bytes."""
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.get(f"{url}/v1/storage/objects/bench/served.bin") as resp,
    ):
        resp.raise_for_status()
        async for _ in resp.content.iter_chunked(CHUNK):
            pass


def bench_bare(blob: Path, rounds: int, workdir: Path) -> None:
    """The HTTP ceiling on this machine: the same client against an app that does no storage."""
    size_mib = blob.stat().st_size / MIB
    server = Server.bare(workdir, blob.stat().st_size)
    try:
        put = min(timed(lambda: served_put(server.url, blob)) for _ in range(rounds))
        get = min(timed(lambda: served_get(server.url)) for _ in range(rounds))
    finally:
        server.stop()
    print(
        f"bare  HTTP ceiling (uvicorn + Starlette, no storage): PUT {size_mib / put:7.1f} MiB/s, "
        f"GET {size_mib / get:7.1f} MiB/s"
    )


def bench_backend(
    name: str,
    settings: Settings,
    storage: dict[str, Any],
    env: dict[str, str],
    blob: Path,
    rounds: int,
    workdir: Path,
) -> None:
    """Print direct vs served throughput and server RSS growth for one backend."""
    size_mib = blob.stat().st_size / MIB
    store = open_store(settings)

    async def direct_put() -> None:
        await store.put("bench/direct.bin", afile_chunks(blob))

    async def direct_get() -> None:
        _, chunks = await store.get("bench/direct.bin")
        async for _ in chunks:
            pass

    server = Server.lakehouse(workdir, storage, env)
    best: dict[str, float] = {}
    rss: dict[str, float] = {"put": 0.0, "get": 0.0}
    try:
        for _ in range(rounds):
            for label, coro in (("direct put", direct_put), ("direct get", direct_get)):
                best[label] = min(best.get(label, 1e9), timed(coro))
            for op, coro in (
                ("put", lambda: served_put(server.url, blob)),
                ("get", lambda: served_get(server.url)),
            ):
                with PeakRss(server.proc.pid) as peak:
                    seconds = timed(coro)
                best[f"served {op}"] = min(best.get(f"served {op}", 1e9), seconds)
                rss[op] = max(rss[op], peak.growth_mib)
    finally:
        server.stop()
        asyncio.run(store.close())
    for op in ("put", "get"):
        direct = size_mib / best[f"direct {op}"]
        served = size_mib / best[f"served {op}"]
        print(
            f"{name:5} {op.upper():3} {size_mib:.0f} MiB: direct {direct:7.1f} MiB/s, "
            f"served {served:7.1f} MiB/s, ratio {served / direct:.2f}x, "
            f"server peak RSS growth {rss[op]:.1f} MiB"
        )


def main() -> None:
    """Run the benchmark for the chosen backends."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--backends", default="local,s3")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lakehouse-bench-") as tmp:
        workdir = Path(tmp)
        blob = workdir / "blob.bin"
        with open(blob, "wb") as fh:
            for _ in range(args.mib):
                fh.write(os.urandom(MIB))
        backends = args.backends.split(",")
        bench_bare(blob, args.rounds, workdir)
        if "local" in backends:
            root = str(workdir / "data")
            storage: dict[str, Any] = {"root": root, "max_object_bytes": 1024 * MIB}
            settings = Settings(storage=StorageConfig(root=root))
            bench_backend("local", settings, storage, {}, blob, args.rounds, workdir)
        if "s3" in backends:
            bench_s3(blob, args.rounds, workdir)


def bench_s3(blob: Path, rounds: int, workdir: Path) -> None:
    """The S3 half: a moto server in this process, a bucket, then the same measurements."""
    import boto3
    from moto.server import ThreadedMotoServer

    env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    os.environ.update(env)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto logs every request
    moto.start()
    port = moto.get_host_and_port()[1]
    try:
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="bench")
        storage: dict[str, Any] = {
            "backend": "s3",
            "bucket": "bench",
            "endpoint": endpoint,
            "secrets": str(workdir / "no-secrets.toml"),
            "max_object_bytes": 1024 * MIB,
        }
        settings = Settings(storage=StorageConfig(**storage))
        bench_backend("s3", settings, storage, env, blob, rounds, workdir)
    finally:
        moto.stop()


if __name__ == "__main__":
    main()
