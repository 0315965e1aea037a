"""The server scenario over HTTP: Poisson single-seed KServe v2 requests against a running `ganforge serve`.

An open-loop client must not let a rate the server cannot keep up with grow without bound (on a small
machine the client itself then stalls), so at most ``max_in_flight`` requests are outstanding: an arrival
beyond that is counted as dropped, and requests still open ``drain_s`` after the last arrival are counted as
timed out. Either fails the rate, and higher rates are not tried once one is saturated.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from .scenarios import summarize_load
from .timing import percentiles


async def _poisson_http(url: str, rate: float, duration: float, max_in_flight: int, drain_s: float,
                        seed: int) -> dict:
    import httpx

    rng = np.random.default_rng(seed)
    latencies: list[float] = []
    errors = dropped = 0
    tasks: set[asyncio.Task] = set()
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)

    async with httpx.AsyncClient(limits=limits, timeout=duration + drain_s + 10) as http:
        async def one(request_seed: int) -> None:
            nonlocal errors
            body = {"inputs": [{"name": "seed", "datatype": "INT64", "shape": [1], "data": [request_seed]}],
                    "parameters": {"binary_data_output": True}}
            started = time.perf_counter()
            try:
                response = await http.post(url, json=body)
            except httpx.HTTPError:
                errors += 1
                return
            if response.status_code == 200:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1  # 503 when the server's queue is full

        start = time.perf_counter()
        next_arrival, requests = start, 0
        while (now := time.perf_counter()) - start < duration:  # wall clock: a client that falls behind
            if next_arrival > now:                              # still stops on time
                await asyncio.sleep(next_arrival - now)
                continue
            requests += 1
            if len(tasks) >= max_in_flight:
                dropped += 1
            else:
                task = asyncio.create_task(one(seed * 10_000_000 + requests))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            next_arrival += rng.exponential(1.0 / rate)
            if requests % 32 == 0:
                await asyncio.sleep(0)  # behind schedule: let responses in between bursts of arrivals
        timed_out = 0
        if tasks:
            _, pending = await asyncio.wait(set(tasks), timeout=drain_s)
            timed_out = len(pending)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        elapsed = time.perf_counter() - start
    stats = percentiles(latencies) if latencies else {}
    return {"offered_rate": rate, "requests": requests, "completed": len(latencies),
            "rejected": errors + dropped + timed_out, "dropped": dropped, "timed_out": timed_out,
            "images_per_second": len(latencies) / elapsed, "latency_ms": {k: v * 1e3 for k, v in stats.items()}}


def server_http(base_url: str, rates: list[float], duration: float, latency_bound_ms: float,
                max_in_flight: int = 128, model_name: str = "generator") -> dict:
    """Rates in rising order; stops after the first rate at which requests were dropped, refused or timed out."""
    url = f"{base_url}/v2/models/{model_name}/infer"
    drain_s = max(2.0, 4 * latency_bound_ms / 1e3)
    asyncio.run(_poisson_http(url, rates[0], min(1.0, duration), max_in_flight, drain_s, seed=999))  # warm-up
    points = []
    for i, rate in enumerate(rates):
        points.append(asyncio.run(_poisson_http(url, rate, duration, max_in_flight, drain_s, seed=i)))
        if points[-1]["rejected"]:
            break
    return summarize_load(points, latency_bound_ms) | {"max_in_flight": max_in_flight}
