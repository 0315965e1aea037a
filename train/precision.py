"""Device and precision are chosen here, once, and passed down; nothing else inspects the hardware.

One code path serves every dtype (as in nanoGPT): ``autocast`` with the chosen dtype (disabled for fp32)
and a ``GradScaler`` that is enabled only for fp16.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass

import torch

from ganforge.errors import UserError
from ganforge.machine import cpu_has_native_bf16, cpu_has_native_fp16

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISIONS = ("auto", *DTYPES)


@dataclass(frozen=True)
class Precision:
    """A resolved device plus the autocast dtype used for forward passes (float32 = autocast off)."""

    device: torch.device
    dtype: torch.dtype

    @property
    def name(self) -> str:
        return next(name for name, dtype in DTYPES.items() if dtype == self.dtype)

    @property
    def uses_scaler(self) -> bool:
        # bf16 has fp32's exponent range, so only fp16 needs loss scaling.
        return self.dtype == torch.float16

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)

    def grad_scaler(self) -> torch.amp.GradScaler:
        return torch.amp.GradScaler(self.device.type, enabled=self.uses_scaler)


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks CUDA when present, else CPU; an explicit name must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise UserError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but this machine has no CUDA GPU")
    return device


def auto_dtype(device: torch.device) -> torch.dtype:
    """bf16 on GPUs that support it, fp16 (+ GradScaler) on older GPUs, fp32 on CPUs without native bf16."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return torch.float32


def strict_fp32() -> None:
    """fp32 matrix and convolution work in real fp32 on GPUs (PyTorch lets cuDNN convolutions use TF32 by
    default, which is 1e-3 off): inference backends compare "fp32" rows against each other and against CPU."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False


def resolve_precision(precision: str = "auto", device: str | torch.device = "auto") -> Precision:
    resolved = device if isinstance(device, torch.device) else resolve_device(device)
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r} (choose from {', '.join(PRECISIONS)})")
    dtype = auto_dtype(resolved) if precision == "auto" else DTYPES[precision]
    slow = resolved.type == "cpu" and ((dtype == torch.float16 and not cpu_has_native_fp16())
                                       or (dtype == torch.bfloat16 and not cpu_has_native_bf16()))
    if slow:
        print(f"warning: this CPU has no native {precision} arithmetic: PyTorch emulates it, many times slower "
              "than fp32 (use --precision fp32, or auto)", file=sys.stderr)
    return Precision(resolved, dtype)
