"""OpenVINO on the CPU, from the same ONNX file."""

from __future__ import annotations

import numpy as np

from ganforge.export.metadata import read_metadata

from .base import Backend, RunnerBase, info_from_metadata, module_missing, register


class OpenVinoRunner(RunnerBase):
    def __init__(self, model_path: str, device: str, precision: str):
        import openvino as ov

        metadata = read_metadata(model_path)
        # fp32 inference precision: OpenVINO would otherwise pick bf16 on CPUs that have it
        self.compiled = ov.Core().compile_model(str(model_path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        self.request = self.compiled.create_infer_request()
        self.info = info_from_metadata("openvino", model_path, "cpu", metadata)

    def infer(self, z: np.ndarray) -> np.ndarray:
        result = self.request.infer({0: self.check_batch(z)})
        return np.array(result[self.compiled.output(0)], copy=True)


register(Backend("openvino", "onnx", lambda p, d, q: OpenVinoRunner(p, d, q), lambda: module_missing("openvino"),
                 ("fp32", "fp16")))
