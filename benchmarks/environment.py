"""What the numbers were measured on: CPU, cores, GPU, threads, library versions, matmul ceiling."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import torch


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions(packages=("ganforge", "torch", "onnxruntime", "openvino", "onnx", "numpy")) -> dict[str, str]:
    found = {}
    for name in packages:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def environment(matmul_gflops: float | None) -> dict:
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    from ganforge.train.precision import cpu_features

    return {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": cpu_model(),
            "cpu_features": cpu_features(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": gpu, "platform": platform.platform(), "python": platform.python_version(), "versions": versions(),
            "matmul_fp32_gflops": matmul_gflops}


def generator_gflops_per_image(generator: torch.nn.Module, z_dim: int) -> float:
    """FLOPs of one image (batch 1) counted by torch's FlopCounterMode (a multiply-add = 2 FLOPs)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        generator(torch.zeros(1, z_dim))
    return counter.get_total_flops() / 1e9
