"""TensorRT engines built by `ganforge build-engine` (needs TensorRT and an NVIDIA GPU)."""

from __future__ import annotations

import numpy as np

from ganforge.export.metadata import verified_sha256

from .base import Backend, RunnerBase, RunnerInfo, cuda_missing, module_missing, register


class TensorRTRunner(RunnerBase):
    def __init__(self, model_path: str, device: str, precision: str):
        import torch

        from ganforge.export.tensorrt import TensorRTEngine

        self._torch = torch
        self.engine = TensorRTEngine(model_path)
        info = self.engine.info
        self.info = RunnerInfo("tensorrt", info.precision, "cuda", info.max_batch, info.z_dim,
                               tuple(info.output_shape), str(model_path), verified_sha256(model_path))

    def infer(self, z: np.ndarray) -> np.ndarray:
        images = self.engine.infer(self._torch.from_numpy(self.check_batch(z)))
        return images.cpu().numpy()  # .cpu() synchronizes the stream


def _availability() -> str | None:
    missing = module_missing("tensorrt")
    if missing:
        return "TensorRT is not installed (pip install ganforge[tensorrt] on a machine with an NVIDIA GPU)"
    return cuda_missing()


register(Backend("tensorrt", "engine", lambda p, d, q: TensorRTRunner(p, d, q), _availability, ("fp32", "fp16")))
