"""Token checking's cost: requests/s for GET /v1/catalog/datasets with auth on vs off.

Starts two `lakehouse serve` processes over the same data (a temp folder
holding a few datasets and a read token): one with `[auth] required = true`,
one with `false`. Each is driven in turn by the same aiohttp load generator,
alternating for a few rounds so both see the same machine; the best round of
each is compared. The target is a ratio of at least 0.9.

    .venv/bin/python bench/auth.py [--seconds 4] [--connections 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.procs import LAKEHOUSE, LakehouseProcess, write_config

PATH = "/v1/catalog/datasets"
DATASETS = 20


async def load(url: str, seconds: float, connections: int, headers: dict[str, str]) -> float:
    """Requests/s for GET `url` from `connections` concurrent clients over `seconds`."""
    done = 0
    deadline = time.perf_counter() + seconds
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                async with session.get(url) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{url} answered {response.status}")
                done += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - began
    return done / elapsed


def seed(config: Path, url: str) -> str:
    """A few datasets (ingested through `url`) and a read token; the token."""
    import httpx

    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(DATASETS):
            body = f"id,name\n{i},row{i}\n".encode()
            answer = client.post(f"/v1/ingest/bench_{i}", content=body, headers={"content-type": "text/csv"})
            answer.raise_for_status()
    out = subprocess.run(
        [LAKEHOUSE, "token", "create", "bench", "--scope", "read", "--config", str(config)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.strip().splitlines()[-1]


def main() -> None:
    """Run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        common = {"storage": {"root": str(root / "data")}, "log": {"level": "warning"}}
        off_config = write_config(root / "off.toml", {**common, "auth": {"required": False}})
        on_config = write_config(root / "on.toml", {**common, "auth": {"required": True}})
        off = LakehouseProcess(off_config).start()
        on = None
        try:
            token = seed(off_config, off.url)
            on = LakehouseProcess(on_config).start()
            runs: dict[str, list[float]] = {"off": [], "on": []}
            targets = {
                "off": (off.url + PATH, {}),
                "on": (on.url + PATH, {"Authorization": f"Bearer {token}"}),
            }
            for url, headers in targets.values():  # warm-up
                asyncio.run(load(url, 1.0, args.connections, headers))
            for _ in range(args.rounds):
                for name, (url, headers) in targets.items():
                    runs[name].append(asyncio.run(load(url, args.seconds, args.connections, headers)))
        finally:
            off.stop()
            if on is not None:
                on.stop()
    best_off, best_on = max(runs["off"]), max(runs["on"])
    print(
        f"GET {PATH} ({DATASETS} datasets), {args.connections} connections, {args.rounds} x {args.seconds:g}s"
    )
    print(f"  auth off: {best_off:8.0f} req/s   (rounds: {', '.join(f'{r:.0f}' for r in runs['off'])})")
    print(f"  auth on:  {best_on:8.0f} req/s   (rounds: {', '.join(f'{r:.0f}' for r in runs['on'])})")
    ratio = best_on / best_off
    print(f"  ratio on/off: {ratio:.3f}x (target >= 0.9x) {'ok' if ratio >= 0.9 else 'MISSED'}")


if __name__ == "__main__":
    main()
