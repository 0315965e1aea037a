"""How ganforge times things: time-based warm-up, then measurement windows until three agree.

Every call timed by ``measure`` returns host memory (runners copy results back), so the host clock brackets
finished work. ``measure_device`` times GPU work that stays on the device with CUDA events.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

PERCENTILES = (50, 90, 95, 99)


def percentiles(samples: Sequence[float], points: Sequence[float] = PERCENTILES) -> dict[str, float]:
    """Linear-interpolation percentiles (NumPy's default, as trtexec and most tools report them)."""
    values = np.asarray(samples, dtype=np.float64)
    result = {f"p{p:g}": float(np.percentile(values, p)) for p in points}
    result.update(min=float(values.min()), max=float(values.max()), mean=float(values.mean()))
    return result


def windows_agree(rates: Sequence[float], tolerance: float = 0.10) -> bool:
    """The last three windows lie within ``tolerance`` of each other (perf_analyzer's stability rule)."""
    if len(rates) < 3:
        return False
    last = rates[-3:]
    return max(last) <= min(last) * (1 + tolerance)


@dataclass
class Measurement:
    items_per_second: float  # median over windows
    window_rates: list[float]
    latencies_s: list[float] = field(repr=False)
    stable: bool
    calls: int
    seconds: float


def measure(call: Callable[[], object], items_per_call: int, min_duration: float = 3.0,
            warmup: float | None = None, max_windows: int = 10) -> Measurement:
    """Warm up for ``warmup`` s (default: 0.5 s, or half of a shorter ``min_duration``), then time windows of
    ``min_duration / 3`` s until three agree within 10% (and at least ``min_duration`` s passed), or until
    ``max_windows`` were taken. Each call's latency is kept."""

    def window(seconds: float) -> tuple[int, float, list[float]]:
        latencies, window_start = [], time.perf_counter()
        while True:
            t0 = time.perf_counter()
            call()
            t1 = time.perf_counter()
            latencies.append(t1 - t0)
            if t1 - window_start >= seconds:
                return len(latencies), t1 - window_start, latencies

    _warm_up(call, min(0.5, min_duration / 2) if warmup is None else warmup)
    return _windows(window, items_per_call, min_duration, max_windows)


def measure_device(call: Callable[[], object], items_per_call: int, min_duration: float = 3.0,
                   max_windows: int = 10) -> Measurement:
    """Device-only GPU throughput: calls are queued back to back (no host copies, no synchronize between
    them) and each window is timed by CUDA events around its calls; windows as in ``measure``. Queued calls
    have no latency of their own, so none is kept."""
    import torch

    def window(seconds: float) -> tuple[int, float, list[float]]:
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        host_start, calls = time.perf_counter(), 0
        begin.record()
        while time.perf_counter() - host_start < seconds:  # the host may run ahead of the GPU; events count
            call()
            calls += 1
        end.record()
        end.synchronize()
        return calls, begin.elapsed_time(end) / 1e3, []

    _warm_up(call, min(0.5, min_duration / 2), sync=torch.cuda.synchronize)
    return _windows(window, items_per_call, min_duration, max_windows)


def _warm_up(call: Callable[[], object], seconds: float, sync: Callable[[], None] = lambda: None) -> None:
    deadline = time.perf_counter() + seconds
    call()  # at least once: the first call often compiles or allocates
    while time.perf_counter() < deadline:
        call()
    sync()


def _windows(window: Callable[[float], tuple[int, float, list[float]]], items_per_call: int, min_duration: float,
             max_windows: int) -> Measurement:
    """Runs ``window(seconds) -> (calls, seconds taken, latencies)`` until the stopping rule holds."""
    length = max(min_duration / 3, 1e-3)
    rates, latencies, calls, started = [], [], 0, time.perf_counter()
    while True:
        window_calls, seconds, window_latencies = window(length)
        rates.append(window_calls * items_per_call / seconds)
        latencies += window_latencies
        calls += window_calls
        if (windows_agree(rates) and time.perf_counter() - started >= min_duration) or len(rates) >= max_windows:
            return Measurement(statistics.median(rates), rates, latencies, windows_agree(rates), calls,
                               time.perf_counter() - started)
