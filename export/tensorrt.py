"""ONNX -> TensorRT engine, and loading one back (TensorRT 10.x and 11.x Python API).

Follows NVIDIA's samples and Polygraphy: explicit-batch network from the ONNX parser, one optimization
profile for the dynamic batch, a workspace pool limit, an optional timing cache, and
``build_serialized_network``. TensorRT 11 removed the precision builder flags (networks are strongly
typed), so fp16 there means building from an fp16 ONNX; on 10 the FP16 flag is used.

Engines only run on the GPU model and TensorRT version that built them: a JSON sidecar beside the engine
records both, and loading refuses a mismatch with a message that says to rebuild.

Everything here except ``build_engine`` and ``TensorRTEngine`` runs without TensorRT, and is tested so.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ganforge.errors import UserError

from .metadata import read_metadata, write_checksum

INSTALL_HINT = ("TensorRT is not installed: on a machine with an NVIDIA GPU run "
                "`pip install ganforge[tensorrt]` (TensorRT 10 or 11)")


@dataclass(frozen=True)
class BatchProfile:
    """The optimization profile: batches min..max are accepted, kernels are tuned for opt."""

    min_batch: int = 1
    opt_batch: int = 64
    max_batch: int = 256

    def __post_init__(self) -> None:
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise UserError(f"batch profile needs 1 <= min <= opt <= max, got min {self.min_batch}, "
                            f"opt {self.opt_batch}, max {self.max_batch}")

    def shapes(self, z_dim: int) -> tuple[tuple[int, int], ...]:
        return (self.min_batch, z_dim), (self.opt_batch, z_dim), (self.max_batch, z_dim)

    def check_against(self, onnx_max_batch: int | None) -> None:
        if onnx_max_batch is not None and self.max_batch > onnx_max_batch:
            raise UserError(f"--max-batch {self.max_batch} exceeds the ONNX model's max batch {onnx_max_batch}; "
                            "re-export with a larger --max-batch")


def tensorrt_major(version: str) -> int:
    try:
        return int(version.split(".")[0])
    except ValueError as error:
        raise UserError(f"cannot read the TensorRT version {version!r}") from error


def precision_plan(trt_version: str, fp16: bool, conditional: bool = False) -> str:
    """How to get the requested precision from this TensorRT:

    - "fp32": plain build;
    - "fp16-flag": TensorRT 10: BuilderFlag.FP16 on an fp32 network;
    - "fp16-onnx": TensorRT 11+ (strongly typed networks only), and a conditional generator on 10 too: build a
      strongly typed network from the fp16 ONNX, whose class cut ``convert_fp16`` keeps in fp32 (under the FP16
      flag TensorRT may run that comparison in fp16 and give some seeds another class).
    """
    major = tensorrt_major(trt_version)
    if major < 10:
        raise UserError(f"TensorRT {trt_version} is too old: ganforge needs TensorRT 10 or newer")
    if not fp16:
        return "fp32"
    return "fp16-flag" if major == 10 and not conditional else "fp16-onnx"


@dataclass(frozen=True)
class EngineInfo:
    """The sidecar G.engine.json."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    min_batch: int
    opt_batch: int
    max_batch: int
    z_dim: int
    output_shape: list
    onnx_sha256: str
    build_seconds: float
    ganforge_metadata: dict

    def save(self, engine_path: Path) -> Path:
        from ganforge.files import atomic_write_bytes

        path = sidecar_path(engine_path)
        text = json.dumps(asdict(self), indent=2) + "\n"
        atomic_write_bytes(path, text)
        return path

    @classmethod
    def load(cls, engine_path: Path) -> EngineInfo:
        path = sidecar_path(engine_path)
        if not path.is_file():
            raise UserError(f"{engine_path}: no sidecar {path.name}; build engines with `ganforge build-engine`")
        try:
            return cls(**json.loads(path.read_text()))
        except (TypeError, json.JSONDecodeError) as error:
            raise UserError(f"{path}: unreadable engine sidecar: {error}") from error


def sidecar_path(engine_path: Path) -> Path:
    return Path(engine_path).with_name(Path(engine_path).name + ".json")


