"""OpenVINO on the CPU, from the exported ONNX file.

fp32 and bf16 compile the fp32 ONNX file with that inference precision (bf16 only where the CPU has bf16
instructions, and refused where the plugin would still run every layer in fp32: on AVX512-BF16 CPUs without AMX
it keeps deconvolutions in fp32); int8 quantizes the fp32 file at
load with NNCF post-training quantization (OpenVINO has int8 convolution and deconvolution kernels), calibrated on
the latents of fixed seeds, so the same file always gives the same int8 model; fp16 loads the fp16 ONNX file.
"""

from __future__ import annotations

import numpy as np

from ganforge.errors import UserError
from ganforge.export.metadata import read_metadata
from ganforge.export.onnx import inference_threads

from .base import Backend, CoreShare, RunnerBase, info_from_metadata, module_missing, register

HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f32", "int8": "f32"}
CALIBRATION_SEEDS = range(10**9, 10**9 + 512)  # away from the seeds users sample first
CALIBRATION_BATCH = 64


class OpenVinoRunner(RunnerBase):
    # two streams of one compiled model beat one: 1.01x benchmark_app's throughput against 0.83x
    # (benchmarks/results/openvino_app.json); onnxruntime's two sessions did not at 256 px (71 img/s, one: 75-92)
    offline_in_flight_cpu = 2
    shares_cores = True
    cores: CoreShare | None = None  # with copies: the model compiled for every core, for a batch computing alone

    def __init__(self, model_path: str, device: str, precision: str):
        import openvino as ov

        metadata = read_metadata(model_path)
        core = ov.Core()
        model = core.read_model(str(model_path))
        if precision == "int8":
            model = _quantize(model, int(metadata["z_dim"]))
        # an explicit hint everywhere: OpenVINO would otherwise pick bf16 on CPUs that have it
        self.settings = {"INFERENCE_PRECISION_HINT": HINTS[precision]}
        if threads := inference_threads():
            self.settings["INFERENCE_NUM_THREADS"] = threads
        self.core, self.model = core, model
        self.compiled = core.compile_model(model, "CPU", self.settings)
        if precision == "bf16" and not _runs_in(self.compiled, "bf16"):
            raise UserError("OpenVINO has no bf16 kernels for this model's layers on this CPU (it would run them in "
                            "fp32): use --precision fp32 or int8")
        self.request = self.compiled.create_infer_request()
        self.info = info_from_metadata("openvino", model_path, "cpu", metadata | {"precision": precision})

    def infer(self, z: np.ndarray) -> np.ndarray:
        z = self.check_batch(z)
        if self.cores is None:
            return _infer(self.compiled, self.request, z)
        with self.cores.pick((self.compiled, self.request)) as (compiled, request):
            return _infer(compiled, request, z)

    def copies(self, count: int) -> list[OpenVinoRunner]:
        """``count`` more runners computing beside this one: the model compiled again with ``count + 1`` streams (the
        threads split between them), each runner with an infer request of its own; a batch that computes alone runs on
        the model as first compiled, on every core (``CoreShare``). Separately compiled models do not overlap: their
        requests take turns on the plugin's shared executor (two single-thread copies measured 2,393-2,502 img/s
        together, one alone 2,486-2,512; two streams of one model 4,799-4,861), so a batch that begins beside one
        computing alone waits for it, then computes on its stream."""
        import copy

        if self.cores is None:  # the first copies: the model as compiled at load is the one on every core
            self.cores = CoreShare((self.compiled, self.request))
        self.compiled = self.core.compile_model(self.model, "CPU", self.settings | {"NUM_STREAMS": count + 1})
        self.request = self.compiled.create_infer_request()
        siblings = [copy.copy(self) for _ in range(count)]  # the same compiled models, ...
        for sibling in siblings:
            sibling.request = self.compiled.create_infer_request()  # ... a request of its own
        return siblings


def _infer(compiled, request, z: np.ndarray) -> np.ndarray:
    return np.array(request.infer({0: z})[compiled.output(0)], copy=True)


def _runs_in(compiled, precision: str) -> bool:
    """Whether any compute layer of the compiled model runs in ``precision`` (the hint is only a hint: the CPU
    plugin keeps layers it has no kernels for in fp32)."""
    names = {"bf16": "bf16", "fp32": "f32"}
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if info["layerType"].astype(str) not in ("Const", "Input", "Output", "Reorder") and \
                info["runtimePrecision"].astype(str) == names[precision]:
            return True
    return False


def _quantize(model, z_dim: int):
    import contextlib
    import io
    import logging

    import nncf

    from ganforge.latents import latents_for_seeds

    logging.getLogger("nncf").setLevel(logging.ERROR)  # its progress bars and notes are not the user's business
    seeds = list(CALIBRATION_SEEDS)
    batches = [latents_for_seeds(seeds[i : i + CALIBRATION_BATCH], z_dim)
               for i in range(0, len(seeds), CALIBRATION_BATCH)]
    with contextlib.redirect_stdout(io.StringIO()):  # nncf draws a progress bar of its own on stdout
        return nncf.quantize(model, nncf.Dataset(batches), subset_size=len(batches))


def _availability() -> str | None:
    return module_missing("openvino")


def _precisions() -> tuple[str, ...]:
    """fp32, fp16 and int8 everywhere (int8 needs nncf); bf16 where this CPU computes it natively."""
    from ganforge.machine import cpu_has_native_bf16

    precisions = ["fp32", "fp16"]
    if cpu_has_native_bf16():
        precisions.append("bf16")
    if module_missing("nncf") is None:
        precisions.append("int8")
    return tuple(precisions)


register(Backend("openvino", "onnx", OpenVinoRunner, _availability, _precisions(),
                 file_precision=lambda precision: "fp16" if precision == "fp16" else "fp32",
                 setup_seconds=lambda precision: 8.0 if precision == "int8" else 0.0))  # int8: NNCF calibration
