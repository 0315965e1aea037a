"""What the numbers were measured on: CPU, cores, GPU, threads, library versions, matmul ceiling."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from ganforge.files import atomic_write_bytes
from ganforge.machine import cpu_features, cpu_model, versions
from ganforge.timing import measure, measure_device


def environment(matmul_gflops: float | None) -> dict:
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None

    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": cpu_model(),
            "cpu_features": cpu_features(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": gpu, "platform": platform.platform(), "python": platform.python_version(), "versions": versions(),
            "matmul_fp32_gflops": matmul_gflops}


def save_rows(path: str | Path, rows: list[dict]) -> None:
    """A results file of ``rows`` with the machine they ran on, written whole (after every row: a stopped run keeps
    what it measured)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps({"environment": environment(None), "rows": rows}, indent=2) + "\n")


def generator_gflops_per_image(generator: torch.nn.Module, z_dim: int) -> float:
    """FLOPs of one image (batch 1) counted by torch's FlopCounterMode (a multiply-add = 2 FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        generator(torch.zeros(1, z_dim))
    return counter.get_total_flops() / 1e9


def matmul_ceiling_gflops(device: str = "cpu", precision: str = "fp32", seconds: float = 2.0) -> float:
    """This machine's matrix-multiply rate in ``precision`` (fp32 without TF32 on a GPU): the roofline the
    generators are held to.

    A ceiling is a peak, so this is the best of several implementations and sizes (on a CPU: torch at 1024,
    2048 and 4096, and NumPy's BLAS for fp32), each the best of its windows: a noisy neighbour only lowers
    windows, and one library's kernel choice must not pass for the machine's limit. A larger size is measured only
    where one call of it fits in a window (``seconds / 12``) at the best rate so far: on 2 cores one 4096 product
    takes about a second, and its windows took 3-4 of the measurement's 6 s without beating NumPy's rate."""
    import torch

    from ganforge.train.precision import DTYPES, strict_fp32

    dtype = DTYPES[precision]
    if torch.device(device).type == "cuda":
        strict_fp32()
        n = 8192
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        result = measure_device(lambda: torch.mm(a, b), 1, min_duration=seconds, max_windows=8)
        return 2 * n**3 * max(result.window_rates) / 1e9
    rates = []
    for n in (1024, 2048, 4096):
        if rates and 2 * n**3 / (max(rates) * 1e9) > seconds / 12:
            break
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        rates.append(_peak(lambda a=a, b=b: torch.mm(a, b), n, seconds / 4))
    if precision == "fp32":
        a, b = np.random.default_rng(0).standard_normal((2, 2048, 2048), dtype=np.float32)
        rates.append(_peak(lambda: a @ b, 2048, seconds / 4))
    return max(rates)


def _peak(call: Callable[[], object], n: int, seconds: float) -> float:
    result = measure(call, 1, min_duration=seconds, warmup=0.2, max_windows=6)
    return 2 * n**3 * max(result.window_rates) / 1e9