def check_compatible(info: EngineInfo, trt_version: str, gpu_name: str, compute_capability: str,
                     engine_path: Path) -> None:
    """Refuse an engine built for another GPU or TensorRT version (it would fail or misbehave)."""
    rebuild = f"rebuild it here with `ganforge build-engine MODEL.onnx --out {engine_path}`"
    if info.tensorrt_version != trt_version:
        raise UserError(f"{engine_path} was built with TensorRT {info.tensorrt_version}, this machine has "
                        f"{trt_version}: {rebuild}")
    if info.gpu_name != gpu_name or info.compute_capability != compute_capability:
        raise UserError(f"{engine_path} was built for {info.gpu_name} (sm {info.compute_capability}), this GPU is "
                        f"{gpu_name} (sm {compute_capability}): {rebuild}")


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as error:
        raise UserError(INSTALL_HINT) from error
    return trt


def current_gpu() -> tuple[str, str]:
    import torch

    if not torch.cuda.is_available():
        raise UserError("TensorRT engines need an NVIDIA GPU, and this machine has none visible to PyTorch")
    major, minor = torch.cuda.get_device_capability()
    return torch.cuda.get_device_name(), f"{major}.{minor}"


def is_conditional(metadata: dict) -> bool:
    """Whether an export's generator reads a class from its latent (its config, as the export recorded it)."""
    return "class_prior" in json.loads(metadata.get("generator_config", "{}"))


def build_engine(onnx_path: Path, out: Path, profile: BatchProfile, fp16: bool = False, workspace_mib: int = 4096,
                 timing_cache: Path | None = None) -> EngineInfo:
    """Build and write ``out`` (+ sidecar). Needs TensorRT and a GPU."""
    metadata = read_metadata(onnx_path)
    z_dim = int(metadata["z_dim"])
    profile.check_against(int(metadata["max_batch"]) if "max_batch" in metadata else None)
    if workspace_mib < 1:
        raise UserError("--workspace-mib must be positive")
    trt = import_tensorrt()
    gpu_name, capability = current_gpu()
    plan_kind = precision_plan(trt.__version__, fp16, conditional=is_conditional(metadata))
    started = time.perf_counter()
    source = onnx_path
    if plan_kind == "fp16-onnx" and metadata.get("precision") != "fp16":
        from .onnx import convert_fp16

        source = out.with_name(out.name + ".fp16.onnx")
        convert_fp16(onnx_path, source)
    try:
        plan = _build_plan(trt, source, z_dim, profile, plan_kind, workspace_mib, timing_cache)
    finally:
        if source != onnx_path:
            source.unlink(missing_ok=True)
    from ganforge.files import atomic_write_bytes

    atomic_write_bytes(out, plan)
    write_checksum(out)
    info = EngineInfo(trt.__version__, gpu_name, capability, "fp16" if fp16 else "fp32", profile.min_batch,
                      profile.opt_batch, profile.max_batch, z_dim, json.loads(metadata["output_shape"]),
                      metadata["file_sha256"], time.perf_counter() - started, metadata)
    info.save(out)
    return info


def _build_plan(trt, onnx_path: Path, z_dim: int, profile: BatchProfile, plan_kind: str, workspace_mib: int,
                timing_cache: Path | None) -> bytes:
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if plan_kind == "fp16-onnx" and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise UserError(f"{onnx_path}: TensorRT could not parse the ONNX: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    if hasattr(trt.BuilderFlag, "TF32"):  # on by default: "fp32" layers would run in TF32 (1e-3 off)
        config.clear_flag(trt.BuilderFlag.TF32)
    if plan_kind == "fp16-flag":
        config.set_flag(trt.BuilderFlag.FP16)
    optimization_profile = builder.create_optimization_profile()
    optimization_profile.set_shape("z", *profile.shapes(z_dim))
    config.add_optimization_profile(optimization_profile)
    cache = None
    if timing_cache is not None:
        cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise UserError(f"{onnx_path}: TensorRT failed to build an engine (see its log above)")
    if cache is not None:
        from ganforge.files import atomic_write_bytes

        serialized = config.get_timing_cache().serialize()
        atomic_write_bytes(timing_cache, serialized)
    return bytes(plan)
