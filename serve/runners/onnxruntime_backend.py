"""ONNX Runtime: CPU, or CUDA / TensorRT execution providers (with IO binding) where installed."""

from __future__ import annotations

import numpy as np

from ganforge.export.metadata import read_metadata

from .base import Backend, RunnerBase, info_from_metadata, module_missing, register

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


class OnnxRuntimeRunner(RunnerBase):
    def __init__(self, model_path: str, device: str, precision: str):
        import onnxruntime as ort

        from ganforge.export.onnx import INPUT_NAME, onnx_session

        metadata = read_metadata(model_path)
        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            providers = [p for p in GPU_PROVIDERS if p in available] + providers
        self.session = onnx_session(model_path, providers)
        self.input_name = INPUT_NAME
        self.on_gpu = self.session.get_providers()[0] != "CPUExecutionProvider"
        self.info = info_from_metadata("onnxruntime", model_path, "cuda" if self.on_gpu else "cpu", metadata)

    def infer(self, z: np.ndarray) -> np.ndarray:
        z = self.check_batch(z)
        if not self.on_gpu:
            return self.session.run(None, {self.input_name: z})[0]
        binding = self.session.io_binding()  # copies once each way, no per-call graph input copies
        binding.bind_cpu_input(self.input_name, z)
        binding.bind_output(self.session.get_outputs()[0].name, "cpu")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]


def _opener(path: str, device: str, precision: str) -> OnnxRuntimeRunner:
    return OnnxRuntimeRunner(path, device, precision)


register(Backend("onnxruntime", "onnx", _opener, lambda: module_missing("onnxruntime"), ("fp32", "fp16", "int8")))
