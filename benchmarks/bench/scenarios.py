"""The MLPerf-style scenarios: offline (throughput), single-stream (batch-1 latency), server (Poisson load
through the dynamic batcher, p99 per rate, highest rate within the latency bound)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import numpy as np

from ganforge.latents import LatentControls, latents_for_seeds
from ganforge.timing import measure, measure_device, percentiles


def offline(runner, batch_size: int, min_duration: float, io: str = "host", in_flight: int = 1,
            controls: LatentControls | None = None) -> dict:
    """Images/s at a fixed batch size. io="host": latents in and float images out through host memory (what a
    server sees); "host-uint8": the same with the images converted to uint8 on the device first (what `ganforge
    sample` does on a GPU, ``infer_uint8``); "device": a GPU runner's device-only time, by CUDA events.
    ``in_flight`` > 1 (host): that many batches at once, on the runner and its ``copies``, one thread each.
    ``controls`` (truncation) change the latents as sampling does; the time is the runner's either way."""
    z = latents_for_seeds(range(batch_size), runner.info.z_dim, controls)
    if in_flight > 1 and io == "host":
        return _offline_in_flight(runner, z, min_duration, in_flight)
    if io == "device":
        m = measure_device(runner.device_call(z), batch_size, min_duration=min_duration)
        return {"images_per_second": m.items_per_second, "window_rates": m.window_rates, "stable": m.stable}
    call = runner.infer_uint8 if io == "host-uint8" else runner.infer
    m = measure(lambda: call(z), batch_size, min_duration=min_duration)
    return {"images_per_second": m.items_per_second, "window_rates": m.window_rates, "stable": m.stable,
            "latency_ms": {k: v * 1e3 for k, v in percentiles(m.latencies_s).items()}}


def _offline_in_flight(runner, z, seconds: float, count: int, windows: int = 3) -> dict:
    """Images/s of ``count`` runners (``runner`` and its copies), each computing batch after batch on its own thread
    for ``seconds`` after a warm-up batch; ``windows`` equal slices of that time give the window rates."""
    import threading

    from ganforge.serve.runtime.runners import copies

    extra = copies(runner, count - 1)
    runners = [runner, *extra]
    try:
        for each in runners:
            each.infer(z)  # warm-up
        finished: list[float] = []  # when each batch ended (list.append is atomic)
        start = time.perf_counter()
        stop = start + seconds

        def work(index: int) -> None:
            while time.perf_counter() < stop:
                runners[index].infer(z)
                finished.append(time.perf_counter())

        threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - start
    finally:
        for each in extra:
            each.close()
    edges = np.linspace(start, start + elapsed, windows + 1)
    per_window = np.histogram(finished, edges)[0] * len(z) / (elapsed / windows)
    return {"images_per_second": len(finished) * len(z) / elapsed, "window_rates": per_window.tolist(),
            "batches_in_flight": count, "stable": None}


def offline_for_model(model: str, backend: str, precision: str, batch_size: int, min_duration: float,
                      device: str = "cpu", io: str = "host", in_flight: int | None = None) -> dict:
    """``offline`` for a backend opened on ``model`` (a run folder is exported as the backend needs), with the
    model file it loaded and as many batches in flight as bench's offline row (or ``in_flight``): what the sampling
    and HTTP benchmarks compare themselves with."""
    from ganforge.serve.runtime.model_files import model_for_backend
    from ganforge.serve.runtime.runners import open_runner
    from ganforge.serve.runtime.runners.base import offline_in_flight

    path = model_for_backend(model, backend, precision, quiet=True, device=device)
    with open_runner(backend, path, device, precision) as runner:
        count = in_flight or offline_in_flight(runner)
        return offline(runner, batch_size, min_duration, io, count) | {"model_path": path}


def single_stream(runner, min_duration: float, controls: LatentControls | None = None) -> dict:
    z = latents_for_seeds([0], runner.info.z_dim, controls)
    m = measure(lambda: runner.infer(z), 1, min_duration=min_duration)
    return {"images_per_second": m.items_per_second, "stable": m.stable, "samples": len(m.latencies_s),
            "latency_ms": {k: v * 1e3 for k, v in percentiles(m.latencies_s).items()},
            "latencies_ms": [v * 1e3 for v in m.latencies_s]}


