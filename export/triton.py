"""A Triton Inference Server model repository for an exported generator (also what KServe's Triton runtime
loads from a storage URI).

    REPO/generator/config.pbtxt        the generator: z FP32 [z_dim] -> images FP32 [C, H, W], dynamic batching
    REPO/generator/1/model.onnx        (or model.plan: a TensorRT engine from `ganforge build-engine`)
    REPO/seed_to_latent/config.pbtxt   Python backend: seed INT64 [1] -> z, by ganforge's seed contract
    REPO/seed_to_latent/1/model.py
    REPO/ganforge/config.pbtxt         ensemble: seed -> seed_to_latent -> generator -> images

So a seed gives the same image on Triton as on `ganforge serve` and `ganforge sample` (same backend and
precision). Every config.pbtxt is parsed into Triton's own ModelConfig protobuf before it is written.

    write_repository(TritonConfig(model="g.onnx", out="repo"))
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from ganforge.errors import UserError
from ganforge.files import atomic_write_bytes

from .metadata import read_metadata, write_checksum

KINDS = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}
PLATFORMS = {".onnx": ("onnxruntime_onnx", "model.onnx"), ".engine": ("tensorrt_plan", "model.plan"),
             ".plan": ("tensorrt_plan", "model.plan")}
ONNX_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16"}  # onnx.TensorProto elem types
ENSEMBLE = "ganforge"
SEED_MODEL = "seed_to_latent"

SEED_TO_LATENT = '''"""ganforge's seed contract on Triton's Python backend: seed s -> z =
numpy PCG64(s).standard_normal(z_dim) as float32 (ganforge/train/latents.py), the latent that `ganforge sample`
and `ganforge serve` use for seed s."""

import json

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.z_dim = int(config["parameters"]["z_dim"]["string_value"])

    def execute(self, requests):
        responses = []
        for request in requests:
            seeds = pb_utils.get_input_tensor_by_name(request, "seed").as_numpy().reshape(-1)
            if (seeds < 0).any():
                error = pb_utils.TritonError("seeds must be non-negative")
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=error))
                continue
            z = np.empty((len(seeds), self.z_dim), dtype=np.float32)
            for i, seed in enumerate(seeds.tolist()):
                z[i] = np.random.default_rng(seed).standard_normal(self.z_dim, dtype=np.float32)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("z", z)]))
        return responses
'''


@dataclass(frozen=True)
class TritonConfig:
    model: str  # an exported .onnx file, or a TensorRT engine (.engine / .plan)
    out: str  # the repository folder
    max_batch: int = 64
    max_queue_delay_us: int = 2000
    instances: int = 1
    kind: str = "cpu"  # instance_group kind: cpu or gpu
    seeds: bool = True  # add seed_to_latent and the ensemble

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UserError(f"--instance-kind must be cpu or gpu, got {self.kind!r}")
        if self.max_batch < 1 or self.instances < 1 or self.max_queue_delay_us < 0:
            raise UserError("--max-batch and --instances must be positive, --max-queue-delay-us non-negative")


def preferred_batch_sizes(max_batch: int) -> list[int]:
    """Powers of two from 8 up to max_batch, and max_batch itself: few shapes for the backend to tune."""
    sizes = [b for b in (8, 16, 32, 64, 128, 256, 512, 1024) if b < max_batch]
    return [*sizes, max_batch]


def write_repository(config: TritonConfig) -> Path:
    """Write (or replace) the repository; returns its folder."""
    model = Path(config.model)
    if model.suffix not in PLATFORMS:
        raise UserError(f"{model}: Triton export takes an exported .onnx file or a TensorRT .engine/.plan")
    metadata = read_metadata(model)  # a ganforge export with a matching checksum, or one clear line
    shape = json.loads(metadata["output_shape"])
    if metadata.get("kind") == "points" or len(shape) != 3:
        raise UserError(f"{model} is a 2D (points) generator: the Triton repository serves image generators")
    platform, file_name = PLATFORMS[model.suffix]
    if platform == "tensorrt_plan" and config.kind != "gpu":
        raise UserError("a TensorRT plan runs on NVIDIA GPUs only: use --instance-kind gpu (or export ONNX for CPU)")
    max_batch = int(metadata.get("max_batch", config.max_batch))
    if config.max_batch > max_batch:
        raise UserError(f"--max-batch {config.max_batch} exceeds the {max_batch} that {model.name} was exported for")
    z_dim = int(metadata["z_dim"])
    in_type, out_type = _io_types(model)
    repo = Path(config.out)
    texts = {"generator": generator_config(config, platform, z_dim, shape, in_type, out_type)}
    if config.seeds:
        texts[SEED_MODEL] = seed_config(config, z_dim)
        texts[ENSEMBLE] = ensemble_config(config, shape, out_type)
    checked = _check_configs(texts)
    for name, text in texts.items():
        (repo / name / "1").mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(repo / name / "config.pbtxt", text)
    target = repo / "generator" / "1" / file_name
    if not (target.exists() and target.samefile(model)):
        shutil.copyfile(model, target)
        write_checksum(target)
    if config.seeds:
        atomic_write_bytes(repo / SEED_MODEL / "1" / "model.py", SEED_TO_LATENT)
    if not checked:
        print("note: tritonclient[grpc] is not installed, so the configs were not parsed against Triton's schema")
    return repo


def _check_configs(texts: dict[str, str]) -> bool:
    """Parse every config as Triton would (a config it refuses is an error here, not at deployment); False
    where Triton's schema is not installed."""
    try:
        from tritonclient.grpc import model_config_pb2  # noqa: F401
    except Exception:  # tritonclient without its grpc extra raises RuntimeError
        return False
    for text in texts.values():
        parse_config(text)
    return True


