"""AOTInductor packages (.pt2) made by `ganforge export --format aoti`."""

from __future__ import annotations

import numpy as np
import torch

from ganforge.export.aoti import load_aoti
from ganforge.export.metadata import read_metadata, sha256_file

from .base import Backend, RunnerBase, RunnerInfo, register


class AotiRunner(RunnerBase):
    def __init__(self, model_path: str, device: str, precision: str):
        import json

        metadata = read_metadata(model_path)
        self.package = load_aoti(model_path)
        self.info = RunnerInfo("aoti", "fp32", "cpu", int(metadata.get("max_batch", 1024)), int(metadata["z_dim"]),
                               tuple(json.loads(metadata["output_shape"])), str(model_path), sha256_file(model_path))

    @torch.inference_mode()
    def infer(self, z: np.ndarray) -> np.ndarray:
        return self.package(torch.from_numpy(self.check_batch(z))).numpy()


register(Backend("aoti", "aoti", lambda p, d, q: AotiRunner(p, d, q), lambda: None))
