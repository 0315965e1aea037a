"""The server scenario over HTTP: Poisson single-seed KServe v2 requests against a running `ganforge serve`.

An open-loop client must not let a rate the server cannot keep up with grow without bound (on a small
machine the client itself then stalls), so at most ``max_in_flight`` requests are outstanding: an arrival
beyond that is counted as dropped, and requests still open ``drain_s`` after the last arrival are counted as
timed out. Either fails the rate, and higher rates are not tried once one is saturated.
"""

from __future__ import annotations

import asyncio
import time

from .scenarios import load_point, poisson_arrivals, summarize_load


def seed_request(seeds: list[int], truncation: float = 1.0) -> dict:
    """A KServe v2 infer request for these seeds, images answered as raw bytes (the binary tensor extension), with
    a truncation psi where it is not 1."""
    parameters = {"binary_data_output": True} | ({"truncation": truncation} if truncation != 1.0 else {})
    return {"inputs": [{"name": "seed", "datatype": "INT64", "shape": [len(seeds)], "data": list(seeds)}],
            "parameters": parameters}


async def _poisson_http(url: str, rate: float, duration: float, max_in_flight: int, drain_s: float,
                        seed: int, truncation: float = 1.0) -> dict:
    import httpx

    latencies: list[float] = []
    errors = dropped = 0
    tasks: set[asyncio.Task] = set()
    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=max_in_flight)

    async with httpx.AsyncClient(limits=limits, timeout=duration + drain_s + 10) as http:
        async def one(request_seed: int) -> None:
            nonlocal errors
            started = time.perf_counter()
            try:
                response = await http.post(url, json=seed_request([request_seed], truncation))
            except httpx.HTTPError:
                errors += 1
                return
            if response.status_code == 200:
                latencies.append(time.perf_counter() - started)
            else:
                errors += 1  # 503 when the server's queue is full

        start, requests = time.perf_counter(), 0
        async for _ in poisson_arrivals(rate, duration, seed):
            requests += 1
            if len(tasks) >= max_in_flight:
                dropped += 1
            else:
                task = asyncio.create_task(one(seed * 10_000_000 + requests))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        timed_out = 0
        if tasks:
            _, pending = await asyncio.wait(set(tasks), timeout=drain_s)
            timed_out = len(pending)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        elapsed = time.perf_counter() - start
    return load_point(rate, requests, latencies, errors + dropped + timed_out, elapsed, dropped=dropped,
                      timed_out=timed_out)


def server_http(base_url: str, rates: list[float], duration: float, latency_bound_ms: float,
                max_in_flight: int = 128, model_name: str = "generator", truncation: float = 1.0) -> dict:
    """Rates in rising order; stops after the first rate at which requests were dropped, refused or timed out."""
    url = f"{base_url}/v2/models/{model_name}/infer"
    drain_s = max(2.0, 4 * latency_bound_ms / 1e3)
    asyncio.run(_poisson_http(url, rates[0], min(1.0, duration), max_in_flight, drain_s, seed=999))  # warm-up
    points = []
    for i, rate in enumerate(rates):
        points.append(asyncio.run(_poisson_http(url, rate, duration, max_in_flight, drain_s, i, truncation)))
        if points[-1]["rejected"]:
            break
    return summarize_load(points, latency_bound_ms) | {"max_in_flight": max_in_flight}