def _io_types(model: Path) -> tuple[str, str]:
    """The Triton data types of the file's z input and images output (ONNX: read from the graph)."""
    if model.suffix != ".onnx":
        return "TYPE_FP32", "TYPE_FP32"  # ganforge engines keep float32 bindings
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    kinds = [ONNX_TYPES.get(t.type.tensor_type.elem_type) for t in (graph.input[0], graph.output[0])]
    if None in kinds:
        raise UserError(f"{model}: input/output types other than float32/float16 are not supported for Triton")
    return kinds[0], kinds[1]


def _dims(values) -> str:
    return "[ " + ", ".join(str(v) for v in values) + " ]"


def _batching(config: TritonConfig) -> str:
    return (f"dynamic_batching {{\n  preferred_batch_size: {_dims(preferred_batch_sizes(config.max_batch))}\n"
            f"  max_queue_delay_microseconds: {config.max_queue_delay_us}\n}}\n")


def _instances(config: TritonConfig, kind: str | None = None) -> str:
    return f"instance_group [ {{ count: {config.instances} kind: {kind or KINDS[config.kind]} }} ]\n"


def generator_config(config: TritonConfig, platform: str, z_dim: int, shape: list[int], in_type: str,
                     out_type: str) -> str:
    return (f'name: "generator"\nplatform: "{platform}"\nmax_batch_size: {config.max_batch}\n'
            f'input [ {{ name: "z" data_type: {in_type} dims: {_dims([z_dim])} }} ]\n'
            f'output [ {{ name: "images" data_type: {out_type} dims: {_dims(shape)} }} ]\n'
            + _batching(config) + _instances(config))


def seed_config(config: TritonConfig, z_dim: int) -> str:
    return (f'name: "{SEED_MODEL}"\nbackend: "python"\nmax_batch_size: {config.max_batch}\n'
            f'input [ {{ name: "seed" data_type: TYPE_INT64 dims: [ 1 ] }} ]\n'
            f'output [ {{ name: "z" data_type: TYPE_FP32 dims: {_dims([z_dim])} }} ]\n'
            f'parameters {{ key: "z_dim" value: {{ string_value: "{z_dim}" }} }}\n'
            + _batching(config) + _instances(config, "KIND_CPU"))


def ensemble_config(config: TritonConfig, shape: list[int], out_type: str) -> str:
    return (f'name: "{ENSEMBLE}"\nplatform: "ensemble"\nmax_batch_size: {config.max_batch}\n'
            f'input [ {{ name: "seed" data_type: TYPE_INT64 dims: [ 1 ] }} ]\n'
            f'output [ {{ name: "images" data_type: {out_type} dims: {_dims(shape)} }} ]\n'
            f"ensemble_scheduling {{\n  step [\n    {_step(SEED_MODEL, 'seed', 'z')},\n"
            f"    {_step('generator', 'z', 'images')}\n  ]\n}}\n")


def _step(model: str, given: str, made: str) -> str:
    return (f'{{ model_name: "{model}" model_version: -1 input_map {{ key: "{given}" value: "{given}" }} '
            f'output_map {{ key: "{made}" value: "{made}" }} }}')


def parse_config(text: str):
    """Parse config.pbtxt text into Triton's ModelConfig protobuf (from tritonclient's gRPC package), or fail."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as error:
        raise UserError(f"internal error: the Triton config does not parse: {error}") from error
