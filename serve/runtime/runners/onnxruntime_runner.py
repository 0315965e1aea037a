"""ONNX Runtime: CPU, or CUDA / TensorRT execution providers (with IO binding) where installed."""

from __future__ import annotations

import numpy as np

from ganforge.export.metadata import read_metadata

from .base import Backend, CoreShare, RunnerBase, info_from_metadata, module_missing, register

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


class OnnxRuntimeRunner(RunnerBase):
    shares_cores = True  # on a CPU
    cores: CoreShare | None = None  # with copies on a CPU: the session first opened, for a batch computing alone

    def __init__(self, model_path: str, device: str, precision: str):
        import onnxruntime as ort

        from ganforge.export.onnx import INPUT_NAME, onnx_session

        metadata = read_metadata(model_path)
        available = ort.get_available_providers()
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            options = gpu_provider_options(model_path, int(metadata["z_dim"]), int(metadata.get("max_batch", 1024)),
                                           metadata.get("precision", "fp32"))
            providers = [(p, options[p]) for p in GPU_PROVIDERS if p in available] + providers
        self.session = onnx_session(model_path, providers)
        self.providers, self.input_name = providers, INPUT_NAME
        self.on_gpu = self.session.get_providers()[0] != "CPUExecutionProvider"
        self.info = info_from_metadata("onnxruntime", model_path, "cuda" if self.on_gpu else "cpu", metadata)

    def infer(self, z: np.ndarray) -> np.ndarray:
        z = self.check_batch(z)
        if self.cores is not None:
            with self.cores.pick(self.session) as session:
                return session.run(None, {self.input_name: z})[0]
        if not self.on_gpu:
            return self.session.run(None, {self.input_name: z})[0]
        binding = self.session.io_binding()  # copies once each way, no per-call graph input copies
        binding.bind_cpu_input(self.input_name, z)
        binding.bind_output(self.session.get_outputs()[0].name, "cpu")
        self.session.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()[0]

    def copies(self, count: int) -> list[OnnxRuntimeRunner]:
        """``count`` more runners computing beside this one. On a CPU the threads are split between the sessions
        (this one opened again), as OpenVINO splits them between its streams, and sleep between calls: each batch
        computes on its share of the cores, with no thread waiting at a parallel section's barrier for a partner
        that another session's thread preempted; a batch that computes alone runs on the session first opened, with
        every thread, spinning between its parallel sections as onnxruntime does (``CoreShare``; a lone client was
        served faster by it than by a session that sleeps, in alternated runs). On a GPU, sessions of their own."""
        import copy
        import os

        from ganforge.export.onnx import inference_threads, onnx_session

        path = self.info.model_path
        if self.on_gpu:
            return [OnnxRuntimeRunner(path, self.info.device, self.info.precision) for _ in range(count)]
        threads = max(1, (inference_threads() or os.cpu_count() or 1) // (count + 1))
        if self.cores is None:  # the first copies: the session as opened (every thread, spinning) is the whole one
            self.cores = CoreShare(self.session)
        self.session = onnx_session(path, self.providers, threads=threads, spinning=False)
        siblings = [copy.copy(self) for _ in range(count)]
        for sibling in siblings:
            sibling.session = onnx_session(path, self.providers, threads=threads, spinning=False)
        return siblings

def gpu_provider_options(model_path: str, z_dim: int, max_batch: int, precision: str) -> dict[str, dict]:
    """What onnxruntime's GPU providers need to match the other backends: TensorRT gets the batch profile the model
    serves (1..max, tuned at 64) and an engine cache beside the model (a rebuild costs minutes); both keep "fp32"
    strict (no TF32), as torch, TensorRT engines and the CPU do."""
    from pathlib import Path

    from ganforge.export.onnx import INPUT_NAME

    cache = Path(model_path).with_name(Path(model_path).name + ".trt-cache")
    shape = lambda batch: f"{INPUT_NAME}:{batch}x{z_dim}"  # noqa: E731
    return {
        "TensorrtExecutionProvider": {
            "trt_profile_min_shapes": shape(1), "trt_profile_opt_shapes": shape(min(64, max_batch)),
            "trt_profile_max_shapes": shape(max_batch), "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache), "trt_timing_cache_enable": True,
            "trt_fp16_enable": precision == "fp16"},
        "CUDAExecutionProvider": {"use_tf32": 0},
    }


def _opener(path: str, device: str, precision: str) -> OnnxRuntimeRunner:
    return OnnxRuntimeRunner(path, device, precision)


register(Backend("onnxruntime", "onnx", _opener, lambda: module_missing("onnxruntime"), ("fp32", "fp16", "int8")))
