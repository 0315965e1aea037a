"""Closed-loop HTTP load against `ganforge serve`: N concurrent clients, each sending single-seed KServe v2
requests back to back for D seconds (perf_analyzer's concurrency mode). The client runs on the same machine,
so on 2 cores it takes CPU from the server: the numbers are a floor.

    python benchmarks/http_load.py MODEL [--backend onnxruntime] [--concurrency 32] [--duration 10]
Prints images/s and latency percentiles and writes benchmarks/results/http_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import httpx

from ganforge.benchmarks.bench.http_scenario import seed_request
from ganforge.benchmarks.bench.http_server import serving
from ganforge.timing import percentiles


async def load(url: str, concurrency: int, duration: float) -> dict:
    latencies, errors = [], 0
    deadline = time.perf_counter() + duration

    async def client(worker: int) -> None:
        nonlocal errors
        seed = worker * 1_000_000
        async with httpx.AsyncClient(timeout=30) as http:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await http.post(url, json=seed_request([seed]))
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1
                seed += 1

    started = time.perf_counter()
    await asyncio.gather(*[client(i) for i in range(concurrency)])
    elapsed = time.perf_counter() - started
    return {"concurrency": concurrency, "seconds": elapsed, "completed": len(latencies), "errors": errors,
            "images_per_second": len(latencies) / elapsed,
            "latency_ms": {k: v * 1e3 for k, v in percentiles(latencies).items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "http_load.json"))
    args = parser.parse_args()
    with serving(args.model, args.backend, max_batch=args.max_batch) as base:
        asyncio.run(load(f"{base}/v2/models/generator/infer", args.concurrency, 1.0))  # warm-up
        result = asyncio.run(load(f"{base}/v2/models/generator/infer", args.concurrency, args.duration))
        metrics = httpx.get(f"{base}/metrics").text
        batches = next(float(line.split()[-1]) for line in metrics.splitlines()
                       if line.startswith("ganforge_batch_size_count"))
        images = next(float(line.split()[-1]) for line in metrics.splitlines()
                      if line.startswith("ganforge_batch_size_sum"))
        result.update(backend=args.backend, mean_batch_size=images / batches)
    print(f"{args.backend}: {result['images_per_second']:.0f} img/s with {args.concurrency} concurrent single-seed "
          f"clients, mean batch {result['mean_batch_size']:.1f}, p50 {result['latency_ms']['p50']:.1f} ms, "
          f"p99 {result['latency_ms']['p99']:.1f} ms, errors {result['errors']}")
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
