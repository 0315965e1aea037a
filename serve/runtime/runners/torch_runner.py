"""PyTorch backends straight from a run folder or checkpoint (EMA weights): eager, torch.compile, and eager
replayed through CUDA graphs.

On a GPU, fp16/bf16 cast the weights once (plain half-precision inference, no per-call autocast) and use the
channels-last layout cuDNN's tensor-core kernels prefer; fp32 means fp32 there (TF32 off), so every backend's
"fp32" row computes the same thing. On a CPU, bf16/fp16 run under autocast.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import torch

from ganforge.errors import UserError
from ganforge.export.metadata import sha256_file
from ganforge.train.checkpoint import load_generator
from ganforge.train.models import output_shape
from ganforge.train.precision import resolve_precision, strict_fp32

from .base import Backend, RunnerBase, RunnerInfo, cuda_missing, host_uint8, register

MAX_BATCH = 4096
_CAPTURE = threading.Lock()  # one CUDA graph capture at a time in this process


class TorchRunner(RunnerBase):
    def __init__(self, model_path: str, device: str, precision: str, compile: bool = False,
                 cuda_graphs: bool = False):
        self.precision = resolve_precision(precision, device)
        on_gpu = self.precision.device.type == "cuda"
        if cuda_graphs and not on_gpu:
            raise UserError("torch-cudagraph needs --device cuda")
        generator, info = load_generator(model_path)
        checkpoint = info["path"]
        self.generator = generator.to(self.precision.device)
        self.input_dtype = torch.float32
        if on_gpu:
            strict_fp32()
            if self.precision.dtype != torch.float32:
                self.input_dtype = self.precision.dtype
                self.generator = self.generator.to(self.precision.dtype, memory_format=torch.channels_last)
        self.forward = torch.compile(self.generator, dynamic=True) if compile else self.generator
        self.run = CudaGraphs(self._forward) if cuda_graphs else self._forward
        config = info["generator_config"]
        name = "torch-compile" if compile else ("torch-cudagraph" if cuda_graphs else "torch")
        self.info = RunnerInfo(name, self.precision.name, str(self.precision.device), MAX_BATCH, config["z_dim"],
                               output_shape(config), str(checkpoint), sha256_file(checkpoint), cuda_graphs,
                               **RunnerInfo.classes_of(config))

    def _forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.precision.device.type == "cuda":  # weights are already in the chosen dtype
            return self.forward(z)
        with self.precision.autocast():
            return self.forward(z)

    def _stage(self, z: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.check_batch(z)).to(self.precision.device, self.input_dtype)

    @torch.inference_mode()
    def infer(self, z: np.ndarray) -> np.ndarray:
        return self.run(self._stage(z)).float().cpu().numpy()

    @torch.inference_mode()
    def infer_uint8(self, z: np.ndarray) -> np.ndarray:
        return host_uint8(self.run(self._stage(z)))  # a graph's output buffer is read before the next replay

    def device_call(self, z: np.ndarray) -> Callable[[], torch.Tensor]:
        """Latents already on the GPU, images left there: the device-only half of the offline scenario."""
        staged = self._stage(z)
        return torch.inference_mode()(lambda: self.run(staged))


class CudaGraphs:
    """One captured CUDA graph per batch size (captured on first use, sharing one memory pool); a call copies
    z into the graph's input buffer, replays it and returns its output buffer (valid until the next call)."""

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor]):
        self.forward, self.graphs, self.pool = forward, {}, None

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        batch = len(z)
        if batch not in self.graphs:
            self.graphs[batch] = self._capture(z)
        graph, static_in, static_out = self.graphs[batch]
        static_in.copy_(z)
        graph.replay()
        return static_out

    def _capture(self, z: torch.Tensor):
        static_in = z.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm up outside the graph (cuDNN picks its algorithms here)
            for _ in range(2):
                self.forward(static_in)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        # thread_local: another model copy's thread (batches in flight) may synchronize its own stream meanwhile;
        # "global", the default, would make that an error
        with _CAPTURE, torch.cuda.graph(graph, pool=self.pool, capture_error_mode="thread_local"):
            static_out = self.forward(static_in)
        self.pool = graph.pool()
        return graph, static_in, static_out


TORCH_PRECISIONS = ("fp32", "bf16", "fp16")
register(Backend("torch", "checkpoint", lambda p, d, q: TorchRunner(p, d, q), lambda: None, TORCH_PRECISIONS))
register(Backend("torch-compile", "checkpoint", lambda p, d, q: TorchRunner(p, d, q, compile=True),
                 lambda: None, TORCH_PRECISIONS, setup_seconds=lambda precision: 30.0))  # Inductor's compile
register(Backend("torch-cudagraph", "checkpoint", lambda p, d, q: TorchRunner(p, d, q, cuda_graphs=True),
                 cuda_missing, TORCH_PRECISIONS))