async def poisson_arrivals(rate: float, duration: float, seed: int) -> AsyncIterator[int]:
    """Arrival indices 0, 1, ... at Poisson times (exponential gaps, ``rate`` per second) for ``duration`` s of
    wall clock. A consumer that falls behind gets the late arrivals at once, in bursts that yield to the event
    loop every 32, and the stream still ends on time."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    next_arrival, index = start, 0
    while (now := time.perf_counter()) - start < duration:
        if next_arrival > now:
            await asyncio.sleep(next_arrival - now)
            continue
        yield index
        index += 1
        next_arrival += rng.exponential(1.0 / rate)
        if index % 32 == 0:
            await asyncio.sleep(0)


def load_point(rate: float, requests: int, latencies: list[float], rejected: int, elapsed: float,
               **extra) -> dict:
    """One offered rate's outcome: completions per second and latency percentiles in ms."""
    stats = percentiles(latencies) if latencies else {}
    return {"offered_rate": rate, "requests": requests, "completed": len(latencies), "rejected": rejected,
            "images_per_second": len(latencies) / elapsed, "latency_ms": {k: v * 1e3 for k, v in stats.items()},
            **extra}


async def _poisson_load(runner, rate: float, duration: float, config, seed: int, truncation: float) -> dict:
    """Poisson single-seed KServe v2 requests (binary output) into the real server app, in process: the request
    parser, the dynamic batcher and the response encoder all run, only the sockets are left out."""
    import httpx

    from ganforge.serve.http.server import create_app

    from .http_scenario import seed_request

    app = create_app(runner, config)
    latencies, rejected, tasks = [], 0, []
    transport = httpx.ASGITransport(app=app)

    async def one(client: httpx.AsyncClient, index: int) -> None:
        nonlocal rejected
        started = time.perf_counter()
        response = await client.post("/v2/models/generator/infer", json=seed_request([index], truncation))
        if response.status_code == 503:
            rejected += 1
            return
        response.raise_for_status()
        latencies.append(time.perf_counter() - started)

    client = httpx.AsyncClient(transport=transport, base_url="http://app")
    async with app.router.lifespan_context(app), client:
        start = time.perf_counter()
        async for index in poisson_arrivals(rate, duration, seed):
            tasks.append(asyncio.create_task(one(client, index)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    return load_point(rate, len(tasks), latencies, rejected, elapsed)


def server(runner, rates: list[float], duration: float, latency_bound_ms: float, max_batch: int = 64,
           delay_us: int = 2000, max_queue: int = 4096, truncation: float = 1.0) -> dict:
    """Poisson single-seed requests at each rate into the server app in process (on a GPU two batches in flight, the
    server's default there); the highest rate whose p99 <= the bound passes."""
    from ganforge.serve.http.server import ServerConfig
    from ganforge.serve.http.workers import settled_garbage_collector

    config = ServerConfig(max_batch=max_batch, max_queue_delay_us=delay_us, max_queue=max_queue)
    with settled_garbage_collector():  # as `ganforge serve` runs
        points = [asyncio.run(_poisson_load(runner, rate, duration, config, i, truncation))
                  for i, rate in enumerate(rates)]
    return summarize_load(points, latency_bound_ms) | {"in_flight": config.batches_in_flight(runner)}


def summarize_load(points: list[dict], latency_bound_ms: float) -> dict:
    """Mark each rate passed (nothing rejected, p99 within the bound) and find the highest passing rate."""
    for point in points:
        point["passed"] = (point["rejected"] == 0 and bool(point["latency_ms"])
                           and point["latency_ms"]["p99"] <= latency_bound_ms)
    passing = [p["offered_rate"] for p in points if p["passed"]]
    return {"points": points, "max_passing_rate": max(passing, default=0.0),
            "saturated_images_per_second": max(p["images_per_second"] for p in points),
            "latency_bound_ms": latency_bound_ms}
