"""AOTInductor packages (.pt2) made by `ganforge export --format aoti`."""

from __future__ import annotations

import numpy as np
import torch

from ganforge.export.aoti import load_aoti
from ganforge.export.metadata import read_metadata

from .base import Backend, RunnerBase, info_from_metadata, register


class AotiRunner(RunnerBase):
    def __init__(self, model_path: str, device: str, precision: str):
        metadata = read_metadata(model_path)
        self.package = load_aoti(model_path)
        self.info = info_from_metadata("aoti", model_path, "cpu", metadata)

    @torch.inference_mode()
    def infer(self, z: np.ndarray) -> np.ndarray:
        return self.package(torch.from_numpy(self.check_batch(z))).numpy()


register(Backend("aoti", "aoti", lambda p, d, q: AotiRunner(p, d, q), lambda: None))
