"""TensorRT engines built by `ganforge build-engine` (needs TensorRT and an NVIDIA GPU): the engine loader and
the runner. Building lives in export/tensorrt.py; this is the runtime side."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ganforge.errors import UserError
from ganforge.export.metadata import verified_sha256
from ganforge.export.tensorrt import EngineInfo, check_compatible, current_gpu, import_tensorrt

from .base import Backend, RunnerBase, RunnerInfo, cuda_missing, host_uint8, module_missing, register


class TensorRTRunner(RunnerBase):
    def __init__(self, model_path: str, device: str, precision: str):
        import torch

        self._torch = torch
        self.engine = TensorRTEngine(model_path)
        info = self.engine.info
        self.info = RunnerInfo("tensorrt", info.precision, "cuda", info.max_batch, info.z_dim,
                               tuple(info.output_shape), str(model_path), verified_sha256(model_path),
                               **RunnerInfo.classes_of(json.loads(info.ganforge_metadata.get("generator_config",
                                                                                             "{}"))))

    def _images(self, z: np.ndarray):
        """The engine's CUDA float32 images for ``z``, queued on torch's current stream."""
        return self.engine.infer(self._torch.from_numpy(self.check_batch(z)))

    def infer(self, z: np.ndarray) -> np.ndarray:
        return self._images(z).cpu().numpy()  # .cpu() synchronizes the stream

    def infer_uint8(self, z: np.ndarray) -> np.ndarray:
        return host_uint8(self._images(z))  # converted on the same stream


class TensorRTEngine:
    """A loaded engine: ``infer(z)`` takes and returns CUDA float32 torch tensors."""

    def __init__(self, engine_path: str | Path):
        import torch

        engine_path = Path(engine_path)
        self.info = EngineInfo.load(engine_path)
        trt = import_tensorrt()
        check_compatible(self.info, trt.__version__, *current_gpu(), engine_path)
        self._torch = torch
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise UserError(f"{engine_path}: TensorRT could not load the engine: rebuild it")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)

    def infer(self, z):
        torch = self._torch
        if not self.info.min_batch <= len(z) <= self.info.max_batch:
            raise UserError(f"batch {len(z)} is outside the engine's profile "
                            f"{self.info.min_batch}..{self.info.max_batch}")
        z = z.to("cuda", torch.float32).contiguous()
        self.context.set_input_shape(self.input_name, tuple(z.shape))
        images = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)), device="cuda",
                             dtype=torch.float32)
        self.context.set_tensor_address(self.input_name, z.data_ptr())
        self.context.set_tensor_address(self.output_name, images.data_ptr())
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT execution failed")
        return images


def _availability() -> str | None:
    missing = module_missing("tensorrt")
    if missing:
        return "TensorRT is not installed (pip install ganforge[tensorrt] on a machine with an NVIDIA GPU)"
    return cuda_missing()


register(Backend("tensorrt", "engine", lambda p, d, q: TensorRTRunner(p, d, q), _availability, ("fp32", "fp16")))
