"""PyTorch backends: eager and torch.compile, straight from a run folder or checkpoint (EMA weights)."""

from __future__ import annotations

import numpy as np
import torch

from ganforge.export.metadata import sha256_file
from ganforge.train.checkpoint import find_checkpoint, load_generator
from ganforge.train.models import output_shape
from ganforge.train.precision import resolve_precision

from .base import Backend, RunnerBase, RunnerInfo, register

MAX_BATCH = 4096


class TorchRunner(RunnerBase):
    def __init__(self, model_path: str, device: str, precision: str, compile: bool = False):
        self.precision = resolve_precision(precision, device)
        checkpoint = find_checkpoint(model_path)
        generator, info = load_generator(checkpoint)
        self.generator = generator.to(self.precision.device)
        self.forward = torch.compile(self.generator, dynamic=True) if compile else self.generator
        config = info["generator_config"]
        self.info = RunnerInfo("torch-compile" if compile else "torch", self.precision.name,
                               str(self.precision.device), MAX_BATCH, config["z_dim"], output_shape(config),
                               str(checkpoint), sha256_file(checkpoint))

    @torch.inference_mode()
    def infer(self, z: np.ndarray) -> np.ndarray:
        z = torch.from_numpy(self.check_batch(z)).to(self.precision.device)
        with self.precision.autocast():
            images = self.generator(z) if self.forward is self.generator else self.forward(z)
        return images.float().cpu().numpy()


TORCH_PRECISIONS = ("fp32", "bf16", "fp16")
register(Backend("torch", "checkpoint", lambda p, d, q: TorchRunner(p, d, q), lambda: None, TORCH_PRECISIONS))
register(Backend("torch-compile", "checkpoint", lambda p, d, q: TorchRunner(p, d, q, compile=True),
                 lambda: None, TORCH_PRECISIONS))
