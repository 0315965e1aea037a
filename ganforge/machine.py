"""Facts about the machine that every stage records or decides by: the CPU's model name and the instruction sets
that decide which precision and runtime is fastest, library versions."""

from __future__ import annotations

import importlib.metadata
import platform
from pathlib import Path


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


def _cpu_flags() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


# instruction sets that decide which precision and runtime is fastest on a CPU
CPU_FEATURES = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "amx_bf16",
                "amx_int8", "amx_fp16")


def cpu_features() -> list[str]:
    """The CPU_FEATURES this CPU has (from /proc/cpuinfo's flags)."""
    flags = set(_cpu_flags().split())
    return [feature for feature in CPU_FEATURES if feature in flags]


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 instructions (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    flags = _cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_has_native_fp16() -> bool:
    """True on CPUs with fp16 arithmetic (AVX512-FP16 or AMX-FP16); elsewhere fp16 is emulated and very slow."""
    flags = _cpu_flags()
    return "avx512_fp16" in flags or "amx_fp16" in flags
