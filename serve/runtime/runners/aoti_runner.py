"""AOTInductor packages (.pt2) made by `ganforge export --format aoti`."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ganforge.errors import UserError
from ganforge.export.aoti import load_aoti
from ganforge.export.metadata import read_metadata
from ganforge.train.precision import strict_fp32

from .base import Backend, RunnerBase, host_uint8, info_from_metadata, register


class AotiRunner(RunnerBase):
    """Runs on the device the package was compiled for (`ganforge export --format aoti --device cuda`)."""

    def __init__(self, model_path: str, device: str, precision: str):
        metadata = read_metadata(model_path)
        compiled_for = metadata.get("device", "cpu")
        if torch.device(compiled_for).type != torch.device(device).type:
            raise UserError(f"{model_path} was compiled for {compiled_for}, not {device}: export again with "
                            f"--device {device}")
        self.device = torch.device(compiled_for)
        if self.device.type == "cuda":
            strict_fp32()
        self.package = load_aoti(model_path)
        self.info = info_from_metadata("aoti", model_path, str(self.device), metadata)

    def _stage(self, z: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.check_batch(z)).to(self.device)

    @torch.inference_mode()
    def infer(self, z: np.ndarray) -> np.ndarray:
        return self.package(self._stage(z)).cpu().numpy()

    @torch.inference_mode()
    def infer_uint8(self, z: np.ndarray) -> np.ndarray:
        return host_uint8(self.package(self._stage(z)))

    def device_call(self, z: np.ndarray) -> Callable[[], torch.Tensor]:
        staged = self._stage(z)
        return torch.inference_mode()(lambda: self.package(staged))


register(Backend("aoti", "aoti", lambda p, d, q: AotiRunner(p, d, q), lambda: None))
