"""The Runner protocol every backend implements, and the registry that finds backends by name.

A backend is one file in this package that calls ``register(Backend(...))``; the registry imports every
module here on first use, so adding a backend is adding a file.

    with open_runner("onnxruntime", "g.onnx") as runner:
        images = runner.infer(z)  # float32 [n, z_dim] -> float32 [n, C, H, W] in [-1, 1]
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import pkgutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ganforge.errors import UserError


@dataclass(frozen=True)
class RunnerInfo:
    backend: str
    precision: str
    device: str
    max_batch: int
    z_dim: int
    output_shape: tuple[int, ...]
    model_path: str
    model_sha256: str = ""
    cuda_graphs: bool = False
    class_prior: tuple[float, ...] = ()  # the classes a conditional generator reads from z (none: empty)
    class_groups: int = 1  # classes per sample

    @staticmethod
    def classes_of(generator_config: dict) -> dict:
        """The class fields of RunnerInfo, from a generator config (as a checkpoint or file metadata holds it)."""
        return {"class_prior": tuple(generator_config.get("class_prior") or ()),
                "class_groups": int(generator_config.get("class_groups", 1))}


class Runner(Protocol):
    """GPU runners may also offer ``device_call(z) -> Callable[[], Tensor]`` (latents staged on the device,
    images left there), which bench times as the device-only offline rows, and ``infer_uint8(z)`` (uint8 [n, H, W,
    C] numpy, converted on the device by ``host_uint8``), which `ganforge sample` uses on a GPU. A runner that makes
    copies of its own that share the cores offers ``copies(count)`` (OpenVINO: streams of one compiled model;
    onnxruntime: sessions splitting the threads), which ``copies`` below calls instead of opening the
    file again; with ``shares_cores`` its batches compute on every core while alone (``CoreShare``)."""

    info: RunnerInfo

    def infer(self, z: np.ndarray) -> np.ndarray: ...
    def close(self) -> None: ...
    def __enter__(self) -> Runner: ...
    def __exit__(self, *exc) -> None: ...


class RunnerBase:
    """Context-manager plumbing shared by the runners."""

    info: RunnerInfo

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def check_batch(self, z: np.ndarray) -> np.ndarray:
        if z.ndim != 2 or z.shape[1] != self.info.z_dim:
            raise UserError(f"z must be [n, {self.info.z_dim}], got {list(z.shape)}")
        if not 1 <= len(z) <= self.info.max_batch:
            raise UserError(f"batch {len(z)} outside 1..{self.info.max_batch} for {self.info.backend}")
        return np.ascontiguousarray(z, dtype=np.float32)


def host_uint8(images) -> np.ndarray:
    """Float NCHW images in a torch tensor -> the uint8 NHWC bytes `ganforge sample` writes, converted where they
    lie (``to_uint8_nhwc_torch``, the same bytes). From a GPU a quarter of the float bytes cross, through pinned
    memory: a fresh block from torch's caching host allocator per call, so the array stays valid while the next
    batches run."""
    import torch

    from ganforge.images import to_uint8_nhwc_torch

    converted = to_uint8_nhwc_torch(images)
    if not converted.is_cuda:
        return converted.numpy()
    host = torch.empty(converted.shape, dtype=torch.uint8, pin_memory=True)
    host.copy_(converted, non_blocking=True)
    torch.cuda.current_stream(converted.device).synchronize()
    return host.numpy()


class CoreShare:
    """The cores of one CPU, shared by a runner and its copies (``copies``): a batch that computes alone runs on
    ``whole``, the model as the runner first opened it, on every core; batches that compute at once each run on their
    copy's share of the cores. A lone client then waits no longer than with one model, and a loaded server computes
    several batches at once, each without barriers shared with the others."""

    def __init__(self, whole) -> None:
        self.whole = whole
        self.lock = threading.Lock()
        self.computing = 0

    @contextlib.contextmanager
    def pick(self, share):
        """For one batch: ``whole`` when nothing else computes as it begins, else ``share`` (the caller's copy)."""
        with self.lock:
            alone = self.computing == 0
            self.computing += 1
        try:
            yield self.whole if alone else share
        finally:
            with self.lock:
                self.computing -= 1


def copies_share_cores(runner: Runner) -> bool:
    """Whether ``runner`` makes copies that share a CPU's cores by ``CoreShare`` (OpenVINO, onnxruntime on a CPU), with
    at least two inference threads to share."""
    import os

    from ganforge.export.onnx import inference_threads

    return (runner.info.device == "cpu" and getattr(runner, "shares_cores", False)
            and (inference_threads() or os.cpu_count() or 1) >= 2)


def copies(runner: Runner, count: int) -> list[Runner]:
    """``count`` more runners like ``runner`` for batches in flight: opened from the same file, or where the runtime
    runs concurrent work through one model (a runner's own ``copies``: OpenVINO's streams) made that way."""
    if hasattr(runner, "copies"):
        return runner.copies(count)
    info = runner.info
    return [open_runner(info.backend, info.model_path, info.device, info.precision) for _ in range(count)]


def offline_in_flight(runner: Runner) -> int:
    """Batches to keep computing at once for offline work (bench's offline rows, `ganforge sample`) on a CPU: the
    runner's ``offline_in_flight_cpu`` (OpenVINO: 2, its streams, which reach its benchmark_app only so), else 1 (the
    runtime's threads already fill the cores); 1 on a GPU, where the runner overlaps its own work."""
    return getattr(runner, "offline_in_flight_cpu", 1) if runner.info.device == "cpu" else 1


def on_own_stream(runner: Runner) -> Callable[[np.ndarray], np.ndarray]:
    """``runner.infer`` queued on a CUDA stream of its own (torch's current stream, which every CUDA runner here
    uses), so that batches of different model copies overlap on the GPU instead of queueing on one stream; on a
    CPU ``runner.infer`` itself."""
    if not runner.info.device.startswith("cuda"):
        return runner.infer
    import torch

    stream = torch.cuda.Stream(runner.info.device)

    def infer(z: np.ndarray) -> np.ndarray:
        with torch.cuda.stream(stream):
            return runner.infer(z)

    return infer


@dataclass(frozen=True)
class Backend:
    name: str
    model_kind: str  # what it loads: "checkpoint", "onnx", "aoti" or "engine"
    opener: Callable[..., Runner]  # (model_path, device, precision) -> Runner
    availability: Callable[[], str | None]  # None when usable here, else why not
    precisions: tuple[str, ...] = ("fp32",)
    # the exported file a precision loads: e.g. OpenVINO's bf16 and int8 start from the fp32 ONNX file
    file_precision: Callable[[str], str] = lambda precision: precision
    # rough seconds, beyond loading, before a precision runs (compiling, quantizing at load): --backend auto skips
    # candidates that cost more to try than a small job takes
    setup_seconds: Callable[[str], float] = lambda precision: 0.0


_BACKENDS: dict[str, Backend] = {}


def register(backend: Backend) -> Backend:
    _BACKENDS[backend.name] = backend
    return backend


def backends() -> dict[str, Backend]:
    if not _BACKENDS:
        package = importlib.import_module("ganforge.serve.runtime.runners")
        for module in pkgutil.iter_modules(package.__path__):
            if module.name != "base":
                importlib.import_module(f"ganforge.serve.runtime.runners.{module.name}")
    return dict(_BACKENDS)


def get_backend(name: str) -> Backend:
    found = backends()
    if name not in found:
        raise UserError(f"unknown backend {name!r} (choose from {', '.join(found)})")
    return found[name]


def open_runner(name: str, model_path: str, device: str = "cpu", precision: str = "fp32") -> Runner:
    backend = get_backend(name)
    why_not = backend.availability()
    if why_not:
        raise UserError(f"backend {name} is not available here: {why_not}")
    if precision not in backend.precisions:
        raise UserError(f"backend {name} runs {', '.join(backend.precisions)}, not {precision}")
    return backend.opener(model_path, device, precision)


def info_from_metadata(backend: str, model_path: str, device: str, metadata: dict) -> RunnerInfo:
    """RunnerInfo for a file written by `ganforge export` (``read_metadata``'s dict: ONNX metadata or sidecar,
    and the verified file digest)."""
    import json

    return RunnerInfo(backend, metadata.get("precision", "fp32"), device, int(metadata.get("max_batch", 1024)),
                      int(metadata["z_dim"]), tuple(json.loads(metadata["output_shape"])), str(model_path),
                      metadata["file_sha256"],
                      **RunnerInfo.classes_of(json.loads(metadata.get("generator_config", "{}"))))


def module_missing(*modules: str) -> str | None:
    for module in modules:
        if importlib.util.find_spec(module) is None:
            return f"python package {module!r} is not installed"
    return None


def cuda_missing() -> str | None:
    import torch

    return None if torch.cuda.is_available() else "needs a CUDA GPU (none found)"
